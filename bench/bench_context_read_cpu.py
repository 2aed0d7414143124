"""Benchmark: CPU time of the context hub's read work, in-process (no HTTP, no server).

CPU time (time.process_time) rather than wall-clock, so the figures hold on a machine shared
with other work. Loads 1,000 AirQualityObserved entities and 100,000 pm25 history instances of
one of them (one a minute, about 69 days), then times:
  page:      one page of 100 entities with their attributes, rendered: ORM objects (before)
             against plain rows (after)
  aggregate: hourly avg/min/max over all 100,000 instances: every aggregate computed (before,
             a distinct count sorts each hour's values) against only those asked for (after)
  calendar:  monthly (P1M) avg/min/max over the same instances (CASE-tree buckets)
Run: .venv/bin/python bench/bench_context_read_cpu.py
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_context_read_cpu.py
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from bench_context_query import START, _entity
from cityops.context import flows
from cityops.context import service as context_service
from cityops.context.normalize import ms_of, render_entity
from cityops.context.schemas import Options, parse_duration
from cityops.core.db import unit_of_work

ENTITIES = 1000
HISTORY = 100_000
ROUNDS = 20


def _cpu(label: str, work: Callable[[], Any], rounds: int = ROUNDS) -> None:
    work()  # warm-up: statement caches, page cache
    timings = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        timings.append((time.process_time() - started) * 1000)
    print(
        f"  {label:<48} median {statistics.median(timings):7.2f}  "
        f"min {min(timings):7.2f} ms CPU ({rounds} rounds)"
    )


def main() -> None:
    """Load the data and print CPU times."""
    with tempfile.TemporaryDirectory() as tmp:
        _, runtime, _ = prepare(Path(tmp))
        dialect = runtime.engine.dialect.name
        rng = random.Random(2026)
        entities = [_entity(i, rng) for i in range(ENTITIES)]
        with unit_of_work(runtime.session_factory) as session:
            outcome = flows.write_entities(
                runtime=runtime, session=session, tenant="default", entities=entities, mode="create"
            )
            assert not outcome.errors, outcome.errors[:3]
        ctx = flows.default_context(runtime)
        name = ctx.expand("pm25")
        start_ms = ms_of(START)
        with unit_of_work(runtime.session_factory) as session:
            station = context_service.get_entity(
                session=session, tenant_id=1, entity_id=entities[0]["id"]
            )
            assert station is not None
            pk = station.pk
            rows = [
                {
                    "entity_pk": pk,
                    "name": name,
                    "dataset_id": "",
                    "observed_ms": start_ms + i * 60_000,
                    "value_num": float(i % 97),
                    "value": float(i % 97),
                    "unit_code": "GQ",
                }
                for i in range(HISTORY)
            ]
            for part in range(0, HISTORY, 10_000):
                context_service.append_history(session=session, rows=rows[part : part + 10_000])
        print(f"[{dialect}] {ENTITIES:,} entities, {HISTORY:,} history instances")
        options = Options()
        session = runtime.session_factory()
        try:
            kind = ctx.expand("AirQualityObserved")
            conditions = [context_service.entity_filter_types([kind])]

            def page_orm() -> None:
                found, _ = context_service.query_entities(
                    session=session, tenant_id=1, conditions=conditions, limit=100, offset=0,
                    count=False,
                )  # fmt: skip
                attrs = context_service.get_attributes(
                    session=session, entity_pks=[r.pk for r in found]
                )
                [render_entity(r, attrs.get(r.pk, []), ctx, options) for r in found]
                session.expunge_all()

            def page_rows() -> None:
                found, _ = context_service.query_entity_rows(
                    session=session, tenant_id=1, conditions=conditions, limit=100, offset=0,
                    count=False,
                )  # fmt: skip
                attrs = context_service.get_attribute_rows(
                    session=session, entity_pks=[r.pk for r in found]
                )
                [render_entity(r, attrs.get(r.pk, []), ctx, options) for r in found]

            _cpu("page of 100 entities, ORM objects (before)", page_orm)
            _cpu("page of 100 entities, plain rows (after)", page_rows)
            end_ms = start_ms + HISTORY * 60_000

            def aggregate(methods: list[str] | None, period: str) -> Callable[[], Any]:
                parsed = parse_duration(period)
                boundaries = None
                if parsed.months:
                    boundaries = [start_ms]
                    while boundaries[-1] < end_ms:
                        boundaries.append(parsed.boundary(start_ms, len(boundaries)))
                return lambda: context_service.aggregate_history(
                    session=session, entity_pks=[pk], names=[name], start_ms=start_ms,
                    end_ms=end_ms, origin_ms=start_ms, period_ms=parsed.ms, methods=methods,
                    boundaries=boundaries,
                )  # fmt: skip

            _cpu("PT1H over 100,000, every aggregate (before)", aggregate(None, "PT1H"), 10)
            _cpu("PT1H over 100,000, avg/min/max only (after)", aggregate(AVG, "PT1H"), 10)
            _cpu("P1M over 100,000, avg/min/max", aggregate(AVG, "P1M"), 10)
        finally:
            session.close()


AVG = ["avg", "min", "max"]

if __name__ == "__main__":
    main()
