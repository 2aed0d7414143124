"""Benchmark: Open311 against a real uvicorn server.

1. POST /open311/v2/requests.json: each report is located (point → ward), checked for duplicates,
   routed to its department and opened as an incident in the same transaction (target ≥ 300/s).
2. GET /open311/v2/requests.json returning 1,000 reports, with 1,000,000 reports stored
   (bulk-loaded over a year; target p95 ≤ 100 ms): the default query (last 90 days), by service,
   by status, by service and status, a page deep in the list, and in XML.
SQLite in a temporary folder by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set.
Run: .venv/bin/python bench/bench_open311.py [reports] [workers] [--posts]   (default 1,000,000
and 1; `--posts` skips the GETs). The server CPU figures count every worker; on PostgreSQL the
database server's CPU per report is printed beside them. Several workers share the SQLite file
as `cityops serve --workers N` has them (`CITYOPS_WORKERS`: events through the database, turns
at writing), or PostgreSQL: `bash scripts/with-postgres.sh .venv/bin/python
bench/bench_open311.py 1000000 2`. The POSTs come from a raw keep-alive load generator
(`harness.hammer`), so that the client takes little of the two cores the server is measured on.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import database_url
from cityops.app import build_runtime
from cityops.auth import service as auth_service
from cityops.auth.schemas import ApiKeyCreate
from cityops.citizen.models import CitizenService, Report
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Permission
from cityops.seed import seed
from cityops.units.models import AdminUnit
from harness import encode_request, free_port, percentile, run_hammer, wait_ready

# Positional arguments only (bench_open311_cpu imports this module with its own arguments).
_ARGS = [a for a in sys.argv[1:] if a.isdigit()] if __name__ == "__main__" else []
REPORTS = int(_ARGS[0]) if _ARGS else 1_000_000
WORKERS = int(_ARGS[1]) if len(_ARGS) > 1 else 1
# `--posts`: time the POSTs only (the GETs take most of a run's time while iterating).
POSTS_ONLY = __name__ == "__main__" and "--posts" in sys.argv
BATCH = 20_000
POSTS = 3_000
WARMUP_POSTS = 50
# Keep-alive connections sending reports at once (bench/harness.py `hammer`: pre-encoded
# requests, raw sockets, so that the load generator takes little of the two cores).
POST_CLIENTS = 16
GETS = 50
WARMUP = 10
NOW = datetime.now(UTC).replace(microsecond=0)
DESCRIPTIONS = (
    "Ổ gà lớn giữa làn xe máy, nguy hiểm ban đêm",
    "Rác tồn đọng nhiều ngày trước chợ, bốc mùi",
    "Đèn đường không sáng cả đoạn",
    "Nước ngập sâu sau mưa, xe chết máy",
    "Khói bụi từ xưởng gỗ",
)


def seeded(folder: Path, **overrides: Any) -> tuple[Settings, Runtime]:
    """Return settings and a runtime for a migrated, seeded bench database in `folder`."""
    settings = Settings(
        database_url=database_url(folder),
        data_dir=folder,
        secret_key=secrets.token_urlsafe(48),
        background_jobs=False,
        log_level="WARNING",
        egov_demo_dossiers=0,
        **overrides,
    )
    runtime = build_runtime(settings)
    migrate.upgrade(runtime.engine)
    seed(runtime)
    return settings, runtime


def load(runtime: Runtime, reports: int = REPORTS) -> float:
    """Bulk-insert `reports` reports over the last year; return the seconds it took."""
    rng = random.Random(2026)
    with unit_of_work(runtime.session_factory) as session:
        units = list(
            session.execute(
                select(AdminUnit.code, AdminUnit.lat, AdminUnit.lon).where(
                    AdminUnit.level == "commune", AdminUnit.valid_to.is_(None)
                )
            )
        )
        services = [(s.code, s.department_code) for s in session.scalars(select(CitizenService))]
    table = Report.__table__
    started = time.perf_counter()
    for first in range(0, reports, BATCH):
        rows: list[dict[str, Any]] = []
        for number in range(first, min(first + BATCH, reports)):
            code, lat, lon = rng.choice(units)
            service_code, department = rng.choice(services)
            at = NOW - timedelta(seconds=rng.randrange(365 * 86400))
            closed = rng.random() < 0.8
            rows.append(
                {
                    "tracking_code": f"PB-{number:010d}",
                    "token": secrets.token_hex(16),
                    "service_code": service_code,
                    "status": "closed" if closed else "open",
                    "status_notes": "Đã xử lý xong" if closed else None,
                    "description": rng.choice(DESCRIPTIONS),
                    "address": None,
                    "lat": (lat or 10.94) + rng.uniform(-0.01, 0.01),
                    "lon": (lon or 106.83) + rng.uniform(-0.01, 0.01),
                    "media_url": None,
                    "attributes": {},
                    "unit_code": code,
                    "department_code": department,
                    "moderation": "none",
                    "requested_at": at,
                    "updated_at": at + timedelta(days=2) if closed else at,
                    "expected_at": at + timedelta(days=3),
                    "closed_at": at + timedelta(days=2) if closed else None,
                }
            )
        rows.sort(key=lambda row: row["requested_at"])
        _insert(runtime, table, rows)
    return time.perf_counter() - started


def _insert(runtime: Runtime, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows: through the driver on SQLite (the ORM types cost more than the insert)."""
    if runtime.engine.dialect.name != "sqlite":
        with runtime.engine.begin() as conn:
            conn.execute(insert(table), rows)
        return
    names = list(rows[0])

    def value(item: Any) -> Any:
        if isinstance(item, datetime):
            # How UTCDateTime stores a time on SQLite: naive UTC text.
            return (
                item.astimezone(UTC)
                .replace(tzinfo=None)
                .isoformat(sep=" ", timespec="microseconds")
            )
        if isinstance(item, dict):
            return json.dumps(item)
        return item

    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"  # noqa: S608 - our own table and column names
    raw = runtime.engine.raw_connection()
    try:
        cursor = raw.cursor()
        # A bulk load: the indexes' random inserts stay in a large page cache, no fsync per batch.
        cursor.execute("PRAGMA cache_size=-524288")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.executemany(sql, [tuple(value(row[n]) for n in names) for row in rows])
        raw.commit()
    finally:
        raw.close()


