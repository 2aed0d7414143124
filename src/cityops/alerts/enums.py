"""Rule kinds, operators, severities, alert states and the event names of the alerts context."""

from __future__ import annotations

from enum import StrEnum


class RuleKind(StrEnum):
    """What a rule watches for."""

    THRESHOLD = "threshold"  # a value past a limit (with hysteresis and minimum duration)
    RATE_OF_CHANGE = "rate_of_change"  # a value moving by more than a limit within a window
    MISSING_DATA = "missing_data"  # a device silent past its reporting interval
    GEO_FENCE = "geo_fence"  # an entity entering or leaving an area or unit
    COMPOSITE = "composite"  # all / any of other rules firing on the same entity


class Operator(StrEnum):
    """How a threshold compares the observed value with the rule's value."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="


class Direction(StrEnum):
    """Which way a rate-of-change rule watches."""

    RISE = "rise"
    FALL = "fall"
    EITHER = "either"


class GeoTrigger(StrEnum):
    """Whether a geo-fence fires when an entity enters the fence or leaves it."""

    ENTER = "enter"
    LEAVE = "leave"


class CompositeMode(StrEnum):
    """Whether every member rule must fire, or any one."""

    ALL = "all"
    ANY = "any"


class Severity(StrEnum):
    """How bad an alert is (shared by alerts, incidents and notifications)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AlertStatus(StrEnum):
    """Where an alert is in its life: open → acknowledged → resolved (snoozed on the side)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class AlertEventKind(StrEnum):
    """What an entry of an alert's history records."""

    OPENED = "opened"
    VALUE_UPDATED = "value_updated"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    UNSNOOZED = "unsnoozed"
    RESOLVED = "resolved"


class Resolution(StrEnum):
    """Why an alert was resolved."""

    AUTO = "auto"  # the condition cleared
    MANUAL = "manual"  # a person resolved it
    RULE_DISABLED = "rule_disabled"
    RULE_CHANGED = "rule_changed"  # the rule's kind changed: its state no longer applies
    RULE_DELETED = "rule_deleted"


class AlertsEvent(StrEnum):
    """Events the alerts context publishes on the bus (after their transaction commits)."""

    ALERT_OPENED = "alerts.alert_opened"
    ALERT_ACKNOWLEDGED = "alerts.alert_acknowledged"
    ALERT_SNOOZED = "alerts.alert_snoozed"
    ALERT_UNSNOOZED = "alerts.alert_unsnoozed"
    ALERT_RESOLVED = "alerts.alert_resolved"
    RULES_CHANGED = "alerts.rules_changed"


# Incident categories shared with the incidents context (the operations event contract).
INCIDENT_CATEGORIES: frozenset[str] = frozenset(
    {
        "air_pollution",
        "water_pollution",
        "flooding",
        "reservoir_level",
        "traffic_congestion",
        "hospital_overload",
        "waste_overflow",
        "streetlight_fault",
        "device_fault",
        "other",
    }
)
