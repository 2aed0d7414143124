"""Tables of the citizen context: the service catalogue, reports, their notes and reporters.

A reporter's personal data (Law 91/2025/QH15) live in their own table, one row per report, so no
public query ever joins them and erasing them is one delete.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Audited, Base, JSONType, UTCDateTime


class CitizenService(Audited, Base):
    """A kind of problem a citizen can report (an Open311 service), routed to a department."""

    __tablename__ = "citizen_service"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    description_en: Mapped[str] = mapped_column(String(1000), default="")
    group: Mapped[str] = mapped_column(String(100))  # Open311 `group`: the sector, in Vietnamese
    group_en: Mapped[str] = mapped_column(String(100))
    keywords: Mapped[str] = mapped_column(String(500), default="")
    department_code: Mapped[str] = mapped_column(String(32), ForeignKey("department.code"))
    incident_category: Mapped[str] = mapped_column(String(32))
    # The incident's severity, which picks the incidents' SLA policy for the category.
    severity: Mapped[str] = mapped_column(String(16))
    # Expected handling time shown to citizens (`expected_datetime`), in hours.
    sla_hours: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Report(Base):
    """A citizen's report (Open311 service request); written in bulk by clients, not audited."""

    __tablename__ = "citizen_report"
    __table_args__ = (
        # GET requests.json: newest first over a period, optionally by service and status.
        Index("ix_citizen_report_requested_at", "requested_at"),
        Index("ix_citizen_report_service_requested_at", "service_code", "requested_at"),
        Index("ix_citizen_report_status_requested_at", "status", "requested_at"),
        # Duplicates: open reports of one service near a point.
        Index("ix_citizen_report_service_status_lat", "service_code", "status", "lat"),
        Index("ix_citizen_report_unit_requested_at", "unit_code", "requested_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_code: Mapped[str] = mapped_column(String(16), unique=True)
    token: Mapped[str] = mapped_column(String(32), unique=True)
    service_code: Mapped[str] = mapped_column(String(32), ForeignKey("citizen_service.code"))
    status: Mapped[str] = mapped_column(String(16))  # ReportStatus: open | closed
    status_notes: Mapped[str | None] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str | None] = mapped_column(String(500))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    media_url: Mapped[str | None] = mapped_column(String(1000))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    unit_code: Mapped[str | None] = mapped_column(String(16))
    department_code: Mapped[str | None] = mapped_column(String(32))
    incident_id: Mapped[int | None] = mapped_column(Integer, index=True)
    incident_code: Mapped[str | None] = mapped_column(String(32))
    # The earlier report this one duplicates (they share its incident).
    duplicate_of: Mapped[int | None] = mapped_column(Integer, index=True)
    client_id: Mapped[int | None] = mapped_column(Integer)  # the Open311 API key
    moderation: Mapped[str] = mapped_column(String(16), default="none")  # Moderation
    flag_reason: Mapped[str | None] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    satisfied: Mapped[bool | None] = mapped_column(Boolean)
    rating_comment: Mapped[str | None] = mapped_column(String(1000))
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    personal_data_erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Reporter(Base):
    """Who sent a report: personal data, readable only by staff handling the case."""

    __tablename__ = "citizen_reporter"

    report_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("citizen_report.id", ondelete="CASCADE"), primary_key=True
    )
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(100))
    account_id: Mapped[str | None] = mapped_column(String(100))
    # The language the reporter wrote in ("vi" or "en"): their messages are sent in it.
    language: Mapped[str | None] = mapped_column(String(8))


class ReportNote(Base):
    """One entry of a report's public history: a status change or a public comment."""

    __tablename__ = "citizen_report_note"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("citizen_report.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))  # NoteKind
    status: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(2000))


class ReportPhoto(Base):
    """A photo sent with a report: re-encoded without any metadata, stored under its SHA-256."""

    __tablename__ = "citizen_report_photo"
    __table_args__ = (Index("ix_citizen_report_photo_report_id", "report_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("citizen_report.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, 3: the order the reporter chose
    content_type: Mapped[str] = mapped_column(String(32))  # sniffed, then re-encoded as such
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
