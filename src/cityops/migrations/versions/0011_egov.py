"""E-government: administrative procedures, dossiers and the dossier import ledger.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cityops.core.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UTC = cityops.core.db.UTCDateTime(timezone=True)
# What the 766 aggregate reads besides the agency or unit: its indexes cover it.
AGGREGATE_COLUMNS = [
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
]


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "egov_procedure",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("name_en", sa.String(length=500), nullable=True),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("field_en", sa.String(length=200), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("online_level", sa.String(length=16), nullable=False),
        sa.Column("time_limit_days", sa.Integer(), nullable=False),
        sa.Column("has_fee", sa.Boolean(), nullable=False),
        sa.Column("payment_integrated", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_egov_procedure_department_code_department"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_egov_procedure")),
    )
    with op.batch_alter_table("egov_procedure", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_egov_procedure_department_code"), ["department_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_egov_procedure_field"), ["field"], unique=False)
        batch_op.create_index(batch_op.f("ix_egov_procedure_level"), ["level"], unique=False)

    op.create_table(
        "egov_import",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("batches_done", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egov_import")),
    )
    with op.batch_alter_table("egov_import", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egov_import_file_hash"), ["file_hash"], unique=False)

    op.create_table(
        "egov_dossier",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agency_code", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.Column("procedure_code", sa.String(length=32), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("completed_at", UTC, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("submitted_online", sa.Boolean(), nullable=False),
        sa.Column("paid_online", sa.Boolean(), nullable=False),
        sa.Column("digitised", sa.Boolean(), nullable=False),
        sa.Column("electronic_result", sa.Boolean(), nullable=False),
        sa.Column("reused_data", sa.Boolean(), nullable=True),
        sa.Column("synced", sa.Boolean(), nullable=True),
        sa.Column("supplement_count", sa.Integer(), nullable=False),
        sa.Column("rating", sa.String(length=16), nullable=True),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("announced", sa.String(length=16), nullable=True),
        sa.Column("announced_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["egov_import.id"],
            name=op.f("fk_egov_dossier_import_id_egov_import"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["procedure_code"],
            ["egov_procedure.code"],
            name=op.f("fk_egov_dossier_procedure_code_egov_procedure"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["admin_unit.code"], name=op.f("fk_egov_dossier_unit_code_admin_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egov_dossier")),
        sa.UniqueConstraint("code", "agency_code", name="uq_egov_dossier_code_agency"),
    )
    with op.batch_alter_table("egov_dossier", schema=None) as batch_op:
        batch_op.create_index(
            "ix_egov_dossier_766_agency", ["agency_code", *AGGREGATE_COLUMNS], unique=False
        )
        batch_op.create_index(
            "ix_egov_dossier_766_unit", ["unit_code", *AGGREGATE_COLUMNS], unique=False
        )
        batch_op.create_index(
            "ix_egov_dossier_open_due",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text("completed_at IS NULL"),
            postgresql_where=sa.text("completed_at IS NULL"),
        )
        batch_op.create_index(
            batch_op.f("ix_egov_dossier_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("egov_dossier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egov_dossier_received_at"))
        batch_op.drop_index("ix_egov_dossier_open_due")
        batch_op.drop_index("ix_egov_dossier_766_unit")
        batch_op.drop_index("ix_egov_dossier_766_agency")
    op.drop_table("egov_dossier")
    with op.batch_alter_table("egov_import", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egov_import_file_hash"))
    op.drop_table("egov_import")
    with op.batch_alter_table("egov_procedure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egov_procedure_level"))
        batch_op.drop_index(batch_op.f("ix_egov_procedure_field"))
        batch_op.drop_index(batch_op.f("ix_egov_procedure_department_code"))
    op.drop_table("egov_procedure")
