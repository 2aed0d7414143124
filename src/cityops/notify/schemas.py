"""API shapes of the notify context: preferences, webhooks, the delivery log, test messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from cityops.core.schemas import SINGLE_LINE, Page, ReadModel, WriteModel
from cityops.notify.enums import Channel, DeliveryStatus, EventKind, Severity

# "HH:MM", 24-hour local time.
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
# Any common writing of a Vietnamese mobile number (0912 345 678, +84 912.345.678, ...);
# the service checks it and stores it as E.164.
PhoneText = Annotated[
    str, StringConstraints(min_length=1, max_length=20, pattern=r"^[0-9+ .()-]+$")
]
ZaloUserId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
WebhookName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=SINGLE_LINE)]
WebhookUrl = Annotated[
    str,
    StringConstraints(
        min_length=10,
        max_length=2000,
        pattern=r"^https?://[^\s/?#\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*$",
    ),
]
# An event type or a family wildcard of the operations contract: "alerts.*",
# "incidents.incident_created".
EventPattern = Annotated[
    str,
    StringConstraints(min_length=3, max_length=64, pattern=r"^(alerts|incidents)\.(\*|[a-z_]+)$"),
]
UnitCode = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=SINGLE_LINE)]
DepartmentCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=SINGLE_LINE)]


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class PreferenceUpdate(WriteModel):
    """A user's notification preferences (the whole document: PUT replaces it)."""

    events: list[EventKind] = Field(max_length=len(EventKind))
    channels: list[Channel] = Field(max_length=len(Channel))
    phone: PhoneText | None = None
    zalo_user_id: ZaloUserId | None = None
    min_severity: Severity = Severity.LOW
    quiet_start: ClockTime | None = None
    quiet_end: ClockTime | None = None
    only_mine: bool = False

    @field_validator("events", "channels")
    @classmethod
    def _dedupe(cls, values: list[str]) -> list[str]:
        return _unique(values)


class PreferenceRead(BaseModel):
    """A user's notification preferences in force (the defaults when they never set any)."""

    user_id: int
    events: list[str]
    channels: list[str]
    phone: str | None
    zalo_user_id: str | None
    min_severity: str
    quiet_start: str | None
    quiet_end: str | None
    only_mine: bool
    is_default: bool
    # The time zone quiet hours are read in, and the channels this server can send through.
    time_zone: str
    available_channels: list[str]
    updated_at: datetime | None


class WebhookCreate(WriteModel):
    """A new webhook endpoint; its signing secret is generated and shown once."""

    name: WebhookName
    url: WebhookUrl
    event_types: list[EventPattern] = Field(min_length=1, max_length=20)
    unit_code: UnitCode | None = None
    department_code: DepartmentCode | None = None
    enabled: bool = True

    @field_validator("event_types")
    @classmethod
    def _dedupe(cls, values: list[str]) -> list[str]:
        return _unique(values)


class WebhookUpdate(WriteModel):
    """Changes to a webhook; fields left out stay, `null` clears a filter."""

    name: WebhookName | None = None
    url: WebhookUrl | None = None
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=20)
    unit_code: UnitCode | None = None
    department_code: DepartmentCode | None = None
    enabled: bool | None = None

    @field_validator("event_types")
    @classmethod
    def _dedupe(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values)


class WebhookRead(ReadModel):
    """A webhook endpoint (never its secret) and how its last deliveries went."""

    id: int
    name: str
    url: str
    event_types: list[str]
    unit_code: str | None
    department_code: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None


class WebhookCreated(WebhookRead):
    """A webhook with its signing secret, shown this once (at creation or rotation)."""

    secret: str


class WebhookPage(Page[WebhookRead]):
    """One page of webhooks."""


class DeliveryRead(BaseModel):
    """One outbox message and what happened to it (no body, no headers: they may hold secrets)."""

    id: int
    channel: str
    source: str
    source_ref: str | None
    owner: str
    # The recipient address, or the URL without credentials and query string.
    target: str
    status: DeliveryStatus
    attempts: int
    max_attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None


class DeliveryPage(Page[DeliveryRead]):
    """One page of the delivery log, newest first."""


class TestMessageCreate(WriteModel):
    """Send a test notification to oneself through one channel."""

    __test__ = False  # not a pytest test class, despite the name

    channel: Channel
