"""Shared fixtures: a migrated, seeded database per test (SQLite, or PostgreSQL when
CITYOPS_TEST_DATABASE_URL is set), the app, a client, and users of each role."""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cityops.app import build_runtime, create_app
from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core import migrate
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.kpi.enums import COMPUTE_JOB as KPI_COMPUTE_JOB
from cityops.seed import seed

from .broker import Broker
from .receiver import Receiver

PG_URL = os.environ.get("CITYOPS_TEST_DATABASE_URL", "")
TEST_PASSWORD = "Dong-Nai-2026!"
# A fixed instant (10:00 in Đồng Nai, 2026-11-20) so tests do not depend on the wall clock.
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def _settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        # Cheap hashing keeps the suite fast; production uses argon2's defaults.
        password_time_cost=1,
        password_memory_kib=64,
        # Each test builds its app; the locator index is built on first use instead.
        warm_start=False,
        # Tests drive jobs by hand (runtime.jobs.run_due) instead of a background thread.
        background_jobs=False,
        # A small demo scorecard: every test database is a copy of the template, so 30,000
        # seeded dossiers would be copied for each test (tests/egov seed what they count).
        egov_demo_dossiers=1_500,
    )


def _pg_admin_engine():  # type: ignore[no-untyped-def]
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database migrated to head and seeded with the Đồng Nai profile, cloned per test."""
    data_dir = tmp_path_factory.mktemp("template")
    if PG_URL:
        name = f"cityops_tpl_{os.getpid()}"
        admin = _pg_admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{data_dir / 'template.db'}"
    runtime = build_runtime(_settings(url, data_dir))
    migrate.upgrade(runtime.engine)
    seed(runtime)
    runtime.engine.dispose()
    yield url
    if PG_URL:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(template_database: str, tmp_path: Path) -> Iterator[str]:
    """A fresh copy of the seeded template for one test."""
    if PG_URL:
        name = f"cityops_t_{uuid.uuid4().hex[:12]}"
        template = make_url(template_database).database
        admin = _pg_admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY'))
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        source = Path(make_url(template_database).database or "")
        target = tmp_path / "cityops.db"
        shutil.copyfile(source, target)
        yield f"sqlite:///{target}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database."""
    return _settings(database_url, tmp_path / "var")


@pytest.fixture
def clock() -> FrozenClock:
    """A clock the test can move."""
    return FrozenClock(T0)


@pytest.fixture
def app(settings: Settings, clock: FrozenClock) -> Iterator[FastAPI]:
    """The CityOps app on this test's database."""
    application = create_app(settings, clock=clock)
    # Tests that move time on and run every due job (SLA, device health, retention, ...) would
    # each pay the hourly KPI recompute, 7 s on the seeded profile, on every call: it is parked
    # here and tested by calling it (tests/kpi). It must still be registered.
    parked = [job for job in application.state.runtime.jobs._jobs if job.name == KPI_COMPUTE_JOB]
    assert len(parked) == 1
    parked[0].next_at = math.inf
    yield application
    application.state.runtime.engine.dispose()


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    """The app's runtime (database, clock, bus)."""
    rt: Runtime = app.state.runtime
    return rt


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An HTTP client talking to the app in-process."""
    with TestClient(app) as test_client:
        yield test_client


UserFactory = Callable[..., dict[str, str]]


@pytest.fixture
def make_user(runtime: Runtime) -> Callable[..., str]:
    """Create a user directly in the database; return its username."""

    def factory(
        role: str,
        *,
        unit_code: str | None = None,
        department_code: str | None = None,
        username: str | None = None,
        password: str = TEST_PASSWORD,
    ) -> str:
        username = username or f"{role}-{uuid.uuid4().hex[:8]}"
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            auth_service.create_user(
                session=session,
                user_in=UserCreate(
                    username=username,
                    password=password,
                    full_name=f"Test {role}",
                    role=role,
                    unit_code=unit_code,
                    department_code=department_code,
                ),
                clock=runtime.clock,
                settings=runtime.settings,
            )
        return username

    return factory


@pytest.fixture
def login_as(client: TestClient, make_user: Callable[..., str]) -> UserFactory:
    """Create a user of a role (and scope) and return bearer headers for it."""

    def factory(role: str, **kwargs: str | None) -> dict[str, str]:
        username = make_user(role, **kwargs)
        response = client.post(
            "/api/v1/auth/token", data={"username": username, "password": TEST_PASSWORD}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return factory


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto broker for this test (restartable: `mqtt_broker.restart()`)."""
    broker = Broker(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    """A real local HTTP server recording what it receives (stop/start it to play an outage)."""
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()
