"""Benchmark: CPU time per single-attribute PATCH in process (steady under a shared machine's load).

Wall-clock rates swing with whatever else the two cores run; the process CPU time a request
costs does not much. Prints CPU ms per request for a cheap authenticated GET (the floor) and for
PATCH /entities/{id}/attrs/pm25, with the FastAPI TestClient (no sockets), on SQLite.
Run: .venv/bin/python bench/bench_context_patch_cpu.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from bench_context_ingest import ENTITIES, _batch
from cityops.app import create_app

REQUESTS = 400


def main() -> None:
    """Print CPU milliseconds per request for the auth floor and for PATCH."""
    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        app = create_app(settings)
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        with TestClient(app, headers=headers) as client:
            base = "/ngsi-ld/v1"
            assert client.post(f"{base}/entityOperations/upsert", json=_batch(0)).status_code == 204
            calls = {
                "GET /jsonldContexts (auth floor)": lambda n: client.get(f"{base}/jsonldContexts"),
                "PATCH attrs/pm25": lambda n: client.patch(
                    f"{base}/entities/urn:ngsi-ld:AirQualityObserved:bench-{n % ENTITIES}"
                    "/attrs/pm25",
                    json={"value": n},
                ),
            }
            for label, call in calls.items():
                for n in range(30):
                    call(n)
                cpu, wall = time.process_time(), time.perf_counter()
                for n in range(REQUESTS):
                    response = call(n)
                    assert response.status_code in (200, 204), response.text
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                print(
                    f"[sqlite] {label}: {cpu / REQUESTS * 1000:.2f} ms CPU, "
                    f"{wall / REQUESTS * 1000:.2f} ms wall each"
                )
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
