"""Auth context: users, login sessions, API keys, login attempts and the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The portable JSON type of core.db: JSON everywhere, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids for the logs.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=64), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_actor_name"), ["actor_name"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(
            "ix_audit_log_resource", ["resource_type", "resource_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_log_unit_code"), ["unit_code"], unique=False)

    op.create_table(
        "auth_login_attempt",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_login_attempt")),
    )
    with op.batch_alter_table("auth_login_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_login_attempt_at"), ["at"], unique=False)
        batch_op.create_index("ix_auth_login_attempt_ip_at", ["ip", "at"], unique=False)
        batch_op.create_index("ix_auth_login_attempt_username_at", ["username", "at"], unique=False)

    op.create_table(
        "auth_user",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("area_code", sa.String(length=64), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("password_changed_at", UTC, nullable=False),
        sa.Column("last_login_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["area_code"], ["area.code"], name=op.f("fk_auth_user_area_code_area")
        ),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_auth_user_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["admin_unit.code"], name=op.f("fk_auth_user_unit_code_admin_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_user")),
        sa.UniqueConstraint("username", name=op.f("uq_auth_user_username")),
    )
    with op.batch_alter_table("auth_user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_user_area_code"), ["area_code"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_auth_user_department_code"), ["department_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_auth_user_role"), ["role"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_user_unit_code"), ["unit_code"], unique=False)

    op.create_table(
        "auth_api_key",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("permissions", JSON, nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_used_at", UTC, nullable=True),
        sa.Column("expires_at", UTC, nullable=True),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["auth_user.id"], name=op.f("fk_auth_api_key_created_by_auth_user")
        ),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_auth_api_key_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["admin_unit.code"], name=op.f("fk_auth_api_key_unit_code_admin_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_api_key")),
        sa.UniqueConstraint("prefix", name=op.f("uq_auth_api_key_prefix")),
    )
    with op.batch_alter_table("auth_api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_api_key_unit_code"), ["unit_code"], unique=False)

    op.create_table(
        "auth_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("last_seen_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["auth_user.id"], name=op.f("fk_auth_session_user_id_auth_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_session")),
    )
    with op.batch_alter_table("auth_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_session_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("auth_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_session_user_id"))

    op.drop_table("auth_session")
    with op.batch_alter_table("auth_api_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_api_key_unit_code"))

    op.drop_table("auth_api_key")
    with op.batch_alter_table("auth_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_user_unit_code"))
        batch_op.drop_index(batch_op.f("ix_auth_user_role"))
        batch_op.drop_index(batch_op.f("ix_auth_user_department_code"))
        batch_op.drop_index(batch_op.f("ix_auth_user_area_code"))

    op.drop_table("auth_user")
    with op.batch_alter_table("auth_login_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_login_attempt_username_at")
        batch_op.drop_index("ix_auth_login_attempt_ip_at")
        batch_op.drop_index(batch_op.f("ix_auth_login_attempt_at"))

    op.drop_table("auth_login_attempt")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_unit_code"))
        batch_op.drop_index("ix_audit_log_resource")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_actor_name"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))

    op.drop_table("audit_log")
