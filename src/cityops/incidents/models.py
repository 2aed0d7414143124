"""Tables of the incidents context: categories, SLA policies, the holiday calendar, incidents
with their departments, an append-only timeline, comments and attachments."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from cityops.core.db import Audited, Base, JSONType, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key for the log.
BigId = BigInteger().with_variant(Integer(), "sqlite")


# The word index on `incident.title_folded` (migration 0018), which the models do not declare:
# on SQLite an FTS5 table (external content: it stores only the index) and its shadow tables,
# kept in step by triggers; on PostgreSQL a GIN index on the words as a tsvector. The schema
# comparison with the models ignores exactly these names.
WORD_INDEX = "incident_fts"
WORD_INDEX_OBJECTS = frozenset(
    {
        WORD_INDEX,
        *(f"{WORD_INDEX}_{shadow}" for shadow in ("data", "idx", "docsize", "config")),
        "ix_incident_title_words",
    }
)


class IncidentCategory(Audited, Base):
    """A kind of incident: who handles it by default, in which sector, how serious by default."""

    __tablename__ = "incident_category"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    sector: Mapped[str | None] = mapped_column(String(32))
    # The department an incident of this category goes to unless told otherwise.
    department_code: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("department.code"), index=True
    )
    default_severity: Mapped[str] = mapped_column(String(16))
    # A retired category keeps its incidents but takes no new ones.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlaPolicy(Audited, Base):
    """Deadlines for a category (or every category, when none is named) at one severity."""

    __tablename__ = "sla_policy"
    __table_args__ = (Index("ix_sla_policy_category_severity", "category_code", "severity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # None: the default policy of the severity, used when a category has no policy of its own.
    category_code: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("incident_category.code", ondelete="CASCADE")
    )
    severity: Mapped[str] = mapped_column(String(16))
    ack_minutes: Mapped[int] = mapped_column(Integer)
    resolve_minutes: Mapped[int] = mapped_column(Integer)
    # True: the minutes count working time only (working hours, no weekends or holidays).
    business_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Holiday(Audited, Base):
    """An exception to the working week: a public holiday off, or a weekend day worked."""

    __tablename__ = "holiday"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncidentSequence(Base):
    """The last incident number given out in a year (codes are SC-<year>-<number>)."""

    __tablename__ = "incident_sequence"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(Integer)


class Incident(Audited, Base):
    """Something that went wrong in the city and someone must handle, within its SLA."""

    __tablename__ = "incident"
    # Each index serves a list filter with the default newest-first order.
    __table_args__ = (
        Index("ix_incident_created_at", "created_at"),
        # Status alone, status and units (a ward, an area), and a period: one covering index.
        Index("ix_incident_status_unit_created_at", "status", "unit_code", "created_at"),
        Index("ix_incident_status_due", "status", "due_resolve_at"),
        Index("ix_incident_unit_created_at", "unit_code", "created_at"),
        Index("ix_incident_department_created_at", "department_code", "created_at"),
        Index("ix_incident_category_created_at", "category_code", "created_at"),
        Index("ix_incident_sector_severity_created_at", "sector", "severity", "created_at"),
        Index("ix_incident_severity_created_at", "severity", "created_at"),
        # The SLA job looks only at deadlines not yet marked as breached.
        Index("ix_incident_ack_due", "ack_breached", "due_ack_at"),
        Index("ix_incident_resolve_due", "resolve_breached", "due_resolve_at"),
        Index("ix_incident_overdue_at", "overdue_at"),
        # Searches for words of the title use a word index on `title_folded` that the models
        # cannot declare (see WORD_INDEX): migration 0018 creates it.
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    # The title's words without diacritics, lower case, separated by one space, so `ngap` finds
    # `Ngập` (service.search_form); the word index is built on it.
    title_folded: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    category_code: Mapped[str] = mapped_column(String(32), ForeignKey("incident_category.code"))
    sector: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    # The alert that opened it (no foreign key: alerts are another context's table).
    alert_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    source_ref: Mapped[str | None] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    unit_code: Mapped[str | None] = mapped_column(String(16), ForeignKey("admin_unit.code"))
    # The main department; supporting ones are rows of incident_department.
    department_code: Mapped[str | None] = mapped_column(String(32), ForeignKey("department.code"))
    assignee_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("auth_user.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(Integer, ForeignKey("auth_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # None when no SLA policy applied.
    due_ack_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_resolve_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The deadline that makes an open incident overdue: acknowledgement until work starts, then
    # resolution; None once resolved or closed. One indexed column answers "overdue" fast.
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ack_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    resolve_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)

    departments: Mapped[list[IncidentDepartment]] = relationship(
        cascade="all, delete-orphan",
        order_by="IncidentDepartment.department_code",
        passive_deletes=True,
    )

    @property
    def department_codes(self) -> list[str]:
        """Every responsible department, the main one first."""
        codes = sorted(d.department_code for d in self.departments if d.role != "main")
        return ([self.department_code] if self.department_code else []) + codes

    @property
    def supporting_department_codes(self) -> list[str]:
        """The supporting departments, sorted."""
        return sorted(d.department_code for d in self.departments if d.role != "main")


class IncidentDepartment(Audited, Base):
    """A department responsible for an incident: the main one or a supporting one.

    `status` and `created_at` repeat the incident's: a department's list (by status, newest
    first) and its count then read one covering index, without visiting the incidents.
    """

    __tablename__ = "incident_department"
    # The copies change with the incident, whose own audit rows already record the change.
    __audit_exclude__ = frozenset({"status", "created_at"})
    __table_args__ = (
        Index(
            "ix_incident_department_list", "department_code", "status", "created_at", "incident_id"
        ),
    )

    incident_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True
    )
    department_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("department.code"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TimelineEntry(Base):
    """One entry of an incident's timeline. Append-only: never updated, never deleted alone."""

    __tablename__ = "incident_event"
    __table_args__ = (Index("ix_incident_event_incident_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incident.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    # Who acted (no foreign key, like the audit log: the timeline outlives accounts).
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


@event.listens_for(TimelineEntry, "before_update")
def _timeline_is_append_only(_mapper: Mapper[Any], _connection: Any, target: Any) -> None:
    raise ValueError(f"the incident timeline is append-only (entry {target.id})")


class IncidentComment(Audited, Base):
    """A note left on an incident; public comments may be shown to the citizen who reported it."""

    __tablename__ = "incident_comment"
    __table_args__ = (Index("ix_incident_comment_incident_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incident.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(Integer)
    author_name: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncidentAttachment(Audited, Base):
    """A file attached to an incident, stored once under its SHA-256 in the data folder."""

    __tablename__ = "incident_attachment"
    __table_args__ = (Index("ix_incident_attachment_incident_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incident.id", ondelete="CASCADE"))
    file_name: Mapped[str] = mapped_column(String(255))
    # Sniffed from the content, never taken from the client.
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uploaded_by: Mapped[int | None] = mapped_column(Integer)
    uploaded_by_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
