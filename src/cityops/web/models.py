"""Tables of the web package: the durable log behind the live stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Base, JSONType, UTCDateTime

# 64-bit ids on PostgreSQL; SQLite's AUTOINCREMENT needs the INTEGER PRIMARY KEY form.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class StreamEvent(Base):
    """One alert, incident or device event, kept so that stream clients can resume.

    The id is the durable part of the SSE event id. Rows are written in the publishing
    transaction, one writer at a time (see `cityops.web.stream`), so ids appear in commit order
    and a reader that has seen id N has seen every committed id below N.
    """

    __tablename__ = "stream_event"
    # AUTOINCREMENT: SQLite must never hand out an id again after the newest rows are purged,
    # or a client resuming from an old id would skip the new rows that reused it.
    __table_args__ = (Index("ix_stream_event_at", "at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str | None] = mapped_column(String(128))
    unit_code: Mapped[str | None] = mapped_column(String(16))
    # The departments that may see the event (incident's departments, alert sector's owner).
    department_codes: Mapped[list[str]] = mapped_column(JSONType)
    sector: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    correlation_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
