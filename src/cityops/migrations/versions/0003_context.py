"""Context hub: NGSI-LD tenants, entities, current attributes, history and JSON-LD contexts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "ngsild_tenant",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ngsild_tenant")),
        sa.UniqueConstraint("name", name=op.f("uq_ngsild_tenant_name")),
    )
    op.create_table(
        "ngsild_entity",
        sa.Column("pk", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.String(length=512), nullable=False),
        sa.Column("type", sa.String(length=512), nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("min_lon", sa.Float(), nullable=True),
        sa.Column("min_lat", sa.Float(), nullable=True),
        sa.Column("max_lon", sa.Float(), nullable=True),
        sa.Column("max_lat", sa.Float(), nullable=True),
        sa.Column("scopes", JSON, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("modified_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["ngsild_tenant.id"],
            name=op.f("fk_ngsild_entity_tenant_id_ngsild_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ngsild_entity")),
    )
    with op.batch_alter_table("ngsild_entity", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ngsild_entity_tenant_id_entity_id", ["tenant_id", "entity_id"], unique=True
        )
        batch_op.create_index(
            "ix_ngsild_entity_tenant_type", ["tenant_id", "type", "entity_id"], unique=False
        )
        batch_op.create_index(
            "ix_ngsild_entity_bbox",
            ["tenant_id", "min_lat", "max_lat", "min_lon", "max_lon"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_ngsild_entity_unit_code"), ["unit_code"], unique=False)

    op.create_table(
        "ngsild_attribute",
        sa.Column("entity_pk", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("dataset_id", sa.String(length=512), nullable=False),
        sa.Column("attr_type", sa.String(length=32), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.Column("value_num", sa.Float(), nullable=True),
        sa.Column("value_text", sa.String(length=256), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("observed_at", UTC, nullable=True),
        sa.Column("sub_attrs", JSON, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("modified_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_pk"],
            ["ngsild_entity.pk"],
            name=op.f("fk_ngsild_attribute_entity_pk_ngsild_entity"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "entity_pk", "name", "dataset_id", name=op.f("pk_ngsild_attribute")
        ),
    )
    with op.batch_alter_table("ngsild_attribute", schema=None) as batch_op:
        batch_op.create_index("ix_ngsild_attribute_name_num", ["name", "value_num"], unique=False)
        batch_op.create_index("ix_ngsild_attribute_name_text", ["name", "value_text"], unique=False)

    op.create_table(
        "ngsild_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("entity_pk", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("dataset_id", sa.String(length=512), nullable=False),
        sa.Column("observed_ms", sa.BigInteger(), nullable=False),
        sa.Column("value_num", sa.Float(), nullable=True),
        sa.Column("value", JSON, nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ngsild_history")),
    )
    with op.batch_alter_table("ngsild_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ngsild_history_entity_name_time",
            ["entity_pk", "name", "observed_ms"],
            unique=False,
        )

    op.create_table(
        "ngsild_ldcontext",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("document", JSON, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ngsild_ldcontext")),
        sa.UniqueConstraint("url", name=op.f("uq_ngsild_ldcontext_url")),
    )


def downgrade() -> None:
    """Revert this migration."""
    op.drop_table("ngsild_ldcontext")
    with op.batch_alter_table("ngsild_history", schema=None) as batch_op:
        batch_op.drop_index("ix_ngsild_history_entity_name_time")
    op.drop_table("ngsild_history")
    with op.batch_alter_table("ngsild_attribute", schema=None) as batch_op:
        batch_op.drop_index("ix_ngsild_attribute_name_text")
        batch_op.drop_index("ix_ngsild_attribute_name_num")
    op.drop_table("ngsild_attribute")
    with op.batch_alter_table("ngsild_entity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ngsild_entity_unit_code"))
        batch_op.drop_index("ix_ngsild_entity_bbox")
        batch_op.drop_index("ix_ngsild_entity_tenant_type")
        batch_op.drop_index("ix_ngsild_entity_tenant_id_entity_id")
    op.drop_table("ngsild_entity")
    op.drop_table("ngsild_tenant")
