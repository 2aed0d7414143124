"""Device states, value types, refusal reasons and event names of the ingest context."""

from __future__ import annotations

from enum import StrEnum


class DeviceStatus(StrEnum):
    """Whether a device is reporting, silent, or sending nothing usable."""

    ONLINE = "online"
    OFFLINE = "offline"  # silent past twice its expected reporting interval (or never seen)
    UNAVAILABLE = "unavailable"  # reporting, but every value it sent was refused


class ValueType(StrEnum):
    """The JSON type a payload key must carry."""

    NUMBER = "number"
    TEXT = "text"
    BOOLEAN = "boolean"


class Refusal(StrEnum):
    """Why a reading, a value or a message was refused (also the metrics' `reason` label)."""

    BAD_JSON = "bad_json"
    BAD_PAYLOAD = "bad_payload"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_KEY = "wrong_key"
    BAD_TIME = "bad_time"
    FUTURE_TIME = "future_time"
    UNKNOWN_KEY = "unknown_key"
    BAD_TYPE = "bad_type"
    OUT_OF_RANGE = "out_of_range"
    BAD_LOCATION = "bad_location"
    NOTHING_VALID = "nothing_valid"
    DUPLICATE = "duplicate"
    STORE_ERROR = "store_error"


class IngestEvent(StrEnum):
    """Events the ingest context publishes on the bus (after their transaction commits)."""

    DEVICE_ONLINE = "ingest.device_online"
    DEVICE_OFFLINE = "ingest.device_offline"
    DEVICE_UNAVAILABLE = "ingest.device_unavailable"
