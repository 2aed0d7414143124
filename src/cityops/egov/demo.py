"""Plausible Đồng Nai dossiers for the demo and the benchmarks, deterministic for a seed.

Each agency (a department, or a commune/ward's People's Committee) draws its own service
quality once: how often it finishes on time, how much is submitted and paid online, digitised,
issued electronically, how often citizens are unhappy. So agencies differ and the 766 ranking
means something. Dossiers are received on working days in office hours; due dates follow the
procedure's time limit in working days; those not finished by `as_of` stay open.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import itertools
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from cityops.core.config import Environment
from cityops.core.runtime import Runtime
from cityops.egov import service
from cityops.egov.enums import (
    AgencyKind,
    Channel,
    DossierStatus,
    ImportFormat,
    ImportStatus,
    OnlineLevel,
    ProcedureLevel,
    Rating,
)
from cityops.egov.periods import WorkCalendar, local_midnight
from cityops.units.flows import local_date

DEMO_SEED = 766
DEMO_SIZE = 30_000
INSERT_BATCH = 5000
# How often each commune-level procedure is asked for, relative to the others (demo weights).
POPULAR = {
    "2.000815": 30,  # chứng thực bản sao: by far the most frequent
    "2.000884": 10,
    "1.001193": 12,
    "1.000656": 4,
    "1.000894": 5,
    "1.004873": 6,
    "2.000635": 5,
    "2.001035": 6,
    "1.012761": 5,
    "1.012794": 3,
    "1.009994": 4,
    "2.000720": 4,
}
# Which departments are busiest (relative dossier volumes).
DEPARTMENT_VOLUME = {"STC": 6, "CAT": 8, "SNNMT": 6, "SXD": 3, "SYT": 2, "SNV": 2}


@dataclass(frozen=True, slots=True)
class Quality:
    """An agency's service quality: the chances that decide each of its dossiers."""

    on_time: float
    online: float
    paid: float
    digitised: float
    electronic: float
    reuse: float
    synced: float
    unsatisfied: float


def _quality(rng: random.Random) -> Quality:
    q = rng.betavariate(4, 1.6)  # most agencies decent, a few clearly behind
    o = min(1.0, max(0.0, q + rng.uniform(-0.25, 0.2)))
    return Quality(
        on_time=0.86 + 0.139 * q,
        online=0.2 + 0.75 * o,
        paid=0.15 + 0.75 * o,
        digitised=0.35 + 0.63 * q,
        electronic=0.3 + 0.68 * o,
        reuse=0.2 + 0.7 * q,
        synced=0.9 + 0.1 * q,
        unsatisfied=0.004 + 0.05 * (1 - q),
    )


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """What the generator draws from: agencies, procedures, places, the calendar and the dates."""

    agencies: Sequence[service.Agency]
    procedures: Sequence[dict[str, Any]]
    communes: Sequence[str]
    province: str
    calendar: WorkCalendar
    start: datetime
    as_of: datetime


def generate(world: DemoWorld, *, size: int, seed: int = DEMO_SEED) -> Iterator[dict[str, Any]]:
    """Yield `size` dossiers (column values of `egov_dossier`), the same ones for the same seed."""
    rng = random.Random(seed)
    zone = world.calendar.zone
    first = world.start.astimezone(zone).date()
    last = world.as_of.astimezone(zone).date()
    days = world.calendar.working_days(first, last + timedelta(days=180))
    open_days = sum(1 for d in days if d <= last)
    if open_days == 0:
        return
    midnights = [local_midnight(d, zone) for d in days]
    commune_procs = [p for p in world.procedures if p["level"] == ProcedureLevel.COMMUNE.value]
    by_department: dict[str, list[dict[str, Any]]] = {}
    for p in world.procedures:
        if p["department_code"]:
            by_department.setdefault(p["department_code"], []).append(p)
    agencies = [
        a for a in world.agencies if a.kind is AgencyKind.COMMUNE or by_department.get(a.code)
    ]
    quality = {a.code: _quality(rng) for a in agencies}
    weights = [
        rng.lognormvariate(0, 0.6)
        if a.kind is AgencyKind.COMMUNE
        else DEPARTMENT_VOLUME.get(a.code, 1) * 3.0
        for a in agencies
    ]
    commune_weights = list(itertools.accumulate(POPULAR.get(p["code"], 2) for p in commune_procs))
    weight_total = commune_weights[-1] if commune_weights else 0
    # Draw every dossier's agency at once: much faster than one weighted draw per dossier.
    chosen = rng.choices(agencies, weights=weights, k=size)
    for index, agency in enumerate(chosen):
        q = quality[agency.code]
        if agency.kind is AgencyKind.COMMUNE:
            proc = commune_procs[bisect.bisect(commune_weights, rng.random() * weight_total)]
            unit = agency.code
        else:
            proc = rng.choice(by_department[agency.code])
            # Most department dossiers go through the provincial centre; some through a commune.
            unit = world.province if rng.random() < 0.6 else rng.choice(world.communes)
        yield _dossier(rng, index, agency.code, unit, proc, q, days, midnights, open_days, world)


