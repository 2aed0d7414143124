"""KPI context: the indicator catalogue, population per unit and year, computed values.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cityops.core.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "kpi_indicator",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_en", sa.String(length=300), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("formula", sa.String(length=500), nullable=False),
        sa.Column("frequency", sa.String(length=1), nullable=False),
        sa.Column("spatial_level", sa.String(length=16), nullable=False),
        sa.Column("target_2025", sa.Float(), nullable=True),
        sa.Column("target_2030", sa.Float(), nullable=True),
        sa.Column("reference", sa.String(length=300), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint(
            "direction IN ('up', 'down', 'band', 'monitor')",
            name=op.f("ck_kpi_indicator_direction"),
        ),
        sa.CheckConstraint(
            "frequency IN ('D', 'M', 'Q', 'Y')", name=op.f("ck_kpi_indicator_frequency")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_kpi_indicator")),
        sa.UniqueConstraint("key", name=op.f("uq_kpi_indicator_key")),
    )
    with op.batch_alter_table("kpi_indicator", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kpi_indicator_sector"), ["sector"], unique=False)
    op.create_table(
        "kpi_population",
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint("population >= 0", name=op.f("ck_kpi_population_population")),
        sa.ForeignKeyConstraint(
            ["unit_code"],
            ["admin_unit.code"],
            name=op.f("fk_kpi_population_unit_code_admin_unit"),
        ),
        sa.PrimaryKeyConstraint("unit_code", "year", name=op.f("pk_kpi_population")),
    )
    op.create_table(
        "kpi_value",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("indicator_code", sa.String(length=16), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("place_code", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_label", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("inputs", cityops.core.db.JSONType, nullable=False),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("computed_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["indicator_code"],
            ["kpi_indicator.code"],
            name=op.f("fk_kpi_value_indicator_code_kpi_indicator"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kpi_value")),
        sa.UniqueConstraint(
            "indicator_code",
            "level",
            "place_code",
            "period",
            "period_start",
            name=op.f("uq_kpi_value_indicator_code"),
        ),
    )
    with op.batch_alter_table("kpi_value", schema=None) as batch_op:
        batch_op.create_index(
            "ix_kpi_value_period", ["period", "period_start", "indicator_code"], unique=False
        )
        batch_op.create_index(
            "ix_kpi_value_place", ["place_code", "indicator_code", "period"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("kpi_value", schema=None) as batch_op:
        batch_op.drop_index("ix_kpi_value_place")
        batch_op.drop_index("ix_kpi_value_period")
    op.drop_table("kpi_value")
    op.drop_table("kpi_population")
    with op.batch_alter_table("kpi_indicator", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kpi_indicator_sector"))
    op.drop_table("kpi_indicator")