def _key(runtime: Runtime) -> str:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        _, key = auth_service.create_api_key(
            session=session,
            key_in=ApiKeyCreate(name="bench-open311", permissions=[Permission.CITIZEN_SUBMIT]),
            clock=runtime.clock,
            created_by=None,
        )
    return key


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and its worker children used so far (Linux
    /proc): load-independent."""
    total = 0.0
    for each in (pid, *_children(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        listed = (task / "children").read_text().split()
        found.extend(int(child) for child in listed)
    return found


def _postgres_cpu(database: str | None) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving `database` (their share of
    the work on PostgreSQL; the workers' pooled connections live through the run). 0 on SQLite."""
    total = 0.0
    if not database:
        return total
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if title.startswith("postgres: ") and f" {database} " in title:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _posts(port: int, key: str, dialect: str, pid: int, database: str | None = None) -> None:
    rng = random.Random(7)
    # Points around the former Biên Hòa and Long Khánh: every report is located and routed.
    centres = [(10.938, 106.835), (10.954, 106.859), (10.976, 106.927), (10.94, 107.24)]
    services = ["GT-01", "TN-01", "MT-01", "CS-01", "MT-02", "AT-01", "KH-01"]

    def body() -> bytes:
        lat, lon = rng.choice(centres)
        service = rng.choice(services)
        data = {
            "api_key": key,
            "service_code": service,
            "lat": f"{lat + rng.uniform(-0.005, 0.005):.6f}",
            "long": f"{lon + rng.uniform(-0.005, 0.005):.6f}",
            "description": rng.choice(DESCRIPTIONS),
            "email": "nguoi.dan@example.vn",
        }
        if service == "GT-01":
            data["attribute[damage]"] = "pothole"
        return encode_request(
            "POST",
            "/open311/v2/requests.json",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=urlencode(data).encode(),
        )

    requests = [body() for _ in range(POSTS)]
    warm = run_hammer("127.0.0.1", port, requests[:WARMUP_POSTS], connections=1)
    cpu, pg_cpu = _cpu(pid), _postgres_cpu(database)
    done = run_hammer("127.0.0.1", port, requests[WARMUP_POSTS:], connections=POST_CLIENTS)
    cpu, pg_cpu = _cpu(pid) - cpu, _postgres_cpu(database) - pg_cpu
    count = len(done.statuses)
    failed = sum(1 for status in (*warm.statuses, *done.statuses) if status != 201)
    database = f", PostgreSQL {pg_cpu / count * 1000:.1f} ms" if dialect == "postgresql" else ""
    print(
        f"[{dialect}] POST requests.json (locate, duplicates, route, incident): "
        f"{done.rate:,.0f} reports/s over {count:,} with {POST_CLIENTS} connections; "
        f"p50 {percentile(done.latencies, 50) * 1000:.1f} ms, "
        f"p95 {percentile(done.latencies, 95) * 1000:.1f} ms; CPU per report: server "
        f"{cpu / count * 1000:.1f} ms{database}, load generator "
        f"{done.client_cpu / count * 1000:.2f} ms; {failed} failed"
    )


