"""Event kinds a user can ask for, channels, severities and outbox names of the notify context."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """What a notification is about; users choose the kinds they want."""

    ALERT_OPENED = "alert_opened"
    ALERT_RESOLVED = "alert_resolved"
    INCIDENT_CREATED = "incident_created"
    # An incident assigned (or dispatched) to the user or to their department.
    INCIDENT_ASSIGNED = "incident_assigned"
    INCIDENT_STATUS = "incident_status"
    COMMENT_ADDED = "comment_added"
    SLA_BREACHED = "sla_breached"
    ESCALATED = "escalated"


class Channel(StrEnum):
    """How a person is reached."""

    EMAIL = "email"
    SMS = "sms"
    ZALO = "zalo"


class Severity(StrEnum):
    """Severity of alerts and incidents (the operations event contract)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order of severities: low 0 … critical 3."""
        return SEVERITY_RANK[self]


SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class DeliveryStatus(StrEnum):
    """States of a message in the outbox (the delivery log)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# What a user without a preference row gets: e-mail about what is addressed to them.
DEFAULT_EVENTS = (EventKind.INCIDENT_ASSIGNED, EventKind.SLA_BREACHED, EventKind.ESCALATED)
DEFAULT_CHANNELS = (Channel.EMAIL,)

# Outbox names: the source of routed notifications and of test messages, and the channels.
SOURCE = "notify"
TEST_SOURCE = "notify.test"
OUTBOX_CHANNELS = {Channel.EMAIL: "smtp", Channel.SMS: "sms", Channel.ZALO: "zalo"}
WEBHOOK_CHANNEL = "http"
