"""KPI context: yearly sector statistics per commune/ward (the `statistics` inputs).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cityops.core.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "kpi_statistic",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint("value >= 0", name=op.f("ck_kpi_statistic_value")),
        sa.ForeignKeyConstraint(
            ["unit_code"],
            ["admin_unit.code"],
            name=op.f("fk_kpi_statistic_unit_code_admin_unit"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kpi_statistic")),
        sa.UniqueConstraint("unit_code", "year", "name", name=op.f("uq_kpi_statistic_unit_code")),
    )
    with op.batch_alter_table("kpi_statistic", schema=None) as batch_op:
        batch_op.create_index("ix_kpi_statistic_name_year", ["name", "year"], unique=False)


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("kpi_statistic", schema=None) as batch_op:
        batch_op.drop_index("ix_kpi_statistic_name_year")
    op.drop_table("kpi_statistic")
