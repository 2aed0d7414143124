"""Benchmark: the server's memory with 100,000 entities and 10 million history rows.

Loads 100,000 AirQualityObserved-like entities through context.flows.write_entities and
10,000,000 pm25 history instances (100 a station, ten minutes apart) through the history bulk
path, then starts `uvicorn cityops.app:create_app` as `cityops serve` runs it (background jobs
on: rule engine, health and KPI jobs), and drives it for a while with a mixed load from four
clients: batch upserts (100 entities x 5 attributes), `type + q` queries, `near` geo-queries,
pages of 1,000 entities, counts, discovery (/types, /attributes) and temporal reads (lastN and
hourly aggregation of a station's whole history). Samples the server's resident set (VmRSS)
every half second and prints its start, steady and peak values (VmHWM) against the target of
500 MB, with the database size on disk (SQLite).

SQLite in a temporary folder by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set (the
figure is then the CityOps process alone, not PostgreSQL's own memory).
Run: .venv/bin/python bench/bench_memory.py [--entities N] [--history N] [--seconds S]
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_memory.py
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from cityops.context import flows
from cityops.context import service as context_service
from cityops.core.db import unit_of_work
from harness import free_port, wait_ready

SOUTH, NORTH, WEST, EAST = 10.52, 12.30, 106.41, 107.58
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
STEP_MS = 600_000
TARGET_MB = 500
CHUNK = 50_000


def _entity(index: int, rng: random.Random, at: str) -> dict[str, Any]:
    lon, lat = round(rng.uniform(WEST, EAST), 6), round(rng.uniform(SOUTH, NORTH), 6)
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:mem-{index:06d}",
        "type": "AirQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "pm25": {"type": "Property", "value": round(rng.uniform(0, 120), 1), "observedAt": at},
        "pm10": {"type": "Property", "value": round(rng.uniform(0, 200), 1), "observedAt": at},
        "no2": {"type": "Property", "value": round(rng.uniform(0, 80), 1), "observedAt": at},
        "temperature": {"type": "Property", "value": round(rng.uniform(22, 38), 1)},
        "dateObserved": {"type": "Property", "value": at},
    }


def _load(runtime: Any, entities: int, history: int) -> None:
    rng = random.Random(2026)
    started = time.perf_counter()
    for first in range(0, entities, 1000):
        at = "2026-11-20T03:00:00Z"
        batch = [_entity(i, rng, at) for i in range(first, min(first + 1000, entities))]
        with unit_of_work(runtime.session_factory) as session:
            outcome = flows.write_entities(
                runtime=runtime, session=session, tenant="default", entities=batch, mode="create"
            )
            assert not outcome.errors, outcome.errors[:3]
    print(f"  {entities:,} entities in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    name = flows.default_context(runtime).expand("pm25")
    with runtime.engine.connect() as conn:
        pks = [row[0] for row in conn.execute(text("SELECT pk FROM ngsild_entity ORDER BY pk"))]
    per_entity = max(1, history // len(pks))
    written = 0
    rows: list[dict[str, Any]] = []
    for n, pk in enumerate(pks):
        base = START_MS + (n % 60) * 1000
        for i in range(per_entity):
            value = float((n + i) % 97)
            rows.append(
                {
                    "entity_pk": pk,
                    "name": name,
                    "dataset_id": "",
                    "observed_ms": base + i * STEP_MS,
                    "value_num": value,
                    "value": value,
                    "unit_code": "GQ",
                }
            )
        if len(rows) >= CHUNK or n == len(pks) - 1:
            with unit_of_work(runtime.session_factory) as session:
                context_service.append_history(session=session, rows=rows)
            written += len(rows)
            rows = []
            if written % 1_000_000 < CHUNK:
                elapsed = time.perf_counter() - started
                print(f"  {written:,} history rows in {elapsed:.0f} s", flush=True)
    print(f"  {written:,} history rows in {time.perf_counter() - started:.0f} s", flush=True)


def _rss_kb(pid: int) -> tuple[int, int]:
    """Return (VmRSS, VmHWM) of a process in kB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def _client_loop(base: str, key: str, entities: int, stop: threading.Event, seed: int) -> int:
    rng = random.Random(seed)
    path = "/ngsi-ld/v1/entities"
    done = 0
    with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": key}) as client:
        while not stop.is_set():
            pick = rng.random()
            station = f"urn:ngsi-ld:AirQualityObserved:mem-{rng.randrange(entities):06d}"
            if pick < 0.25:
                first = rng.randrange(0, max(1, entities - 100))
                at = f"2026-11-2{rng.randint(1, 6)}T0{rng.randint(0, 9)}:00:00Z"
                body = [
                    {
                        "id": f"urn:ngsi-ld:AirQualityObserved:mem-{i:06d}",
                        "type": "AirQualityObserved",
                        **{
                            attr: {
                                "type": "Property",
                                "value": rng.uniform(0, 150),
                                "observedAt": at,
                            }
                            for attr in ("pm25", "pm10", "no2", "o3", "co")
                        },
                    }
                    for i in range(first, first + 100)
                ]
                response = client.post("/ngsi-ld/v1/entityOperations/upsert", json=body)
            elif pick < 0.45:
                response = client.get(
                    path,
                    params={"type": "AirQualityObserved", "q": "pm25>80;no2<20", "limit": 100},
                )
            elif pick < 0.60:
                lon, lat = rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)
                response = client.get(
                    path,
                    params={
                        "georel": "near;maxDistance==2000",
                        "geometry": "Point",
                        "coordinates": f"[{lon:.5f},{lat:.5f}]",
                        "type": "AirQualityObserved",
                    },
                )
            elif pick < 0.70:
                response = client.get(
                    path,
                    params={
                        "type": "AirQualityObserved",
                        "limit": 1000,
                        "offset": rng.randrange(0, 90_000),
                        "count": "true",
                    },
                )
            elif pick < 0.75:
                response = client.get(f"/ngsi-ld/v1/{rng.choice(['types', 'attributes'])}")
            elif pick < 0.88:
                response = client.get(
                    f"/ngsi-ld/v1/temporal/entities/{station}",
                    params={"lastN": 100, "attrs": "pm25"},
                )
            else:
                response = client.get(
                    f"/ngsi-ld/v1/temporal/entities/{station}",
                    params={
                        "attrs": "pm25",
                        "aggrMethods": "avg,min,max",
                        "aggrPeriodDuration": "PT1H",
                        "timerel": "after",
                        "timeAt": "2025-12-31T00:00:00Z",
                    },
                )
            if response.status_code >= 400:
                raise RuntimeError(f"{response.status_code} {response.text[:300]}")
            done += 1
    return done


