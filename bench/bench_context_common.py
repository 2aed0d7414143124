"""Shared set-up of the context benchmarks: a migrated, seeded database and an API key.

SQLite in a temporary folder by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set
(run under `bash scripts/with-postgres.sh`).
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cityops.app import build_runtime
from cityops.auth import service as auth_service
from cityops.auth.schemas import ApiKeyCreate
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Permission
from cityops.seed import seed


def database_url(folder: Path) -> str:
    """Return a fresh database URL (a new PostgreSQL database, or a SQLite file)."""
    pg = os.environ.get("CITYOPS_TEST_DATABASE_URL", "")
    if not pg:
        return f"sqlite:///{folder / 'bench.db'}"
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(pg).set(database=name).render_as_string(hide_password=False)


def prepare(folder: Path) -> tuple[Settings, Runtime, str]:
    """Migrate and seed a database; return settings, runtime and an API key with context rights."""
    settings = Settings(
        database_url=database_url(folder),
        data_dir=folder,
        secret_key=secrets.token_urlsafe(48),
        background_jobs=False,
        log_level="WARNING",
    )
    runtime = build_runtime(settings)
    migrate.upgrade(runtime.engine)
    seed(runtime)
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        _, key = auth_service.create_api_key(
            session=session,
            key_in=ApiKeyCreate(
                name="bench",
                permissions=[Permission.CONTEXT_READ, Permission.CONTEXT_WRITE],
            ),
            clock=runtime.clock,
            created_by=None,
        )
    return settings, runtime, key
