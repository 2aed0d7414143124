"""Benchmark: NGSI-LD batch upsert over HTTP (uvicorn) vs the raw bulk insert of the same rows.

(a) 100 entities x 5 attributes per call, observations stored per second, beside executemany
(SQLite) or COPY (PostgreSQL) of the same rows into ngsild_history.
(b) PATCH /entities/{id}/attrs/{attr} from concurrent clients, updates per second.
Run: .venv/bin/python bench/bench_context_ingest.py
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_context_ingest.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from cityops.app import create_app
from harness import free_port

CALLS = 60
ENTITIES = 100
CLIENTS = 4
PATCHES = 3000


def _batch(call: int) -> list[dict[str, object]]:
    at = f"2026-11-20T{call // 60:02d}:{call % 60:02d}:00Z"
    out = []
    for i in range(ENTITIES):
        lon, lat = 106.80 + (i % 10) * 0.01, 10.90 + (i // 10) * 0.01
        entity: dict[str, object] = {
            "id": f"urn:ngsi-ld:AirQualityObserved:bench-{i}",
            "type": "AirQualityObserved",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [lon, lat]},
            },
        }
        for n, name in enumerate(("pm25", "pm10", "no2", "o3")):
            entity[name] = {
                "type": "Property",
                "value": call + i + n * 0.5,
                "unitCode": "GQ",
                "observedAt": at,
            }
        out.append(entity)
    return out


def main() -> None:
    """Print HTTP batch-upsert and PATCH rates, and the raw bulk-insert rate."""
    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        app = create_app(settings)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}/ngsi-ld/v1"
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        bodies = [_batch(call) for call in range(CALLS + 1)]
        with httpx.Client(headers=headers, timeout=60) as client:
            assert client.post(f"{base}/entityOperations/upsert", json=bodies[0]).status_code == 204

        def post(index: int) -> None:
            with httpx.Client(headers=headers, timeout=60) as client:
                for call in range(1 + index, CALLS + 1, CLIENTS):
                    r = client.post(f"{base}/entityOperations/upsert", json=bodies[call])
                    assert r.status_code == 204, r.text

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(post, range(CLIENTS)))
        elapsed = time.perf_counter() - started
        observations = CALLS * ENTITIES * 5
        http_rate = observations / elapsed
        print(
            f"[{runtime.engine.dialect.name}] (a) HTTP batch upsert: {CALLS} calls x "
            f"{ENTITIES} entities x 5 attrs, {CLIENTS} clients: {http_rate:,.0f} observations/s "
            f"({elapsed / CALLS * CLIENTS * 1000:.0f} ms per call)"
        )

        raw_rate = _raw_insert_rate(runtime, observations)
        print(
            f"[{runtime.engine.dialect.name}] (a) raw bulk insert into ngsild_history: "
            f"{raw_rate:,.0f} rows/s -> HTTP pipeline at {http_rate / raw_rate:.0%} of raw"
        )

        def patch(index: int) -> int:
            done = 0
            with httpx.Client(headers=headers, timeout=60) as client:
                for n in range(index, PATCHES, 8):
                    url = f"{base}/entities/urn:ngsi-ld:AirQualityObserved:bench-{n % ENTITIES}"
                    r = client.patch(f"{url}/attrs/pm25", json={"value": n})
                    assert r.status_code == 204, r.text
                    done += 1
            return done

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            total = sum(pool.map(patch, range(8)))
        elapsed = time.perf_counter() - started
        print(
            f"[{runtime.engine.dialect.name}] (b) PATCH attrs/pm25, 8 clients: "
            f"{total / elapsed:,.0f} updates/s ({elapsed / total * 8 * 1000:.1f} ms each)"
        )
        server.should_exit = True
        thread.join(10)
        runtime.engine.dispose()


def _raw_insert_rate(runtime: object, count: int) -> float:
    engine = runtime.engine  # type: ignore[attr-defined]
    rows = [
        (
            1_000_000 + i % 100,
            "https://uri.etsi.org/ngsi-ld/default-context/pm25",
            "",
            1_795_000_000_000 + i,
            float(i),
            str(float(i)),
            "GQ",
        )
        for i in range(count)
    ]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        if engine.dialect.name == "postgresql":
            with cursor.copy(
                "COPY ngsild_history (entity_pk, name, dataset_id, observed_ms, value_num, value, "
                "unit_code) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(
                "INSERT INTO ngsild_history (entity_pk, name, dataset_id, observed_ms, value_num, "
                "value, unit_code) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        raw.commit()
        return count / (time.perf_counter() - started)
    finally:
        raw.close()


if __name__ == "__main__":
    main()
