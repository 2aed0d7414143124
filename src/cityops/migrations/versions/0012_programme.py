"""Programme context: phases, items with their units and supporting departments, budget lines
by year and source, and milestones.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cityops.core.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "programme_phase",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_en", sa.String(length=300), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("start_year", sa.Integer(), nullable=False),
        sa.Column("end_year", sa.Integer(), nullable=False),
        sa.Column("planned_recurrent_pct", sa.Integer(), nullable=False),
        sa.Column("planned_investment_pct", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint("end_year >= start_year", name=op.f("ck_programme_phase_years")),
        sa.CheckConstraint(
            "planned_recurrent_pct >= 0 AND planned_investment_pct >= 0 "
            "AND planned_recurrent_pct + planned_investment_pct = 100",
            name=op.f("ck_programme_phase_split"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_programme_phase")),
    )
    op.create_table(
        "programme_item",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_en", sa.String(length=300), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("phase_code", sa.String(length=32), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=False),
        sa.Column("owner_department_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint(
            "progress >= 0 AND progress <= 100", name=op.f("ck_programme_item_progress")
        ),
        sa.CheckConstraint(
            "status IN ('planned', 'in_progress', 'done', 'delayed', 'cancelled')",
            name=op.f("ck_programme_item_status"),
        ),
        sa.CheckConstraint(
            "start_date IS NULL OR end_date IS NULL OR start_date <= end_date",
            name=op.f("ck_programme_item_dates"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_department_code"],
            ["department.code"],
            name=op.f("fk_programme_item_owner_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["phase_code"],
            ["programme_phase.code"],
            name=op.f("fk_programme_item_phase_code_programme_phase"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_item")),
        sa.UniqueConstraint("code", name=op.f("uq_programme_item_code")),
    )
    with op.batch_alter_table("programme_item", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_programme_item_owner_department_code"),
            ["owner_department_code"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_programme_item_phase_code"), ["phase_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_programme_item_sector"), ["sector"], unique=False)
        batch_op.create_index(batch_op.f("ix_programme_item_status"), ["status"], unique=False)

    op.create_table(
        "programme_item_unit",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["programme_item.id"],
            name=op.f("fk_programme_item_unit_item_id_programme_item"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"],
            ["admin_unit.code"],
            name=op.f("fk_programme_item_unit_unit_code_admin_unit"),
        ),
        sa.PrimaryKeyConstraint("item_id", "unit_code", name=op.f("pk_programme_item_unit")),
    )
    with op.batch_alter_table("programme_item_unit", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_programme_item_unit_unit_code"), ["unit_code"], unique=False
        )

    op.create_table(
        "programme_item_department",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_programme_item_department_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["programme_item.id"],
            name=op.f("fk_programme_item_department_item_id_programme_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "item_id", "department_code", name=op.f("pk_programme_item_department")
        ),
    )
    with op.batch_alter_table("programme_item_department", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_programme_item_department_department_code"),
            ["department_code"],
            unique=False,
        )

    op.create_table(
        "programme_budget",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("allocated", sa.BigInteger(), nullable=False),
        sa.Column("disbursed", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "source IN ('recurrent', 'investment')", name=op.f("ck_programme_budget_source")
        ),
        sa.CheckConstraint(
            "allocated >= 0 AND disbursed >= 0", name=op.f("ck_programme_budget_amounts")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["programme_item.id"],
            name=op.f("fk_programme_budget_item_id_programme_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_budget")),
        sa.UniqueConstraint("item_id", "year", "source", name="uq_programme_budget_line"),
    )
    with op.batch_alter_table("programme_budget", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_programme_budget_item_id"), ["item_id"], unique=False)

    op.create_table(
        "programme_milestone",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_en", sa.String(length=300), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("done_date", sa.Date(), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "weight >= 1 AND weight <= 100", name=op.f("ck_programme_milestone_weight")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["programme_item.id"],
            name=op.f("fk_programme_milestone_item_id_programme_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_milestone")),
        sa.UniqueConstraint("item_id", "name", name="uq_programme_milestone_name"),
    )
    with op.batch_alter_table("programme_milestone", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_programme_milestone_due_date"), ["due_date"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_programme_milestone_item_id"), ["item_id"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("programme_milestone", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_programme_milestone_item_id"))
        batch_op.drop_index(batch_op.f("ix_programme_milestone_due_date"))
    op.drop_table("programme_milestone")
    with op.batch_alter_table("programme_budget", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_programme_budget_item_id"))
    op.drop_table("programme_budget")
    with op.batch_alter_table("programme_item_department", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_programme_item_department_department_code"))
    op.drop_table("programme_item_department")
    with op.batch_alter_table("programme_item_unit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_programme_item_unit_unit_code"))
    op.drop_table("programme_item_unit")
    with op.batch_alter_table("programme_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_programme_item_status"))
        batch_op.drop_index(batch_op.f("ix_programme_item_sector"))
        batch_op.drop_index(batch_op.f("ix_programme_item_phase_code"))
        batch_op.drop_index(batch_op.f("ix_programme_item_owner_department_code"))
    op.drop_table("programme_item")
    op.drop_table("programme_phase")
