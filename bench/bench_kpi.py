"""Benchmark: every KPI for the 95 communes/wards (plus areas and province) for one month
(target: ≤ 10 s).

Seeds the Đồng Nai profile (catalogue, population, 30,000 demo dossiers), back-fills one month
of simulated sensor history for the demo assets (`simulate.flows.backfill`, not timed), then
times in-process:
  compute:          kpi.flows.compute for the month, all indicators, values stored (no publish)
  compute+publish:  the same, also upserting the KeyPerformanceIndicator entities
  evaluation:       the pilot evaluation, 3 months before / 3 after, all indicators
  ranking:          one indicator's ranking of the 95 units
SQLite in a temporary folder by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set.
Run: .venv/bin/python bench/bench_kpi.py [--step-hours N] [--repeat N]
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_kpi.py
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from sqlalchemy import func, select

from bench_context_common import database_url
from cityops.app import build_runtime
from cityops.context.models import History
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.kpi import flows, service
from cityops.kpi.enums import Frequency
from cityops.seed import seed
from cityops.simulate import catalog
from cityops.simulate import flows as simulate_flows


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[list[tuple[float, float]], Any]:
    """Run `fn` `repeat` times; return (wall, CPU of this process) seconds per run."""
    times: list[tuple[float, float]] = []
    result: Any = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times, result


def _report(label: str, times: list[tuple[float, float]], note: str = "") -> None:
    walls = [w for w, _ in times]
    cpus = [c for _, c in times]
    print(
        f"  {label:<22} wall median {statistics.median(walls):7.3f} s (min {min(walls):.3f})"
        f"   CPU median {statistics.median(cpus):7.3f} s   ({len(times)} runs) {note}"
    )


def main() -> None:
    """Load, then time the KPI computation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step-hours", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=database_url(Path(folder)),
            data_dir=Path(folder),
            secret_key=secrets.token_urlsafe(48),
            background_jobs=False,
            log_level="WARNING",
        )
        runtime = build_runtime(settings)
        migrate.upgrade(runtime.engine)
        seed(runtime)
        today = runtime.clock.now().date()
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        assets = catalog.build_catalog()
        start = time.perf_counter()
        simulate_flows.backfill(
            runtime=runtime,
            assets=assets,
            seed=2026,
            start=datetime.combine(first, datetime.min.time(), tzinfo=UTC),
            end=datetime.combine(after, datetime.min.time(), tzinfo=UTC),
            step=timedelta(hours=args.step_hours),
        )
        with runtime.session_factory() as session:
            history = session.scalar(select(func.count()).select_from(History)) or 0
            indicators = len(service.get_all(session=session, active=True)[0])
        print(
            f"database: {runtime.engine.dialect.name}; {len(assets)} assets, {history:,} history "
            f"rows for {first:%Y-%m} (loaded in {time.perf_counter() - start:.0f} s); "
            f"{indicators} indicators"
        )

        def compute(publish: bool) -> Callable[[], Any]:
            def run() -> Any:
                with unit_of_work(runtime.session_factory) as session:
                    session.info["actor"] = SYSTEM_PRINCIPAL
                    return flows.compute(
                        runtime=runtime,
                        session=session,
                        kind=Frequency.MONTH,
                        day=first,
                        publish=publish,
                    )

            return run

        times, result = _timed(compute(False), args.repeat)
        _report("compute", times, f"{result['values']:,} values")
        times, result = _timed(compute(True), args.repeat)
        _report("compute+publish", times, f"{result['published']:,} entities")

        def evaluate() -> Any:
            with runtime.session_factory() as session:
                found, _ = service.get_all(session=session, active=True)
                return flows.evaluate_pilot(
                    runtime=runtime,
                    session=session,
                    indicators=found,
                    go_live=first,
                    kind=Frequency.MONTH,
                    before=3,
                    after=3,
                )

        times, _ = _timed(evaluate, args.repeat)
        _report("evaluation", times)

        def ranking() -> Any:
            with runtime.session_factory() as session:
                indicator = service.get_or_raise(session=session, code="N1")
                return flows.rank(
                    session=session, indicator=indicator, kind=Frequency.MONTH, first=first
                )

        times, rows = _timed(ranking, args.repeat)
        _report("ranking", times, f"{len(rows)} units ranked")


if __name__ == "__main__":
    main()
