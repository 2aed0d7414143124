"""Units context: administrative units, lineage, areas, departments and their sectors.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The portable JSON type of core.db: JSON everywhere, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "admin_unit",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("name_folded", sa.String(length=200), nullable=False),
        sa.Column("unit_type", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent_code", sa.String(length=16), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("area_km2", sa.Float(), nullable=True),
        sa.Column("population", sa.Integer(), nullable=True),
        sa.Column("contact", JSON, nullable=False),
        sa.Column("geometry", JSON, nullable=True),
        sa.Column("min_lon", sa.Float(), nullable=True),
        sa.Column("min_lat", sa.Float(), nullable=True),
        sa.Column("max_lon", sa.Float(), nullable=True),
        sa.Column("max_lat", sa.Float(), nullable=True),
        sa.Column("boundary_source", sa.String(length=16), nullable=False),
        sa.Column("boundary_version", sa.Integer(), nullable=False),
        sa.Column("boundary_updated_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_code"], ["admin_unit.code"], name=op.f("fk_admin_unit_parent_code_admin_unit")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_admin_unit")),
    )
    op.create_index(
        "ix_admin_unit_bbox", "admin_unit", ["min_lon", "min_lat", "max_lon", "max_lat"]
    )
    op.create_index(op.f("ix_admin_unit_level"), "admin_unit", ["level"])
    op.create_index(op.f("ix_admin_unit_name_folded"), "admin_unit", ["name_folded"])
    op.create_index(op.f("ix_admin_unit_parent_code"), "admin_unit", ["parent_code"])
    op.create_index(op.f("ix_admin_unit_unit_type"), "admin_unit", ["unit_type"])
    op.create_index("ix_admin_unit_validity", "admin_unit", ["valid_from", "valid_to"])

    op.create_table(
        "unit_lineage",
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.Column("legacy_code", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["legacy_code"],
            ["admin_unit.code"],
            name=op.f("fk_unit_lineage_legacy_code_admin_unit"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"],
            ["admin_unit.code"],
            name=op.f("fk_unit_lineage_unit_code_admin_unit"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("unit_code", "legacy_code", name=op.f("pk_unit_lineage")),
    )
    op.create_index(op.f("ix_unit_lineage_legacy_code"), "unit_lineage", ["legacy_code"])

    op.create_table(
        "area",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("name_folded", sa.String(length=401), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_area")),
    )
    op.create_index(op.f("ix_area_kind"), "area", ["kind"])
    op.create_index(op.f("ix_area_name_folded"), "area", ["name_folded"])

    op.create_table(
        "area_member",
        sa.Column("area_code", sa.String(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["area_code"],
            ["area.code"],
            name=op.f("fk_area_member_area_code_area"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"],
            ["admin_unit.code"],
            name=op.f("fk_area_member_unit_code_admin_unit"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("area_code", "unit_code", name=op.f("pk_area_member")),
    )
    op.create_index(op.f("ix_area_member_unit_code"), "area_member", ["unit_code"])

    op.create_table(
        "department",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("name_folded", sa.String(length=401), nullable=False),
        sa.Column("contact", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_department")),
    )
    op.create_index(op.f("ix_department_name_folded"), "department", ["name_folded"])

    op.create_table(
        "department_sector",
        sa.Column("sector", sa.String(length=32), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_department_sector_department_code_department"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sector", name=op.f("pk_department_sector")),
    )
    op.create_index(
        op.f("ix_department_sector_department_code"), "department_sector", ["department_code"]
    )


def downgrade() -> None:
    """Revert this migration."""
    op.drop_table("department_sector")
    op.drop_table("department")
    op.drop_table("area_member")
    op.drop_table("area")
    op.drop_table("unit_lineage")
    op.drop_table("admin_unit")
