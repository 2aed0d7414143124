"""Benchmark: server time of the sector centre, entity and wall pages at a province size.

Creates a temporary SQLite database (migrated and seeded with the Đồng Nai profile), writes the
simulated catalogue at RATE points per scalable asset with one observation each, logs in as a
leader and times each page (median and p95 of REPEAT requests, through the whole ASGI stack
with a TestClient), with the page size.
Run: .venv/bin/python bench/bench_sectors.py [RATE] [REPEAT]
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from cityops.app import create_app
from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.context import flows as context_flows
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.seed import seed
from cityops.simulate.catalog import build_catalog
from cityops.simulate.entities import observation_entity, static_entity
from cityops.simulate.generators import observe
from cityops.web.sectors import SECTORS
from harness import percentile

SECRET = secrets.token_urlsafe(48)
PASSWORD = secrets.token_urlsafe(16) + "-Aa1!"


def main() -> None:
    """Print page timings."""
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        settings = Settings(
            database_url=f"sqlite:///{data_dir / 'bench.db'}", data_dir=data_dir,
            secret_key=SECRET, background_jobs=False,
        )  # fmt: skip
        app = create_app(settings)
        runtime = app.state.runtime
        migrate.upgrade(runtime.engine)
        seed(runtime)
        assets = build_catalog(rate)
        for start in range(0, len(assets), 500):
            entities = []
            for asset in assets[start : start + 500]:
                entity = static_entity(asset)
                values = observe(asset, now, seed=1)
                if values:
                    entity.update(observation_entity(asset, values, now))
                entities.append(entity)
            with unit_of_work(runtime.session_factory) as session:
                session.info["actor"] = SYSTEM_PRINCIPAL
                context_flows.write_entities(
                    runtime=runtime, session=session, tenant="default", entities=entities
                )
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            auth_service.create_user(
                session=session,
                user_in=UserCreate(
                    username="bench", password=PASSWORD, full_name="Bench", role="leader"
                ),
                clock=runtime.clock,
                settings=runtime.settings,
            )
        print(f"sector pages: {len(assets)} entities (rate {rate}), {repeat} requests each, SQLite")
        with TestClient(app) as client:
            token = client.post(
                "/api/v1/auth/token", data={"username": "bench", "password": PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            paths = [f"/sectors/{code}" for code in SECTORS]
            paths += ["/sectors/environment?area=bien-hoa-cu", f"/entities/{assets[0].entity_id}"]
            paths.append("/wall")
            for path in paths:
                timings = []
                size = 0
                for _ in range(repeat):
                    start = time.perf_counter()
                    response = client.get(path, headers=headers)
                    timings.append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                    size = len(response.content)
                print(
                    f"  {path:<48} median {statistics.median(timings):7.1f} ms"
                    f"  p95 {percentile(timings, 95):7.1f} ms  {size / 1024:7.1f} KiB"
                )


if __name__ == "__main__":
    main()
