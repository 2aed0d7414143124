"""Benchmark: the incident list over HTTP against a real uvicorn server, with 100,000 incidents.

Bulk-inserts 100,000 incidents (about 130,000 department rows) spread over the province's
communes and wards, a year of creation times, every status, category and severity; then times
filtered, paginated list requests (target: p95 <= 50 ms) and the SLA report over a month:
  status + department, unit + period, area + status sorted by deadline, overdue, text search,
  a department-scoped and a ward-scoped caller, a deep page.
SQLite in a temporary folder by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set.
Run: .venv/bin/python bench/bench_incidents.py [--only q=] [--no-year-report]
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_incidents.py
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import database_url
from cityops.app import build_runtime
from cityops.auth import service as auth_service
from cityops.auth.schemas import ApiKeyCreate
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Permission
from cityops.incidents.models import (
    Incident,
    IncidentCategory,
    IncidentDepartment,
    IncidentSequence,
)
from cityops.incidents.service import search_form
from cityops.seed import seed
from cityops.units.models import AdminUnit, AreaMember
from harness import free_port, percentile, wait_ready

INCIDENTS = 100_000
BATCH = 5_000
REQUESTS = 300
WARMUP = 20
SERVER_PID = [0]
# The server runs on the wall clock: the data is the year up to now.
NOW = datetime.now(UTC).replace(microsecond=0)
YEAR = timedelta(days=365)
WARD = "26041"  # Phường Trấn Biên
AREA = "bien-hoa-cu"
STATUSES = (
    ("new", 0.08),
    ("assigned", 0.12),
    ("in_progress", 0.15),
    ("resolved", 0.25),
    ("closed", 0.40),
)
SEVERITIES = (("low", 0.30), ("medium", 0.40), ("high", 0.22), ("critical", 0.08))
# Minutes to acknowledge and resolve by severity (around the clock, for the bulk load).
SLA = {"low": (480, 2400), "medium": (120, 960), "high": (30, 480), "critical": (15, 240)}
DEPARTMENTS = ("SNNMT", "SXD", "SYT", "SKHCN", "VPUBND", "CAT", "SCT")
TITLES = (
    "Ngập sâu sau mưa lớn tại {unit}",
    "Bụi mịn PM2.5 vượt ngưỡng tại {unit}",
    "Rác thải tồn đọng tại {unit}",
    "Đèn chiếu sáng công cộng hỏng tại {unit}",
    "Ùn tắc giao thông giờ cao điểm tại {unit}",
    "Cảm biến mất kết nối tại {unit}",
    "Nước thải xả ra kênh tại {unit}",
    "Quá tải khu cấp cứu gần {unit}",
)


# A request to time: its path, query parameters and API key name, from its number.
Request = Callable[[int], tuple[str, dict[str, Any], str]]


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _load(runtime: Runtime) -> float:
    """Bulk-insert the incidents and their department rows; return the seconds it took."""
    rng = random.Random(2026)
    with unit_of_work(runtime.session_factory) as session:
        units = [
            (code, name)
            for code, name in session.execute(
                select(AdminUnit.code, AdminUnit.name).where(
                    AdminUnit.level == "commune", AdminUnit.valid_to.is_(None)
                )
            )
        ]
        pilot = set(
            session.scalars(select(AreaMember.unit_code).where(AreaMember.area_code == AREA))
        )
        categories = [
            (c.code, c.sector, c.department_code)
            for c in session.scalars(select(IncidentCategory).order_by(IncidentCategory.code))
        ]
    # The pilot area (former Biên Hòa) reports five times as much as elsewhere.
    weights = [5.0 if code in pilot else 1.0 for code, _ in units]
    started = time.perf_counter()
    incident_table = Incident.__table__
    department_table = IncidentDepartment.__table__
    for first in range(0, INCIDENTS, BATCH):
        rows: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for number in range(first + 1, min(first + BATCH, INCIDENTS) + 1):
            unit_code, unit_name = rng.choices(units, weights=weights)[0]
            category, sector, department = rng.choice(categories)
            department = department or rng.choice(DEPARTMENTS)
            severity = _pick(rng, SEVERITIES)
            status = _pick(rng, STATUSES)
            created = NOW - YEAR * rng.random() ** 1.5
            ack_minutes, resolve_minutes = SLA[severity]
            due_ack = created + timedelta(minutes=ack_minutes)
            due_resolve = created + timedelta(minutes=resolve_minutes)
            started_at = resolved_at = closed_at = None
            if status != "new" and status != "assigned":
                started_at = created + timedelta(minutes=ack_minutes * rng.uniform(0.2, 1.6))
            if status in ("resolved", "closed"):
                resolved_at = created + timedelta(minutes=resolve_minutes * rng.uniform(0.3, 1.5))
            if status == "closed":
                closed_at = (resolved_at or created) + timedelta(hours=rng.uniform(1, 48))
            title = rng.choice(TITLES).format(unit=unit_name)
            rows.append(
                {
                    "id": number,
                    "code": f"SC-{created.year}-{number:06d}",
                    "title": title,
                    "title_folded": search_form(title),
                    "description": None,
                    "category_code": category,
                    "sector": sector,
                    "severity": severity,
                    "status": status,
                    "source": "alert" if rng.random() < 0.4 else "manual",
                    "alert_id": None,
                    "source_ref": None,
                    "lat": None,
                    "lon": None,
                    "unit_code": unit_code,
                    "department_code": department,
                    "assignee_id": None,
                    "created_by": None,
                    "created_at": created,
                    "updated_at": closed_at or resolved_at or started_at or created,
                    "acknowledged_at": started_at,
                    "resolved_at": resolved_at,
                    "closed_at": closed_at,
                    "due_ack_at": due_ack,
                    "due_resolve_at": due_resolve,
                    "ack_breached": started_at is not None and started_at > due_ack,
                    "resolve_breached": resolved_at is not None and resolved_at > due_resolve,
                    "escalation_level": 0,
                    "overdue_at": None
                    if status in ("resolved", "closed")
                    else (due_resolve if started_at else due_ack),
                }
            )
            copies = {"status": status, "created_at": created}
            links.append(
                {"incident_id": number, "department_code": department, "role": "main", **copies}
            )
            if rng.random() < 0.3:
                support = rng.choice([d for d in DEPARTMENTS if d != department])
                links.append(
                    {"incident_id": number, "department_code": support, "role": "support", **copies}
                )
        with unit_of_work(runtime.session_factory) as session:
            session.execute(insert(incident_table), rows)
            session.execute(insert(department_table), links)
    with unit_of_work(runtime.session_factory) as session:
        session.execute(
            insert(IncidentSequence.__table__), [{"year": 2026, "last_number": INCIDENTS}]
        )
    if runtime.engine.dialect.name == "postgresql":
        with runtime.engine.begin() as connection:
            connection.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('incident', 'id'), "
                "(SELECT max(id) FROM incident))"
            )
            connection.exec_driver_sql("ANALYZE")
    else:
        with runtime.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def _keys(runtime: Runtime) -> dict[str, str]:
    """API keys able to read incidents: province-wide, one department, one ward."""
    keys: dict[str, str] = {}
    scopes: dict[str, dict[str, str]] = {
        "province": {},
        "department": {"department_code": "SNNMT"},
        "ward": {"unit_code": WARD},
    }
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        for name, scope in scopes.items():
            _, keys[name] = auth_service.create_api_key(
                session=session,
                key_in=ApiKeyCreate(
                    name=f"bench-{name}", permissions=[Permission.INCIDENT_READ], **scope
                ),
                clock=runtime.clock,
                created_by=None,
            )
    return keys


def _server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the server process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _time(
    client: httpx.Client,
    label: str,
    target: float | None,
    make: Request,
    keys: dict[str, str],
) -> None:
    timings: list[float] = []
    totals: list[int] = []
    cpu_start = 0.0
    for i in range(WARMUP + REQUESTS):
        if i == WARMUP:
            cpu_start = _server_cpu_seconds(SERVER_PID[0])
        path, params, key = make(i)
        started = time.perf_counter()
        response = client.get(path, params=params, headers={"X-API-Key": keys[key]})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{label}: {response.status_code} {response.text[:300]}")
        if i >= WARMUP:
            timings.append(elapsed)
            body = response.json()
            totals.append(int(body.get("total", body.get("overall", {}).get("total", 0))))
    # Server CPU per request: what a request costs, whatever else shares the machine.
    cpu_ms = (_server_cpu_seconds(SERVER_PID[0]) - cpu_start) * 1000 / REQUESTS
    p95 = percentile(timings, 95)
    verdict = (
        ""
        if target is None
        else (f"(target p95 <= {target:.0f} ms: {'met' if p95 <= target else 'MISSED'}; ")
    )
    print(
        f"  {label:<44} p50 {percentile(timings, 50):7.2f}  p95 {p95:7.2f}  "
        f"p99 {percentile(timings, 99):7.2f}  mean {statistics.fmean(timings):7.2f} ms  "
        f"server CPU {cpu_ms:5.1f} ms/request  "
        f"{verdict or '('}{statistics.fmean(totals):,.0f} matching on average)"
    )


def measure(
    settings: Settings,
    keys: dict[str, str],
    dialect: str,
    only: Sequence[str] = ("",),
    year_report: bool = True,
) -> None:
    """Start uvicorn on the loaded database and print the latency of each list request (those
    whose label holds one of `only`, and the request floor)."""
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DATABASE_URL": settings.database_url,
        "CITYOPS_DATA_DIR": str(settings.data_dir),
        "CITYOPS_SECRET_KEY": settings.secret_key,
        "CITYOPS_LOG_LEVEL": "WARNING",
        "CITYOPS_BACKGROUND_JOBS": "false",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "cityops.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env)
    SERVER_PID[0] = server.pid
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(75)
    url = "/api/v1/incidents"
    departments = ("SNNMT", "SXD", "SYT", "SKHCN")
    wards = ("26041", "26017", "26020", "26005", "25993", "26080")

    def day(offset_days: int) -> str:
        return (NOW - timedelta(days=offset_days)).strftime("%Y-%m-%dT%H:%M:%S")

    try:
        # Start-up builds the point locator: allow for a busy machine.
        wait_ready(base, server, timeout=300)
        with httpx.Client(base_url=base, timeout=30) as client:
            print(
                f"[{dialect}] over HTTP, {REQUESTS} requests each after {WARMUP} warm-up; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
            # The floor (an authenticated request that reads almost nothing: one holiday) first.
            requests: list[tuple[str, float | None, Request]] = [
                (
                    "request floor (GET /incidents/holidays?limit=1)",
                    None,
                    lambda i: (f"{url}/holidays", {"limit": 1}, "province"),
                ),
                (
                    "newest first, no filter, limit 50",
                    50,
                    lambda i: (url, {"limit": 50}, "province"),
                ),
                (
                    "status=new,assigned + department",
                    50,
                    lambda i: (
                        url,
                        {
                            "status": ["new", "assigned"],
                            "department_code": rng.choice(departments),
                            "limit": 50,
                            "offset": rng.choice((0, 50, 100)),
                        },
                        "province",
                    ),
                ),
                (
                    "unit + 30-day period",
                    50,
                    lambda i: (
                        url,
                        {
                            "unit_code": rng.choice(wards),
                            "created_from": day(rng.randint(30, 300)),
                            "created_to": day(rng.randint(0, 29)),
                            "limit": 50,
                        },
                        "province",
                    ),
                ),
                (
                    "area + in_progress, by deadline",
                    50,
                    lambda i: (
                        url,
                        {
                            "area_code": AREA,
                            "status": "in_progress",
                            "sort": "due_resolve_at",
                            "limit": 50,
                        },
                        "province",
                    ),
                ),
                (
                    "sector + severity=high,critical + period",
                    50,
                    lambda i: (
                        url,
                        {
                            "sector": rng.choice(("environment", "health", "transport")),
                            "severity": ["high", "critical"],
                            "created_from": day(90),
                            "limit": 50,
                        },
                        "province",
                    ),
                ),
                (
                    "overdue=true",
                    50,
                    lambda i: (url, {"overdue": "true", "limit": 50}, "province"),
                ),
                (
                    "q=words of the title (no diacritics)",
                    50,
                    lambda i: (
                        url,
                        {"q": rng.choice(("ngap sau", "bui min", "den chieu sang")), "limit": 50},
                        "province",
                    ),
                ),
                (
                    "q=words, the last one begun, ward-scoped caller",
                    50,
                    lambda i: (
                        url,
                        {"q": rng.choice(("ngap sa", "bui mi", "den chieu s")), "limit": 50},
                        "ward",
                    ),
                ),
                (
                    "department-scoped caller, status filter",
                    50,
                    lambda i: (
                        url,
                        {"status": rng.choice(("new", "in_progress", "closed")), "limit": 50},
                        "department",
                    ),
                ),
                (
                    "ward-scoped caller, newest first",
                    50,
                    lambda i: (url, {"limit": 50}, "ward"),
                ),
                (
                    "deep page (offset 5,000)",
                    50,
                    lambda i: (url, {"limit": 50, "offset": 5000}, "province"),
                ),
                (
                    "SLA report by department, 30 days",
                    None,
                    lambda i: (f"{url}/sla-report", {"group_by": "department"}, "province"),
                ),
                (
                    "SLA report by unit, 365 days",
                    None,
                    lambda i: (
                        f"{url}/sla-report",
                        {
                            "group_by": "unit",
                            "from": str((NOW - YEAR).date()),
                            "to": str(NOW.date()),
                        },
                        "province",
                    ),
                ),
            ]
            for label, target, make in requests:
                if label.startswith("request floor") or (
                    any(part in label for part in only)
                    and (year_report or not label.endswith("365 days"))
                ):
                    _time(client, label, target, make, keys)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    """Load the incidents, start uvicorn and print list latencies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="time only the requests whose label holds TEXT (repeatable), e.g. --only q=",
    )
    parser.add_argument(
        "--no-year-report",
        action="store_true",
        help="skip the year-long SLA report at the end (minutes on PostgreSQL)",
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
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
        dialect = runtime.engine.dialect.name
        seconds = _load(runtime)
        keys = _keys(runtime)
        runtime.engine.dispose()
        print(
            f"[{dialect}] loaded {INCIDENTS:,} incidents in {seconds:.1f} s "
            f"({INCIDENTS / seconds:,.0f}/s)"
        )
        measure(settings, keys, dialect, arguments.only or [""], not arguments.no_year_report)


if __name__ == "__main__":
    main()