def main() -> None:
    """Load the data, start the server, drive it and print its memory."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        dialect = runtime.engine.dialect.name
        print(f"[{dialect}] loading", flush=True)
        _load(runtime, args.entities, args.history)
        runtime.engine.dispose()
        database = Path(tmp) / "bench.db"
        if database.exists():
            print(f"  SQLite file {database.stat().st_size / 2**20:,.0f} MB")
        port = free_port()
        env = {
            **os.environ,
            "CITYOPS_DATABASE_URL": settings.database_url,
            "CITYOPS_DATA_DIR": tmp,
            "CITYOPS_SECRET_KEY": settings.secret_key,
            "CITYOPS_LOG_LEVEL": "WARNING",
            "CITYOPS_BACKGROUND_JOBS": "true",
        }
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "cityops.app:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--no-access-log",
        ]  # fmt: skip
        server = subprocess.Popen(command, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, server, timeout=300)
            start_rss, _ = _rss_kb(server.pid)
            stop = threading.Event()
            counts: list[int] = []
            errors: list[Exception] = []

            def run(seed: int) -> None:
                try:
                    counts.append(_client_loop(base, key, args.entities, stop, seed))
                except (httpx.HTTPError, RuntimeError) as exc:  # reported below; stops the run
                    errors.append(exc)
                    stop.set()

            threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
            for thread in threads:
                thread.start()
            samples: list[int] = []
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline and not stop.is_set():
                samples.append(_rss_kb(server.pid)[0])
                time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join()
            if errors:
                raise RuntimeError(f"a client failed: {errors[0]}")
            rss, hwm = _rss_kb(server.pid)
            tail = samples[len(samples) // 2 :] or samples
            print(
                f"[{dialect}] server RSS with {args.entities:,} entities and "
                f"{args.history:,} history rows, {sum(counts):,} requests in {args.seconds} s "
                f"from 4 clients:\n"
                f"  at start {start_rss / 1024:,.0f} MB, steady (median of the second half) "
                f"{sorted(tail)[len(tail) // 2] / 1024:,.0f} MB, at end {rss / 1024:,.0f} MB, "
                f"peak (VmHWM) {hwm / 1024:,.0f} MB "
                f"(target <= {TARGET_MB} MB: {'met' if hwm / 1024 <= TARGET_MB else 'MISSED'})"
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
