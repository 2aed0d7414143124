"""`cityops serve --workers 2`: two real server processes sharing this test's database (a SQLite
file, or PostgreSQL). Reports sent at once over many connections are each taken once, with an
incident of their own; an entity written through whichever process the kernel handed the
connection to reaches a live stream held open on one of them; exactly one process leads.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from cityops.auth import service as auth_service
from cityops.auth.schemas import ApiKeyCreate
from cityops.citizen.models import Report
from cityops.core import fanout
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Permission
from cityops.incidents.models import Incident

from .web.live import SseClient, free_port

REPORTS = 60
ENTITIES = 20


@pytest.fixture
def served(settings: Settings, runtime: Runtime, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of `cityops serve --workers 2` on this test's database."""
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        _, key = auth_service.create_api_key(
            session=session,
            key_in=ApiKeyCreate(
                name="two-workers",
                permissions=[
                    Permission.CITIZEN_SUBMIT,
                    Permission.CONTEXT_READ,
                    Permission.CONTEXT_WRITE,
                ],
            ),
            clock=runtime.clock,
            created_by=None,
        )
    runtime.engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DATABASE_URL": settings.database_url,
        "CITYOPS_DATA_DIR": str(settings.data_dir),
        "CITYOPS_SECRET_KEY": settings.secret_key,
        "CITYOPS_LOG_LEVEL": "WARNING",
        # The leader's jobs and rule engine run, so both processes compete for the lead.
        "CITYOPS_BACKGROUND_JOBS": "true",
        "CITYOPS_CITIZEN_RATE_PER_MINUTE": "100000",
    }
    command = [
        str(Path(sys.executable).parent / "cityops"),
        "serve", "--port", str(port), "--workers", "2", "--no-access-log",
    ]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        yield base, key
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Wait until both workers can answer (or fail if the server exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError("cityops serve exited during start-up")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("cityops serve did not start in time")


def report(base: str, key: str, n: int) -> int:
    """Send one Open311 report on a connection of its own; return the status."""
    body = {
        "api_key": key,
        "service_code": "MT-01",
        # Spread over former Biên Hòa, more than 50 m apart: no report is another's duplicate.
        "lat": f"{10.930 + (n % 10) * 0.003:.6f}",
        "long": f"{106.820 + (n // 10) * 0.003:.6f}",
        "description": f"Rác tồn đọng trước nhà số {n}",
    }
    response = httpx.post(f"{base}/open311/v2/requests.json", data=body, timeout=30)
    return response.status_code


def entity(base: str, key: str, n: int) -> tuple[int, str]:
    """Create one NGSI-LD entity on a connection of its own; return the status and body."""
    body = {
        "id": f"urn:ngsi-ld:AirQualityObserved:two-workers-{n}",
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.843, 10.957]},
        },
        "dateObserved": {"type": "Property", "value": "2026-11-20T02:00:00Z"},
        "pm25": {"type": "Property", "value": 10.0 + n, "observedAt": "2026-11-20T02:00:00Z"},
    }
    response = httpx.post(
        f"{base}/ngsi-ld/v1/entities", json=body, headers={"X-API-Key": key}, timeout=30
    )
    return response.status_code, response.text


def test_two_server_processes_share_the_database(
    served: tuple[str, str], settings: Settings, runtime: Runtime
) -> None:
    base, key = served
    stream = SseClient(
        f"{base}/api/v1/stream", headers={"X-API-Key": key}, params={"types": "entities"}
    )
    try:
        assert stream.status == 200, stream.body
        # Each request on a new connection: the kernel hands them to both processes.
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda n: report(base, key, n), range(REPORTS)))
            created = list(pool.map(lambda n: entity(base, key, n), range(ENTITIES)))
        assert statuses == [201] * REPORTS
        assert [status for status, _ in created] == [201] * ENTITIES, created[0][1]

        # Every creation reaches the one stream, whichever process wrote it.
        wanted = {f"urn:ngsi-ld:AirQualityObserved:two-workers-{n}" for n in range(ENTITIES)}
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while seen != wanted and time.monotonic() < deadline:
            seen.update(
                e.data.get("entity_id", "")
                for e in stream.drain(0.2)
                if e.data.get("entity_id") in wanted
            )
        assert seen == wanted
    finally:
        stream.close()

    with unit_of_work(runtime.session_factory) as session:
        reports = session.execute(
            select(Report.tracking_code, Report.incident_id).where(
                Report.description.like("Rác tồn đọng trước nhà số %")
            )
        ).all()
        codes = session.scalars(
            select(Incident.code).where(Incident.id.in_([r.incident_id for r in reports]))
        ).all()
        assert session.scalar(select(func.count()).select_from(Incident)) >= REPORTS
    assert len(reports) == REPORTS
    assert len({r.tracking_code for r in reports}) == REPORTS
    assert len(set(codes)) == REPORTS  # one incident each, none shared, codes unique

    # One process holds the leader lock.
    if runtime.engine.dialect.name == "sqlite":
        lock = f"{runtime.engine.url.database}{fanout.LEADER_LOCK_SUFFIX}"
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    else:
        key_value = fanout.LEADER_LOCK_KEY
        with runtime.engine.connect() as conn:
            holders = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = :high AND objid = :low AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"high": key_value >> 32, "low": key_value & 0xFFFFFFFF},
            ).scalar()
        assert holders == 1
