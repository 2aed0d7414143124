"""Benchmark: the operations map's compact layers at province size.

A migrated, seeded database (SQLite by default; PostgreSQL when CITYOPS_TEST_DATABASE_URL is
set), ENTITIES `AirQualityObserved` stations batch-upserted over NGSI-LD and INCIDENTS open
incidents created over the API; then, through the whole ASGI stack (TestClient, gzip on):
`GET /api/v1/map/sensors`, `/api/v1/map/incidents` and `/api/v1/units/geometry` timed over
REPEAT requests (median, p95), with their raw and gzipped sizes, and the 304 answer to
`If-None-Match`.

Run: .venv/bin/python bench/bench_map.py [ENTITIES] [INCIDENTS] [REPEAT]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from cityops.app import create_app
from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from harness import percentile

ENTITIES = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
INCIDENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
REPEAT = int(sys.argv[3]) if len(sys.argv) > 3 else 20
PASSWORD = "Bench-Dong-Nai-2026!"  # noqa: S105 - a throwaway benchmark user
AT = "2026-11-20T03:00:00Z"
# Communes and wards with seeded centroids, for incidents (as bench_web.py).
UNITS = ("26041", "26017", "26080", "26068")


def _station(i: int) -> dict[str, Any]:
    lon = 106.75 + (i % 100) * 0.008
    lat = 10.55 + (i // 100) * 0.009
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:map-{i}",
        "type": "AirQualityObserved",
        "name": {"type": "Property", "value": f"Trạm {i}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "dateObserved": {"type": "Property", "value": AT},
        "airQualityIndex": {"type": "Property", "value": 20 + i % 200, "observedAt": AT},
    }


def _time(client: TestClient, path: str, headers: dict[str, str]) -> None:
    times = []
    response = None
    for _ in range(REPEAT):
        t = time.perf_counter()
        response = client.get(path, headers={**headers, "Accept-Encoding": "gzip"})
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, response.text
    assert response is not None
    # httpx decodes gzip: the wire size is the Content-Length of the compressed answer.
    wire = int(response.headers.get("content-length", len(response.content)))
    t = time.perf_counter()
    again = client.get(path, headers={**headers, "If-None-Match": response.headers["etag"]})
    revalidate = (time.perf_counter() - t) * 1000
    print(
        f"{path}: median {statistics.median(times):.0f} ms, p95 {percentile(times, 95):.0f} ms "
        f"({REPEAT} requests); {len(response.content) / 1e3:,.0f} KB raw, "
        f"{wire / 1e3:,.0f} KB gzipped; If-None-Match → {again.status_code} in "
        f"{revalidate:.0f} ms"
    )


def main() -> None:
    """Prepare the data, then time the layers."""
    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        runtime.engine.dispose()
        app = create_app(settings)
        runtime = app.state.runtime
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            auth_service.create_user(
                session=session,
                user_in=UserCreate(
                    username="bench-operator", password=PASSWORD, full_name="Bench", role="admin"
                ),
                clock=runtime.clock,
                settings=runtime.settings,
            )
        with TestClient(app) as client:
            token = client.post(
                "/api/v1/auth/token", data={"username": "bench-operator", "password": PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            for first in range(0, ENTITIES, 500):
                batch = [_station(i) for i in range(first, min(first + 500, ENTITIES))]
                r = client.post(
                    "/ngsi-ld/v1/entityOperations/upsert", json=batch, headers={"X-API-Key": key}
                )
                assert r.status_code in (201, 204), r.text
            for n in range(INCIDENTS):
                r = client.post(
                    "/api/v1/incidents",
                    json={
                        "title": f"Sự cố thử {n}",
                        "category_code": "other",
                        "severity": ("low", "medium", "high", "critical")[n % 4],
                        "unit_code": UNITS[n % len(UNITS)],
                        "lat": 10.9 + (n % 40) * 0.01,
                        "lon": 106.8 + (n // 40) * 0.01,
                    },
                    headers=headers,
                )
                assert r.status_code == 201, r.text
            print(f"set-up: {ENTITIES:,} stations, {INCIDENTS:,} open incidents")
            layer = client.get("/api/v1/map/sensors", headers=headers).json()
            assert layer["count"] == ENTITIES, layer["count"]
            _time(client, "/api/v1/map/sensors", headers)
            _time(client, "/api/v1/map/incidents", headers)
            _time(client, "/api/v1/units/geometry?level=commune", headers)


if __name__ == "__main__":
    main()