# Precomputed: the generator makes a million of these in the benchmark.
_MINUTES = [timedelta(minutes=m) for m in range(24 * 60 + 1)]
_HOURS_17 = timedelta(hours=17)
_ONLINE, _POSTAL, _IN_PERSON = Channel.ONLINE.value, Channel.POSTAL.value, Channel.IN_PERSON.value
_NONE, _PARTIAL = OnlineLevel.NONE.value, OnlineLevel.PARTIAL.value
_OPEN, _SUPPLEMENTING = DossierStatus.PROCESSING.value, DossierStatus.SUPPLEMENTING.value
_DONE, _REJECTED, _WITHDRAWN = (
    DossierStatus.COMPLETED.value,
    DossierStatus.REJECTED.value,
    DossierStatus.WITHDRAWN.value,
)
_SATISFIED, _NEUTRAL, _UNSATISFIED = (
    Rating.SATISFIED.value,
    Rating.NEUTRAL.value,
    Rating.UNSATISFIED.value,
)


def _dossier(
    rng: random.Random,
    index: int,
    agency: str,
    unit: str,
    proc: dict[str, Any],
    q: Quality,
    days: list[Any],
    midnights: list[datetime],
    open_days: int,
    world: DemoWorld,
) -> dict[str, Any]:
    r = rng.random
    last = len(days) - 1
    day = int(r() * open_days)
    received = midnights[day] + _MINUTES[450 + int(r() * 540)]  # 07:30–16:30
    if received > world.as_of:
        day = max(0, day - 1)
        received = midnights[day] + _MINUTES[450 + int(r() * 540)]
    limit = max(1, int(proc["time_limit_days"]))
    due = midnights[min(day + limit, last)] + _HOURS_17
    supplements = 1 if r() < 0.05 else 0
    if r() < q.on_time:
        done_day = min(day + int(limit * r() ** 1.5), last)
        done = midnights[done_day] + _MINUTES[480 + int(r() * 540)]
        if done <= received:
            done = received + _MINUTES[20 + int(r() * 160)]
        done = min(done, due)
    else:
        late = 1 + int(rng.expovariate(0.35))
        done = midnights[min(day + limit + late, last)] + _MINUTES[480 + int(r() * 540)]
        if r() < 0.2:
            supplements = 2
    online_level = proc["online_level"]
    online_p = 0.0 if online_level == _NONE else q.online
    if online_level == _PARTIAL:
        online_p *= 0.7
    online = r() < online_p
    channel = _ONLINE if online else (_POSTAL if r() < 0.05 else _IN_PERSON)
    paid = (
        bool(proc["has_fee"])
        and bool(proc["payment_integrated"])
        and r() < (q.paid if online else q.paid * 0.3)
    )
    completed: datetime | None
    if done > world.as_of:
        completed, status, electronic = None, _SUPPLEMENTING if supplements else _OPEN, False
    else:
        roll = r()
        completed = done
        status = _WITHDRAWN if roll < 0.01 else _REJECTED if roll < 0.03 else _DONE
        electronic = r() < q.electronic
    rating: str | None = None
    if completed is not None and r() < 0.35:
        roll = r()
        # Among those who rate, the unhappy share follows the agency's quality.
        unhappy = min(0.9, q.unsatisfied / 0.35)
        rating = (
            _UNSATISFIED if roll < unhappy else _NEUTRAL if roll < unhappy + 0.08 else _SATISFIED
        )
    return {
        "agency_code": agency,
        "code": f"{agency}-{days[day]:%y%m%d}-{index:07d}",
        "unit_code": unit,
        "procedure_code": proc["code"],
        "received_at": received,
        "due_at": due,
        "completed_at": completed,
        "status": status,
        "channel": channel,
        "submitted_online": online,
        "paid_online": paid,
        "digitised": r() < q.digitised,
        "electronic_result": electronic,
        "reused_data": r() < q.reuse,
        "synced": r() < q.synced,
        "supplement_count": supplements,
        "rating": rating,
    }