def _gets(base: str, dialect: str, pid: int) -> None:
    queries = [
        ("default (last 90 days)", "/open311/v2/requests.json"),
        ("one service", "/open311/v2/requests.json?service_code=MT-01"),
        ("open only", "/open311/v2/requests.json?status=open"),
        ("service + status", "/open311/v2/requests.json?service_code=GT-01,TN-01&status=open"),
        ("page 20 of 1,000", "/open311/v2/requests.json?page=20"),
        ("default, XML", "/open311/v2/requests.xml"),
    ]
    with httpx.Client(base_url=base, timeout=60) as client:
        for name, url in queries:
            times: list[float] = []
            size = 0
            cpu = _cpu(pid)
            for i in range(WARMUP + GETS):
                started = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text[:300]
                if i >= WARMUP:
                    times.append(elapsed)
                size = len(response.content)
            count = response.text.count("service_request_id") // (2 if url.endswith("xml") else 1)
            print(
                f"[{dialect}] GET {name:24s} {count:5d} results {size / 1024:6.0f} KiB  "
                f"p50 {percentile(times, 50) * 1000:6.1f} ms  "
                f"p95 {percentile(times, 95) * 1000:6.1f} ms  "
                f"server CPU {(_cpu(pid) - cpu) / (WARMUP + GETS) * 1000:5.1f} ms/request"
            )


def main() -> None:
    """Load reports, start uvicorn, time POSTs then GETs."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings, runtime = seeded(folder)
        dialect = runtime.engine.dialect.name
        key = _key(runtime)
        seconds = load(runtime)
        runtime.engine.dispose()
        print(f"[{dialect}] loaded {REPORTS:,} reports in {seconds:.1f} s")
        port = free_port()
        env = {
            **os.environ,
            "CITYOPS_DATABASE_URL": settings.database_url,
            "CITYOPS_DATA_DIR": str(folder),
            "CITYOPS_SECRET_KEY": settings.secret_key,
            "CITYOPS_LOG_LEVEL": "WARNING",
            "CITYOPS_BACKGROUND_JOBS": "false",
            "CITYOPS_CITIZEN_RATE_PER_MINUTE": "1000000",
            "CITYOPS_WORKERS": str(WORKERS),
        }
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "cityops.app:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--no-access-log", "--workers", str(WORKERS),
        ]  # fmt: skip
        server = subprocess.Popen(command, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, server, timeout=300)
            print(
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
                f"{WORKERS} worker(s)"
            )
            if not POSTS_ONLY:
                _gets(base, dialect, server.pid)
            database = make_url(settings.database_url).database if dialect == "postgresql" else None
            _posts(port, key, dialect, server.pid, database)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
