"""Idempotent history: a message delivered twice (a crash between commit and ack) stores once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.ingest.mqtt import MqttBridge

from ..conftest import T0
from .conftest import Publisher, wait_for

BASE = "/ngsi-ld/v1"


@pytest.fixture
def station(make_device: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The Biên Hòa air-quality station, registered."""
    return make_device()


def _ts(seconds_before_t0: float) -> str:
    return (T0 - timedelta(seconds=seconds_before_t0)).isoformat().replace("+00:00", "Z")


def test_a_redelivered_mqtt_message_adds_no_second_history_row(
    bridges: Callable[..., MqttBridge],
    publisher: Publisher,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
) -> None:
    bridges()
    message = {"k": station["key"], "pm25": 41.5, "ts": _ts(120)}
    publisher.publish(station["device_id"], message)
    assert wait_for(lambda: len(history(station["entity_id"], "pm25")) == 1)
    # What the broker sends again when the bridge died after its commit, before its ack.
    publisher.publish(station["device_id"], message)
    publisher.publish(station["device_id"], {**message, "pm25": 42.0, "ts": _ts(60)})
    assert wait_for(lambda: len(history(station["entity_id"], "pm25")) == 2)
    assert publisher.wait_all_acknowledged()
    assert [value for _, value in history(station["entity_id"], "pm25")] == [41.5, 42.0]


def test_a_batch_sent_twice_stores_each_observation_once(
    client: TestClient, admin: dict[str, str], history: Callable[..., list[tuple[int, Any]]]
) -> None:
    entity = {
        "id": "urn:ngsi-ld:AirQualityObserved:redelivered",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 12.0, "observedAt": _ts(300)},
    }
    headers = {**admin, "Content-Type": "application/json"}
    for _ in range(2):
        sent = client.post(f"{BASE}/entityOperations/upsert", json=[entity], headers=headers)
        assert sent.status_code in (201, 204), sent.text
    assert [value for _, value in history(entity["id"], "pm25")] == [12.0]
    # A correction for the same instant replaces the stored instance instead of adding one.
    entity["pm25"] = {"type": "Property", "value": 13.0, "observedAt": _ts(300)}
    sent = client.post(f"{BASE}/entityOperations/upsert", json=[entity], headers=headers)
    assert sent.status_code == 204
    assert [value for _, value in history(entity["id"], "pm25")] == [13.0]
