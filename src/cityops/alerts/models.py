"""Tables of the alerts context: rules, alerts, their append-only history and the engine's
per-rule, per-entity state (so a restart keeps hysteresis, durations and geo-fence sides)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Audited, Base, JSONType, UTCDateTime


class AlertRule(Audited, Base):
    """A rule as data: what it watches (kind, entity type, attribute, condition), where
    (units or an area), when (schedule), how bad (severity) and what firing does (policy)."""

    __tablename__ = "alert_rule"
    # A rule may cover many units or none in particular: its audit rows are province-wide.
    __audit_unit__ = "audit_unit_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name_vi: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    entity_type: Mapped[str | None] = mapped_column(String(100))
    attribute: Mapped[str | None] = mapped_column(String(100))
    # Parameters of the kind (validated by kind on every write).
    condition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Scope: the units (with their descendants) and/or the area the rule applies to.
    unit_codes: Mapped[list[str] | None] = mapped_column(JSONType)
    area_code: Mapped[str | None] = mapped_column(String(64))
    # {"days": [1..7], "start": "HH:MM", "end": "HH:MM"} in the profile's time zone.
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    severity: Mapped[str] = mapped_column(String(16))
    sector: Mapped[str | None] = mapped_column(String(32))
    # {"incident": {"category", "department_code"} | null, "notify": [channel names]}.
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def audit_unit_code(self) -> str | None:
        """The unit an audit row of this rule belongs to: one unit scope, else none."""
        if self.unit_codes and len(self.unit_codes) == 1 and not self.area_code:
            return self.unit_codes[0]
        return None


class Alert(Base):
    """A rule firing on one entity. At most one alert per rule and entity is not resolved:
    `open_key` holds the fingerprint until resolution (NULL after), under a unique index."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_status_opened_at", "status", "opened_at"),
        Index("ix_alert_tenant_entity_id", "tenant", "entity_id"),
        Index("ix_alert_opened_at", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # A deleted rule leaves its alerts (their history) with the rule's code only.
    rule_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("alert_rule.id", ondelete="SET NULL"), index=True
    )
    rule_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    open_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(256))
    entity_type: Mapped[str | None] = mapped_column(String(100))
    attribute: Mapped[str | None] = mapped_column(String(100))
    unit_code: Mapped[str | None] = mapped_column(String(16), index=True)
    department_code: Mapped[str | None] = mapped_column(String(32), index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(16))
    sector: Mapped[str | None] = mapped_column(String(32))
    title_vi: Mapped[str] = mapped_column(String(300))
    title_en: Mapped[str] = mapped_column(String(300))
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the condition began to hold (observation time) and when the alert was recorded.
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[int | None] = mapped_column(Integer)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[int | None] = mapped_column(Integer)
    resolution: Mapped[str | None] = mapped_column(String(16))
    first_value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    last_value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    last_value_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertEvent(Base):
    """One entry of an alert's history (append-only). `correlation_id` is the id of the event
    that carried the observation, `observed_at` its time: together they name the observation."""

    __tablename__ = "alert_event"
    __table_args__ = (Index("ix_alert_event_alert_id_id", "alert_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(Integer, ForeignKey("alert.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tenant: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(256))
    attribute: Mapped[str | None] = mapped_column(String(100))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(1000))
    # Extra facts of the entry: the resolution, the snooze end.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class RuleState(Base):
    """What the engine remembers of one rule on one entity between observations."""

    __tablename__ = "alert_rule_state"
    __table_args__ = (
        UniqueConstraint("rule_id", "tenant", "entity_id", name="uq_alert_rule_state_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("alert_rule.id", ondelete="CASCADE"), index=True
    )
    tenant: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(256))
    # The condition holds (past hysteresis and minimum duration).
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # Since when a threshold has held without yet lasting its minimum duration.
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    alert_id: Mapped[int | None] = mapped_column(Integer)
    last_value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    last_observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Kind-specific memory: rate-of-change samples, the geo-fence side, the entity's context.
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
