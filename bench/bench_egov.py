"""Benchmark: the Decision 766 indicators over 1,000,000 dossiers (target: ≤ 10 s).

Seeds the Đồng Nai profile (with its 30,000 demo dossiers), bulk-inserts 1,000,000 more from the
demo generator (not timed), then times in-process:
  indicators: flows.compute_indicators for the year, per agency and per unit (and one month)
  scorecard:  the same computation behind GET /egov/scorecard/{code}
  due job:    one run of the due-date job over every open dossier (first run: all announced)
  lists:      one page of an agency's dossiers, of the due list
  import:     `import_file` of a CSV of 100,000 generated dossiers (rows per second)
SQLite in a temporary folder by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set.
Run: .venv/bin/python bench/bench_egov.py [--dossiers N] [--import-rows N] [--repeat N]
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_egov.py
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from sqlalchemy import text

from bench_context_common import database_url
from cityops.app import build_runtime
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import GLOBAL_SCOPE, SYSTEM_PRINCIPAL
from cityops.egov import demo, flows, imports, service
from cityops.egov.enums import GroupBy
from cityops.egov.periods import parse_period
from cityops.seed import seed

CHUNK = 20_000


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[list[tuple[float, float]], Any]:
    """Run `fn` `repeat` times; return (wall, CPU of this process) seconds per run."""
    times: list[tuple[float, float]] = []
    result: Any = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times, result


def _report(label: str, times: list[tuple[float, float]]) -> None:
    walls = [w for w, _ in times]
    cpus = [c for _, c in times]
    # On SQLite the query runs in this process, so its CPU time is the database's work too:
    # on a shared, loaded machine it says more than the wall time.
    print(
        f"  {label:<38} wall median {statistics.median(walls):7.3f} s (min {min(walls):.3f})"
        f"   CPU median {statistics.median(cpus):7.3f} s   ({len(times)} runs)"
    )


def _load(runtime: Runtime, size: int) -> None:
    with unit_of_work(runtime.session_factory) as session:
        world = demo.world_of(runtime, session)
    rows = demo.generate(world, size=size, seed=20261)
    start = time.perf_counter()
    done = 0
    chunk: list[dict[str, Any]] = []
    now = runtime.clock.now()

    def flush() -> None:
        nonlocal done
        with unit_of_work(runtime.session_factory) as session:
            done += demo.insert(session=session, rows=chunk, import_id=None, now=now)

    for row in rows:
        # Codes of a second generator run must not collide with the seeded demo's.
        row["code"] = "B" + row["code"]
        chunk.append(row)
        if len(chunk) >= CHUNK:
            flush()
            chunk = []
            if done % 200_000 == 0:
                print(f"  loaded {done:,} ({time.perf_counter() - start:.0f} s)", flush=True)
    flush()
    print(f"  loaded {done:,} dossiers in {time.perf_counter() - start:.0f} s (not timed below)")


def main() -> None:
    """Load the dossiers and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--reuse", metavar="URL", help="A database loaded by an earlier run: time only."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-egov-") as folder:
        settings = Settings(
            database_url=args.reuse or database_url(Path(folder)),
            data_dir=Path(folder),
            secret_key=secrets.token_urlsafe(48),
            background_jobs=False,
            log_level="WARNING",
        )
        runtime = build_runtime(settings)
        backend = runtime.engine.dialect.name
        print(f"egov benchmark on {backend}; load average {os.getloadavg()[0]:.1f}")
        if not args.reuse:
            migrate.upgrade(runtime.engine)
            seed(runtime)
            _load(runtime, args.dossiers)
        with runtime.engine.connect() as conn:
            # Planner statistics, as a database in service has them (PostgreSQL's autovacuum
            # analyses by itself; an SQLite deployment runs `PRAGMA optimize`).
            conn.execute(text("ANALYZE"))
            conn.commit()
            total = conn.execute(text("SELECT count(*) FROM egov_dossier")).scalar_one()
        print(f"  dossiers stored: {total:,}")
        year = parse_period("2026", settings.timezone)
        month = parse_period("2026-10", settings.timezone)
        assert year is not None
        assert month is not None

        def indicators(period: Any, group_by: GroupBy) -> Callable[[], Any]:
            def run() -> Any:
                with unit_of_work(runtime.session_factory) as session:
                    return flows.compute_indicators(
                        runtime=runtime, session=session, period=period, group_by=group_by
                    )

            return run

        print("766 indicators (target ≤ 10 s for a year over 1,000,000 dossiers)")
        times, table = _timed(indicators(year, GroupBy.AGENCY), args.repeat)
        _report(f"year, {len(table.items)} agencies", times)
        times, table = _timed(indicators(year, GroupBy.UNIT), args.repeat)
        _report(f"year, {len(table.items)} units", times)
        times, table = _timed(indicators(month, GroupBy.AGENCY), args.repeat)
        _report(f"month 2026-10, {len(table.items)} agencies", times)
        handled = sum(i.counts.handled for i in table.items)
        print(f"  (2026-10 handled dossiers: {handled:,})")

        print("lists")

        def agency_page() -> Any:
            with unit_of_work(runtime.session_factory) as session:
                return service.get_all(
                    session=session,
                    scope=GLOBAL_SCOPE,
                    now=runtime.clock.now(),
                    flt=service.DossierFilter(agency_code="SXD"),
                    limit=100,
                )

        times, (_, count) = _timed(agency_page, args.repeat)
        _report(f"dossiers of SXD, page 1 of {count:,}", times)

        def due_page() -> Any:
            with unit_of_work(runtime.session_factory) as session:
                now = runtime.clock.now()
                return service.get_due(
                    session=session,
                    scope=GLOBAL_SCOPE,
                    now=now,
                    horizon_end=flows.due_horizon(runtime, now),
                    limit=100,
                )

        times, (_, count) = _timed(due_page, args.repeat)
        _report(f"due list, page 1 of {count:,}", times)

        print("due-date job")

        def due_job() -> Any:
            with unit_of_work(runtime.session_factory) as session:
                return flows.announce_due(runtime=runtime, session=session)

        times, counts = _timed(due_job, 1)
        _report(f"first run (announces {sum(counts.values()):,})", times)
        while sum(counts.values()):
            counts = due_job()
        times, counts = _timed(due_job, args.repeat)
        _report("a run with nothing new", times)

        if args.import_rows:
            print("file import")
            with unit_of_work(runtime.session_factory) as session:
                world = demo.world_of(runtime, session)
            path = Path(folder) / "dossiers.csv"
            rows = list(demo.generate(world, size=args.import_rows, seed=99))
            prefix = "F" + secrets.token_hex(3)  # new dossiers, even in a reused database
            for row in rows:
                row["code"] = prefix + row["code"]
            demo.write_file(path, rows)
            start, cpu = time.perf_counter(), time.process_time()
            report = imports.import_file(runtime=runtime, path=path, principal=SYSTEM_PRINCIPAL)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(
                f"  import_file of {report.rows:,} CSV rows: wall {elapsed:.1f} s "
                f"({report.rows / elapsed:,.0f} rows/s), CPU {cpu:.1f} s "
                f"({report.rows / cpu:,.0f} rows/s); imported {report.imported:,}"
            )
            start, cpu = time.perf_counter(), time.process_time()
            again = imports.import_file(runtime=runtime, path=path, principal=SYSTEM_PRINCIPAL)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(
                f"  the same file again: wall {elapsed:.1f} s, CPU {cpu:.1f} s "
                f"(skipped {again.skipped:,}, imported {again.imported})"
            )
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
