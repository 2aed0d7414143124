"""Benchmark: NGSI-LD reads over HTTP against a real uvicorn server, with 100,000 entities.

Loads 100,000 AirQualityObserved-like entities spread over the province (10.52-12.30 N,
106.41-107.58 E) through context.flows.write_entities in batches, and 100,000 pm25 history
instances of one station, then times over HTTP:
  q:        GET /entities?type=AirQualityObserved&q=pm25>A;no2<B&limit=100   (target p95 <= 50 ms)
  geo:      GET /entities?georel=near;maxDistance==2000 around varied points (target p95 <= 50 ms)
  temporal: aggrMethods=avg,min,max&aggrPeriodDuration=PT1H over a window    (target <= 100 ms)
            lastN=100                                                        (target <= 10 ms)
SQLite in a temporary folder by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set.
Run: .venv/bin/python bench/bench_context_query.py
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_context_query.py
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from cityops.context import flows
from cityops.context import service as context_service
from cityops.context.normalize import ms_of
from cityops.core.db import unit_of_work
from harness import free_port, percentile, wait_ready

ENTITIES = 100_000
BATCH = 1000
HISTORY = 100_000
REQUESTS = 300
WARMUP = 20
SOUTH, NORTH, WEST, EAST = 10.52, 12.30, 106.41, 107.58
STATION = "urn:ngsi-ld:AirQualityObserved:bench-000000"
START = datetime(2026, 1, 1, tzinfo=UTC)


def _entity(index: int, rng: random.Random) -> dict[str, Any]:
    at = "2026-11-20T03:00:00Z"
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:bench-{index:06d}",
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {
                "type": "Point",
                "coordinates": [
                    round(rng.uniform(WEST, EAST), 6),
                    round(rng.uniform(SOUTH, NORTH), 6),
                ],
            },
        },
        "pm25": {"type": "Property", "value": round(rng.uniform(0, 120), 1), "observedAt": at},
        "pm10": {"type": "Property", "value": round(rng.uniform(0, 200), 1), "observedAt": at},
        "no2": {"type": "Property", "value": round(rng.uniform(0, 80), 1), "observedAt": at},
        "temperature": {"type": "Property", "value": round(rng.uniform(22, 38), 1)},
        # Required by the AirQualityObserved data model the store validates against.
        "dateObserved": {"type": "Property", "value": at},
    }


def _load(runtime: Any) -> tuple[float, float]:
    rng = random.Random(2026)
    started = time.perf_counter()
    for first in range(0, ENTITIES, BATCH):
        batch = [_entity(i, rng) for i in range(first, min(first + BATCH, ENTITIES))]
        with unit_of_work(runtime.session_factory) as session:
            outcome = flows.write_entities(
                runtime=runtime, session=session, tenant="default", entities=batch, mode="create"
            )
            assert not outcome.errors, outcome.errors[:3]
    entities_s = time.perf_counter() - started
    started = time.perf_counter()
    with unit_of_work(runtime.session_factory) as session:
        station = context_service.get_entity(session=session, tenant_id=1, entity_id=STATION)
        assert station is not None
        name = flows.default_context(runtime).expand("pm25")
        start_ms = ms_of(START)
        # One instance a minute for about 69 days.
        rows = [
            {
                "entity_pk": station.pk,
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
    return entities_s, time.perf_counter() - started


def _time(
    client: httpx.Client, label: str, target: float, count: int, make: Callable[[int], Any]
) -> None:
    timings: list[float] = []
    sizes: list[int] = []
    for i in range(WARMUP + count):
        path, params = make(i)
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{label}: {response.status_code} {response.text[:300]}")
        if i >= WARMUP:
            timings.append(elapsed)
            body = response.json()
            sizes.append(len(body) if isinstance(body, list) else 1)
    p95 = percentile(timings, 95)
    print(
        f"  {label:<34} p50 {percentile(timings, 50):7.2f}  p95 {p95:7.2f}  "
        f"p99 {percentile(timings, 99):7.2f}  mean {statistics.fmean(timings):7.2f} ms  "
        f"(target p95 <= {target:.0f} ms: {'met' if p95 <= target else 'MISSED'}; "
        f"{statistics.fmean(sizes):.0f} results on average)"
    )


def main() -> None:
    """Load the data, start uvicorn and print read latencies."""
    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        dialect = runtime.engine.dialect.name
        entities_s, history_s = _load(runtime)
        runtime.engine.dispose()
        print(
            f"[{dialect}] loaded {ENTITIES:,} entities in {entities_s:.1f} s "
            f"({ENTITIES / entities_s:,.0f}/s) and {HISTORY:,} history instances in "
            f"{history_s:.1f} s"
        )
        measure(settings.database_url, settings.data_dir, settings.secret_key, key, dialect)


def measure(database_url: str, data_dir: Path, secret_key: str, key: str, dialect: str) -> None:
    """Start uvicorn on a loaded database and print the latency of each read."""
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DATABASE_URL": database_url,
        "CITYOPS_DATA_DIR": str(data_dir),
        "CITYOPS_SECRET_KEY": secret_key,
        "CITYOPS_LOG_LEVEL": "WARNING",
        "CITYOPS_BACKGROUND_JOBS": "false",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "cityops.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(75)
    entities = "/ngsi-ld/v1/entities"
    try:
        wait_ready(base, server, timeout=300)
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": key}) as client:
            print(f"[{dialect}] over HTTP, {REQUESTS} requests each after {WARMUP} warm-up")

            def q(i: int) -> Any:
                pm25, no2 = rng.randint(20, 110), rng.randint(5, 70)
                return entities, {
                    "type": "AirQualityObserved",
                    "q": f"pm25>{pm25};no2<{no2}",
                    "limit": "100",
                }

            _time(client, "q=pm25>A;no2<B limit=100", 50, REQUESTS, q)

            def near(i: int) -> Any:
                point = f"[{rng.uniform(WEST, EAST):.5f},{rng.uniform(SOUTH, NORTH):.5f}]"
                return entities, {
                    "type": "AirQualityObserved",
                    "georel": "near;maxDistance==2000",
                    "geometry": "Point",
                    "coordinates": point,
                    "limit": "100",
                }

            _time(client, "georel=near;maxDistance==2000", 50, REQUESTS, near)

            temporal = f"/ngsi-ld/v1/temporal/entities/{STATION}"

            def aggregated(i: int) -> Any:
                begin = START + timedelta(hours=rng.randint(0, 24 * 60))
                return temporal, {
                    "attrs": "pm25",
                    "aggrMethods": "avg,min,max",
                    "aggrPeriodDuration": "PT1H",
                    "timerel": "between",
                    "timeAt": begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "endTimeAt": (begin + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }

            _time(client, "temporal avg,min,max PT1H, 7 days", 100, 100, aggregated)

            def whole(i: int) -> Any:
                return temporal, {
                    "attrs": "pm25",
                    "aggrMethods": "avg,min,max",
                    "aggrPeriodDuration": "PT1H",
                    "timerel": "between",
                    "timeAt": "2026-01-01T00:00:00Z",
                    "endTimeAt": "2026-04-01T00:00:00Z",
                }

            _time(client, "temporal avg,min,max PT1H, all 100k", 100, 50, whole)

            def last(i: int) -> Any:
                return temporal, {"attrs": "pm25", "lastN": "100"}

            _time(client, "temporal lastN=100", 10, 100, last)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