def world_of(runtime: Runtime, session: Session, *, as_of: datetime | None = None) -> DemoWorld:
    """The demo world of the seeded profile: its agencies, procedures and communes."""
    from cityops.egov import flows

    as_of = as_of or runtime.clock.now()
    today = local_date(runtime.clock, runtime.settings.timezone)
    agencies = list(service.get_agencies(session=session, on=today).values())
    places = service.get_places(session=session, on=today)
    calendar = flows.calendar_of(runtime)
    local = as_of.astimezone(calendar.zone)
    # The current year so far; early in January, the year before as well.
    year = local.year if local.timetuple().tm_yday > 60 else local.year - 1
    start = local_midnight(date(year, 1, 1), calendar.zone)
    procedures = [
        {c.name: getattr(p, c.name) for c in p.__table__.columns}
        for p in service.get_procedure_map(session=session).values()
    ]
    return DemoWorld(
        agencies=sorted(agencies, key=lambda a: a.code),
        procedures=sorted(procedures, key=lambda p: str(p["code"])),
        communes=sorted(c for c, p in places.items() if p.level == "commune"),
        province=next(c for c, p in places.items() if p.level == "province"),
        calendar=calendar,
        start=start,
        as_of=as_of,
    )


def insert(
    *,
    session: Session,
    rows: Iterable[dict[str, Any]],
    import_id: int | None,
    now: datetime,
    batch: int = INSERT_BATCH,
) -> int:
    """Bulk-insert generated dossiers (multi-row statements); return how many."""
    done = 0
    chunk: list[dict[str, Any]] = []
    extra = {"import_id": import_id, "created_at": now, "updated_at": now}
    for row in rows:
        chunk.append({**row, **extra})
        if len(chunk) >= batch:
            done += service.create_many(session=session, rows=chunk)
            chunk = []
    done += service.create_many(session=session, rows=chunk)
    return done


def seed_demo(
    *, runtime: Runtime, session: Session, size: int | None = None, seed: int = DEMO_SEED
) -> dict[str, int]:
    """Seed the demo dossiers once (a second run, or any dossier already stored, adds none).

    The size is `CITYOPS_EGOV_DEMO_DOSSIERS`: 30,000 by default, none in production (a real
    province must not find invented dossiers in its scorecard).
    """
    if size is None:
        size = runtime.settings.egov_demo_dossiers
    if size is None:
        size = 0 if runtime.settings.env is Environment.PRODUCTION else DEMO_SIZE
    if size <= 0 or service.count(session=session) > 0:
        return {"dossiers": 0}
    world = world_of(runtime, session)
    digest = hashlib.sha256(f"demo:{seed}:{size}:{world.as_of.date()}".encode()).hexdigest()
    run = service.create_import(
        session=session,
        file_hash=digest,
        file_name=f"demo-{seed}-{size}",
        fmt=ImportFormat.DEMO.value,
        source="seed",
        actor="system:seed",
        clock=runtime.clock,
    )
    now = runtime.clock.now()
    stored = insert(
        session=session, rows=generate(world, size=size, seed=seed), import_id=run.id, now=now
    )
    run.rows = run.imported = stored
    run.batches_done = 1
    run.status, run.finished_at = ImportStatus.DONE.value, now
    session.flush()
    return {"dossiers": stored}


# --- files for the benchmarks -------------------------------------------------------------------

FILE_COLUMNS = (
    "agency",
    "code",
    "unit_code",
    "procedure",
    "received_at",
    "due_at",
    "completed_at",
    "status",
    "channel",
    "submitted_online",
    "paid_online",
    "digitised",
    "electronic_result",
    "reused_data",
    "synced",
    "supplement_count",
    "rating",
)


def _file_values(row: dict[str, Any]) -> list[Any]:
    renamed = {**row, "agency": row["agency_code"], "procedure": row["procedure_code"]}
    out: list[Any] = []
    for column in FILE_COLUMNS:
        value = renamed.get(column)
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        out.append(value)
    return out


def write_file(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write generated dossiers as CSV, XLSX or JSON (by the file's suffix); return how many."""
    count = 0
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(FILE_COLUMNS)
            for row in rows:
                writer.writerow(["" if v is None else v for v in _file_values(row)])
                count += 1
    elif suffix == ".xlsx":
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("dossiers")
        sheet.append(list(FILE_COLUMNS))
        for row in rows:
            sheet.append(_file_values(row))
            count += 1
        book.save(path)
    elif suffix == ".json":
        items = [dict(zip(FILE_COLUMNS, _file_values(row), strict=True)) for row in rows]
        path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
        count = len(items)
    else:
        raise ValueError(f"write CSV, XLSX or JSON, not {suffix or 'no suffix'}")
    return count
