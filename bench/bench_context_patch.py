"""Benchmark: single-attribute PATCH over HTTP (uvicorn), beside the cost of the request itself.

Prints, on one uvicorn worker: a cheap authenticated GET (framework + API-key authentication
floor), sequential PATCH latency, and PATCH /entities/{id}/attrs/pm25 updates per second from
8 concurrent clients.
Run: .venv/bin/python bench/bench_context_patch.py
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_context_patch.py
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
from bench_context_ingest import ENTITIES, _batch
from cityops.app import create_app
from harness import free_port

SEQUENTIAL = 300
PATCHES = 3000
CLIENTS = 8


def main() -> None:
    """Print the authenticated-request floor, sequential PATCH latency and concurrent rate."""
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
        name = runtime.engine.dialect.name
        with httpx.Client(headers=headers, timeout=60) as client:
            assert client.post(f"{base}/entityOperations/upsert", json=_batch(0)).status_code == 204
            for label, call in (
                (
                    "GET /jsonldContexts (auth floor)",
                    lambda n: client.get(f"{base}/jsonldContexts"),
                ),
                (
                    "PATCH attrs/pm25",
                    lambda n: client.patch(
                        f"{base}/entities/urn:ngsi-ld:AirQualityObserved:bench-{n % ENTITIES}"
                        "/attrs/pm25",
                        json={"value": n},
                    ),
                ),
            ):
                for n in range(20):
                    call(n)
                started = time.perf_counter()
                for n in range(SEQUENTIAL):
                    response = call(n)
                    assert response.status_code in (200, 204), response.text
                elapsed = time.perf_counter() - started
                print(f"[{name}] sequential {label}: {elapsed / SEQUENTIAL * 1000:.2f} ms each")

        def patch(index: int) -> int:
            done = 0
            with httpx.Client(headers=headers, timeout=60) as client:
                for n in range(index, PATCHES, CLIENTS):
                    url = f"{base}/entities/urn:ngsi-ld:AirQualityObserved:bench-{n % ENTITIES}"
                    response = client.patch(f"{url}/attrs/pm25", json={"value": n})
                    assert response.status_code == 204, response.text
                    done += 1
            return done

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            total = sum(pool.map(patch, range(CLIENTS)))
        elapsed = time.perf_counter() - started
        print(f"[{name}] PATCH attrs/pm25, {CLIENTS} clients: {total / elapsed:,.0f} updates/s")
        server.should_exit = True
        thread.join(10)
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
