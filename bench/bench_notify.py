"""Benchmark: what routing an alert or incident event to notifications costs, with ~500 users.

Builds a temporary SQLite database migrated and seeded with the Đồng Nai profile, adds 500
users (operators, ward and department officers, leaders, viewers; two in five with their own
preferences, some with quiet hours), then times
- building the routing directory (users, scopes, preferences, unit names, webhooks),
- deciding and rendering the messages of one event with the directory cached (no writes),
- the same without the cache (the directory rebuilt per event: what the cache saves),
- publishing one event in its own committed transaction, outbox rows included.
Nothing is sent: the outbox is not drained.
Run: .venv/bin/python bench/bench_notify.py
"""

from __future__ import annotations

import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cityops.app import build_runtime
from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core import migrate, outbox
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.notify import flows
from cityops.notify import service as notify_service
from cityops.notify.enums import EventKind
from cityops.notify.schemas import PreferenceUpdate
from cityops.seed import seed
from cityops.units import service as unit_service
from harness import percentile

USERS = 500
PLAN_EVENTS = 2000
PUBLISHED_EVENTS = 300
DEPARTMENTS = ["SYT", "SGDDT", "SXD", "SNNMT", "SNV", "SKHCN", "CAT", "VPUBND", "STC", "SCT"]


def _users(runtime: Runtime, wards: list[str], rng: random.Random) -> None:
    roles = (
        [("operator", None, None)] * 50
        + [("unit_officer", "ward", None)] * 300
        + [("department_officer", None, "dept")] * 100
        + [("leader", None, "dept")] * 20
        + [("viewer", None, None)] * 30
    )
    kinds = [str(kind) for kind in EventKind]
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        available = flows.available_channels(runtime.settings)
        for n, (role, ward, dept) in enumerate(roles[:USERS]):
            user = auth_service.create_user(
                session=session,
                user_in=UserCreate(
                    username=f"u{n:04d}",
                    password=f"Bench-{n:04d}-password",
                    full_name=f"Người dùng {n}",
                    role=role,
                    unit_code=rng.choice(wards) if ward else None,
                    department_code=rng.choice(DEPARTMENTS) if dept else None,
                    email=f"u{n:04d}@dongnai.gov.vn",
                    language="en" if n % 10 == 0 else "vi",
                ),
                clock=runtime.clock,
                settings=runtime.settings,
            )
            if n % 5 < 2:
                quiet: dict[str, Any] = (
                    {"quiet_start": "22:00", "quiet_end": "06:00"} if n % 3 == 0 else {}
                )
                notify_service.set_preference(
                    session=session,
                    user_id=user.id,
                    user_email=user.email,
                    preference_in=PreferenceUpdate(
                        events=rng.sample(kinds, rng.randint(1, len(kinds))),
                        channels=["email", "sms"] if n % 4 == 0 else ["email"],
                        phone=f"09{n:08d}",
                        min_severity=rng.choice(["low", "medium", "high"]),
                        only_mine=n % 7 == 0,
                        **quiet,
                    ),
                    available=available,
                    clock=runtime.clock,
                )


def _event(n: int, wards: list[str], rng: random.Random, at: Any) -> Event:
    severity = rng.choice(["low", "medium", "high", "critical"])
    ward = rng.choice(wards)
    if n % 2 == 0:
        return Event(
            type=rng.choice(["alerts.alert_opened", "alerts.alert_resolved"]),
            data={
                "alert_id": n,
                "severity": severity,
                "unit_code": ward,
                "title_vi": "Mực nước hồ Trị An vượt mức báo động 1",
                "title_en": "Trị An reservoir above alarm level 1",
                "value": 62.1,
                "opened_at": at.isoformat(),
                "policy": {"incident": {"category": "reservoir_level", "department_code": "SNNMT"}},
            },
            at=at,
        )
    department = rng.choice(DEPARTMENTS)
    return Event(
        type=rng.choice(
            [
                "incidents.incident_created",
                "incidents.incident_changed",
                "incidents.comment_added",
                "incidents.sla_breached",
            ]
        ),
        data={
            "incident_id": n,
            "code": f"SC-2026-{n:06d}",
            "title": "Ngập úng cục bộ đường Phạm Văn Thuận",
            "status": "in_progress",
            "previous_status": "new",
            "change": "status",
            "severity": severity,
            "unit_code": ward,
            "department_code": department,
            "department_codes": [department],
            "due_resolve_at": at.isoformat(),
        },
        at=at,
    )


def _summary(label: str, seconds: list[float], extra: str = "") -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"{label}: mean {sum(ms) / len(ms):.2f} ms, p50 {percentile(ms, 50):.2f} ms, "
        f"p95 {percentile(ms, 95):.2f} ms{extra}"
    )


def main() -> None:
    """Print the routing figures."""
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        settings = Settings(
            database_url=f"sqlite:///{data_dir / 'bench.db'}",
            data_dir=data_dir,
            secret_key=secrets.token_urlsafe(48),
            password_time_cost=1,
            password_memory_kib=64,
            smtp_host="127.0.0.1",
            sms_gateway_url="http://127.0.0.1:9/sms",
        )
        runtime = build_runtime(settings)
        migrate.upgrade(runtime.engine)
        seed(runtime)
        with runtime.session_factory() as session:
            units, _ = unit_service.get_all(session=session, level="commune", limit=1000)
        wards = [unit.code for unit in units]
        _users(runtime, wards, rng)

        with runtime.session_factory() as session:
            started = time.perf_counter()
            directory = flows.build_directory(session=session)
            build_s = time.perf_counter() - started
        print(
            f"directory: {len(directory.recipients)} active users, "
            f"{sum(not r.prefs.is_default for r in directory.recipients)} with preferences, "
            f"built in {build_s * 1000:.0f} ms"
        )

        now = runtime.clock.now()
        events = [_event(n, wards, rng, now) for n in range(PLAN_EVENTS)]
        runtime.caches[flows.DIRECTORY_KEY] = directory
        timings, produced = [], 0
        with runtime.session_factory() as session:
            for event in events:
                started = time.perf_counter()
                planned = flows.plan_event(runtime=runtime, session=session, event=event)
                timings.append(time.perf_counter() - started)
                produced += len(planned.rows) if planned else 0
        _summary(
            f"plan per event, cached directory ({PLAN_EVENTS} events)",
            timings,
            f"; {produced / PLAN_EVENTS:.1f} messages per event",
        )

        timings = []
        with runtime.session_factory() as session:
            for event in events[:50]:
                started = time.perf_counter()
                runtime.caches.pop(flows.DIRECTORY_KEY, None)
                flows.plan_event(runtime=runtime, session=session, event=event)
                timings.append(time.perf_counter() - started)
        _summary("plan per event, no cache (50 events)", timings)

        runtime.caches[flows.DIRECTORY_KEY] = directory
        timings = []
        for event in events[:PUBLISHED_EVENTS]:
            started = time.perf_counter()
            with unit_of_work(runtime.session_factory) as session:
                runtime.bus.publish_after_commit(session, event)
            timings.append(time.perf_counter() - started)
        with runtime.session_factory() as session:
            rows = session.scalar(select(func.count()).select_from(outbox.OutboxMessage)) or 0
        _summary(
            f"publish + route + outbox rows + commit ({PUBLISHED_EVENTS} events, SQLite)",
            timings,
            f"; {rows} outbox rows, {PUBLISHED_EVENTS / sum(timings):,.0f} events/s",
        )
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
