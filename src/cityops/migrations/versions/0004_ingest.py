"""Ingest context: devices with their attribute maps and keys, and the file import ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "ingest_device",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("entity_id", sa.String(length=256), nullable=False),
        sa.Column("entity_type", sa.String(length=100), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_seen_at", UTC, nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_error_at", UTC, nullable=True),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_created_at", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_ingest_device_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["admin_unit.code"], name=op.f("fk_ingest_device_unit_code_admin_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_device")),
        sa.UniqueConstraint("key_prefix", name=op.f("uq_ingest_device_key_prefix")),
        sa.UniqueConstraint("tenant", "device_id", name="uq_ingest_device_tenant_device_id"),
    )
    with op.batch_alter_table("ingest_device", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_device_department_code"), ["department_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ingest_device_entity_id"), ["entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ingest_device_unit_code"), ["unit_code"], unique=False)
        batch_op.create_index(
            "ix_ingest_device_status_last_seen_at", ["status", "last_seen_at"], unique=False
        )

    op.create_table(
        "ingest_import_batch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("committed_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_import_batch")),
        sa.UniqueConstraint(
            "tenant", "file_hash", "batch_index", name="uq_ingest_import_batch_file_batch"
        ),
    )


def downgrade() -> None:
    """Revert this migration."""
    op.drop_table("ingest_import_batch")
    with op.batch_alter_table("ingest_device", schema=None) as batch_op:
        batch_op.drop_index("ix_ingest_device_status_last_seen_at")
        batch_op.drop_index(batch_op.f("ix_ingest_device_unit_code"))
        batch_op.drop_index(batch_op.f("ix_ingest_device_entity_id"))
        batch_op.drop_index(batch_op.f("ix_ingest_device_department_code"))
    op.drop_table("ingest_device")
