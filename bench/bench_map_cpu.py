"""Benchmark: CPU time of the operations map's sensor layer at province size, in-process.

A migrated, seeded SQLite database (PostgreSQL when CITYOPS_TEST_DATABASE_URL is set), ENTITIES
`AirQualityObserved` stations batch-upserted over NGSI-LD; then `GET /api/v1/map/sensors`
through the whole ASGI stack (TestClient, no gzip: compression is the middleware's, timed
apart in bench_map.py) measured in CPU time of this process (`time.process_time`, all
threads: the figure does not depend on what else the machine runs), REPEAT times each:

- cold: the layer built from the database (the in-process cache emptied before each request);
- warm: the cached body answered again (200);
- changed: the first request after one sensor's value changed over NGSI-LD in this process
  (the change applied to the kept layer in place: body and ETag made again; the PATCH itself
  is not timed), identity and gzip;
- revalidation: `If-None-Match` with the current ETag (304), from the cache;
- floor: `GET /healthz` (no database, no authentication): what the stack and the test client
  cost around any route.

Run: PYTHONPATH=src:bench .venv/bin/python bench/bench_map_cpu.py [ENTITIES] [REPEAT]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from bench_map import _station
from cityops.app import create_app
from harness import percentile

ENTITIES = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
REPEAT = int(sys.argv[2]) if len(sys.argv) > 2 else 20
SENSORS = "/api/v1/map/sensors"
# The layer's in-process cache (cityops.web.mapdata.CACHE_KEY), emptied for a cold request.
CACHE_KEY = "web.map_sensors"


def _cpu(label: str, request: Callable[[], int], before: Callable[[], None], status: int) -> None:
    times = []
    for _ in range(REPEAT):
        before()
        t = time.process_time()
        got = request()
        times.append((time.process_time() - t) * 1000)
        assert got == status, got
    print(
        f"{label}: CPU median {statistics.median(times):.1f} ms, "
        f"p95 {percentile(times, 95):.1f} ms ({REPEAT} requests)"
    )


def main() -> None:
    """Prepare the data, then measure the layer's CPU time cold, warm and on revalidation."""
    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        runtime.engine.dispose()
        app = create_app(settings)
        caches = app.state.runtime.caches
        headers = {"X-API-Key": key, "Accept-Encoding": "identity"}
        with TestClient(app) as client:
            for first in range(0, ENTITIES, 500):
                batch = [_station(i) for i in range(first, min(first + 500, ENTITIES))]
                r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=batch, headers=headers)
                assert r.status_code in (201, 204), r.text
            first_answer = client.get(SENSORS, headers=headers)
            assert first_answer.json()["count"] == ENTITIES, first_answer.json()["count"]
            etag = first_answer.headers["etag"]
            print(f"set-up: {ENTITIES:,} stations; {len(first_answer.content) / 1e3:,.0f} KB")

            def get() -> int:
                return client.get(SENSORS, headers=headers).status_code

            def revalidate() -> int:
                return client.get(SENSORS, headers={**headers, "If-None-Match": etag}).status_code

            def cold() -> None:
                # Emptied, not removed: it stays subscribed to the bus (absent before the cache).
                if CACHE_KEY in caches:
                    caches[CACHE_KEY].clear()

            _cpu("cold 200", get, cold, 200)
            _cpu("cold 304", revalidate, cold, 304)
            _cpu("warm 200", get, lambda: None, 200)
            _cpu("warm 304", revalidate, lambda: None, 304)
            changes = iter(range(1_000_000))

            def change() -> None:
                n = next(changes)
                at = f"2026-11-20T02:{n // 60 % 60:02d}:{n % 60:02d}Z"
                r = client.patch(
                    f"/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:map-{n % ENTITIES}/attrs",
                    json={
                        "airQualityIndex": {"type": "Property", "value": n % 300, "observedAt": at}
                    },
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert r.status_code == 204, r.text

            def get_gzip() -> int:
                gz = {**headers, "Accept-Encoding": "gzip"}
                return client.get(SENSORS, headers=gz).status_code

            _cpu("changed 200", get, change, 200)
            _cpu("changed 200 gzip", get_gzip, change, 200)
            _cpu("floor /healthz", lambda: client.get("/healthz").status_code, lambda: None, 200)


if __name__ == "__main__":
    main()
