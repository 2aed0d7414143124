"""Tables of the egov context: procedures, dossiers and the dossier import ledger.

Dossiers arrive in bulk from the provincial administrative-procedure system (files, API), so they
are written with multi-row statements and are not `Audited` row by row: the import ledger records
who imported what, from which file, and how many rows were taken, skipped and refused.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Base, UTCDateTime


class Procedure(Base):
    """An administrative procedure (thủ tục hành chính) as the national database lists it."""

    __tablename__ = "egov_procedure"

    # The national database's code, e.g. "1.001193".
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    name_en: Mapped[str | None] = mapped_column(String(500))
    field: Mapped[str] = mapped_column(String(200), index=True)  # lĩnh vực
    field_en: Mapped[str | None] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16), index=True)  # ProcedureLevel
    # Province-level procedures: the department that handles them.
    department_code: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("department.code"), index=True
    )
    online_level: Mapped[str] = mapped_column(String(16))  # OnlineLevel
    time_limit_days: Mapped[int] = mapped_column(Integer)  # working days
    has_fee: Mapped[bool] = mapped_column(Boolean, default=False)
    # Online payment integrated on the national portal (indicator 3.4).
    payment_integrated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DossierImport(Base):
    """One import run: a file (or an API request, or the demo seed) and what became of its rows."""

    __tablename__ = "egov_import"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # SHA-256 of the bytes read: the same content is the same file, whatever its name.
    file_hash: Mapped[str] = mapped_column(String(64), index=True)
    file_name: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(8))  # ImportFormat
    source: Mapped[str] = mapped_column(String(16))  # cli | api | seed
    actor: Mapped[str] = mapped_column(String(200))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # ImportStatus
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# What the 766 aggregate reads of a dossier, besides its agency or unit (see the indexes).
AGGREGATE_COLUMNS = (
    "procedure_code",
    "received_at",
    "completed_at",
    "due_at",
    "status",
    "supplement_count",
    "submitted_online",
    "paid_online",
    "digitised",
    "electronic_result",
    "reused_data",
    "synced",
    "rating",
)


class Dossier(Base):
    """A dossier (hồ sơ): one application for one procedure, handled by one agency.

    The agency is a department code or the code of the commune/ward whose People's Committee
    handles it; `unit_code` is where it was received (a commune/ward, or the province for the
    provincial public-administration centre). `code` is unique per agency.
    """

    __tablename__ = "egov_dossier"
    __table_args__ = (
        # Code first: an import looks its batch up by code alone.
        UniqueConstraint("code", "agency_code", name="uq_egov_dossier_code_agency"),
        # The due-date job and the due list: open dossiers by due date. Partial (both
        # databases support it): a few thousand open dossiers, not a million closed ones.
        Index(
            "ix_egov_dossier_open_due",
            "due_at",
            sqlite_where=text("completed_at IS NULL"),
            postgresql_where=text("completed_at IS NULL"),
        ),
        # The 766 aggregate reads these indexes instead of the table: every column it needs,
        # already in (agency or unit, procedure) order, so no table row is read and nothing is
        # sorted (bench/bench_egov.py: about a quarter of the CPU time of a table scan on
        # SQLite). They also serve the lists of one agency's or one unit's dossiers.
        Index("ix_egov_dossier_766_agency", "agency_code", *AGGREGATE_COLUMNS),
        Index("ix_egov_dossier_766_unit", "unit_code", *AGGREGATE_COLUMNS),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency_code: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(64))
    unit_code: Mapped[str] = mapped_column(String(16), ForeignKey("admin_unit.code"))
    procedure_code: Mapped[str] = mapped_column(String(32), ForeignKey("egov_procedure.code"))
    # Indexed for the newest-first list of every dossier in scope.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # ngày hẹn trả
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # DossierStatus
    channel: Mapped[str] = mapped_column(String(16))  # Channel
    submitted_online: Mapped[bool] = mapped_column(Boolean, default=False)
    paid_online: Mapped[bool] = mapped_column(Boolean, default=False)
    digitised: Mapped[bool] = mapped_column(Boolean, default=False)
    electronic_result: Mapped[bool] = mapped_column(Boolean, default=False)
    # Unknown (NULL) when the source system does not say: such dossiers are left out of
    # indicators 1.4 and 4.3 rather than counted as "no".
    reused_data: Mapped[bool | None] = mapped_column(Boolean)
    synced: Mapped[bool | None] = mapped_column(Boolean)
    # Requests to supplement the dossier: more than one makes it late (Decision 766, 2.1).
    supplement_count: Mapped[int] = mapped_column(Integer, default=0)
    rating: Mapped[str | None] = mapped_column(String(16))  # Rating
    import_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("egov_import.id", ondelete="SET NULL")
    )
    # The due-date state last announced (DueState), so each is announced once.
    announced: Mapped[str | None] = mapped_column(String(16))
    announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
