"""Tables of the ingest context: devices (with their attribute maps and keys) and the import
ledger that makes file imports resumable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Audited, Base, JSONType, UTCDateTime


class Device(Audited, Base):
    """A sensor or gateway feeding one context entity through a declarative attribute map.

    `attributes` is a list of attribute descriptions (payload key → attribute, canonical unit,
    conversion, plausibility bounds): a new metric is a new row there, never new code.
    The key is shown once at creation or rotation; only its public prefix and SHA-256 are kept.
    """

    __tablename__ = "ingest_device"
    __table_args__ = (
        UniqueConstraint("tenant", "device_id", name="uq_ingest_device_tenant_device_id"),
        Index("ix_ingest_device_status_last_seen_at", "status", "last_seen_at"),
    )
    __audit_exclude__ = frozenset({"key_hash"})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    entity_id: Mapped[str] = mapped_column(String(256), index=True)
    entity_type: Mapped[str] = mapped_column(String(100))
    department_code: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("department.code"), index=True
    )
    unit_code: Mapped[str | None] = mapped_column(
        String(16), ForeignKey("admin_unit.code"), index=True
    )
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    interval_seconds: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    key_created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ImportBatch(Base):
    """One committed batch of a file import: a re-run skips the batches recorded here."""

    __tablename__ = "ingest_import_batch"
    __table_args__ = (
        UniqueConstraint(
            "tenant", "file_hash", "batch_index", name="uq_ingest_import_batch_file_batch"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the file's bytes: the same content is the same import, whatever its name.
    file_hash: Mapped[str] = mapped_column(String(64))
    batch_index: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(300))
    rows: Mapped[int] = mapped_column(Integer)
    stored: Mapped[int] = mapped_column(Integer)
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime)
