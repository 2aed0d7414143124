"""Tables of the notify context: per-user notification preferences and webhook endpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Audited, Base, JSONType, UTCDateTime


class NotifyPreference(Audited, Base):
    """What one user wants to hear about, how, and when not.

    A user without a row gets the defaults (`enums.DEFAULT_EVENTS` by e-mail, only what is
    addressed to them).
    """

    __tablename__ = "notify_preference"

    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("auth_user.id"), primary_key=True)
    events: Mapped[list[str]] = mapped_column(JSONType)
    channels: Mapped[list[str]] = mapped_column(JSONType)
    # E.164 (+84…), normalised from any Vietnamese writing of the number.
    phone: Mapped[str | None] = mapped_column(String(16))
    zalo_user_id: Mapped[str | None] = mapped_column(String(64))
    min_severity: Mapped[str] = mapped_column(String(16))
    # Local wall-clock times "HH:MM" (the settings' time zone); the window may span midnight.
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    # Only incidents assigned to the user or their department, and escalations to them.
    only_mine: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Webhook(Audited, Base):
    """An endpoint receiving signed JSON events (alerts.*, incidents.*), optionally filtered.

    The secret signs every body (HMAC-SHA256); it is shown once at creation and never again,
    and it is kept out of the audit log.
    """

    __tablename__ = "notify_webhook"
    __audit_exclude__ = frozenset({"secret"})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    # Only events of this unit's subtree / naming this department (None: no filter).
    unit_code: Mapped[str | None] = mapped_column(
        String(16), ForeignKey("admin_unit.code"), index=True
    )
    department_code: Mapped[str | None] = mapped_column(String(32), ForeignKey("department.code"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Written by the outbox's result hook (not audited: it is delivery state, not a user edit).
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
