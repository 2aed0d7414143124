"""Benchmark the operations screen in a real Chromium (Playwright, /usr/bin/chromium).

Set-up: a migrated, seeded database; 10,000 sensor entities (AirQualityObserved spread over the
province) batch-upserted over NGSI-LD; 1,000 open incidents created over the API. The server
runs in a thread of this process with its background work on (the rule engine's thread).

1. First load of `/` in a fresh browser context (empty cache, logged in): time from navigation
   to the screen being ready (boundaries, every sensor, every open incident and the first feed
   items drawn: `body[data-ready='1']`), and bytes transferred (encoded bodies + headers).
2. An observation PATCHed over NGSI-LD that crosses the "VN_AQI > 150" rule → its alert visible
   in the feed of an open screen (p50 / max over a few observations).

3. With `--trace FILE`: one more first load, recorded as a Chromium performance trace (DevTools
   timeline, network and the V8 sampling profiler; open it in DevTools' Performance panel or
   chrome://tracing) and summarised by bench/trace_summary.py: main-thread time by kind and by
   function, the network waterfall, the page's `ops:*` marks. Tracing slows the page: that
   load is not among the timed ones.

Run: .venv/bin/python bench/bench_web.py [entities] [incidents] [--loads N] [--trace FILE]
     [--no-probes] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from cityops.app import create_app
from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.web import mapdata
from harness import free_port, percentile
from trace_summary import summarise

_parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
_parser.add_argument("entities", nargs="?", type=int, default=10_000)
_parser.add_argument("incidents", nargs="?", type=int, default=1_000)
_parser.add_argument("--loads", type=int, default=3, help="timed first loads (default 3)")
_parser.add_argument("--trace", type=Path, help="record one more first load as a trace here")
_parser.add_argument("--no-probes", action="store_true", help="skip observation → feed")
_parser.add_argument(
    "--cold",
    action="store_true",
    help="drop the server's kept map layers before every load (as after a restart)",
)
ARGS = _parser.parse_args()
ENTITIES = ARGS.entities
INCIDENTS = ARGS.incidents
LOADS = ARGS.loads
PROBES = 0 if ARGS.no_probes else 8
# The trace's categories: DevTools' Performance panel (timeline, network, user timing marks)
# and the V8 sampling profiler (scripting by function).
TRACE_CATEGORIES = [
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "v8.execute",
    "v8",
    "blink.user_timing",
    "loading",
    "latencyInfo",
    "disabled-by-default-v8.cpu_profiler",
    "disabled-by-default-devtools.timeline.frame",
    "toplevel",
    "blink",
    "cppgc",
    "disabled-by-default-v8.gc",
]
PASSWORD = "Bench-Dong-Nai-2026!"  # noqa: S105 - a throwaway benchmark user
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
# Communes and wards with seeded centroids, for incidents.
UNITS = ("26041", "26017", "26080", "26068")


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _station(i: int, aqi: int, at: datetime) -> dict[str, Any]:
    lon = 106.75 + (i % 100) * 0.008
    lat = 10.55 + (i // 100) * 0.009
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:web-{i}",
        "type": "AirQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "dateObserved": {"type": "Property", "value": _iso(at)},
        "airQualityIndex": {"type": "Property", "value": aqi, "observedAt": _iso(at)},
    }


def main() -> None:
    """Prepare the data, then measure first load and observation → feed."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        runtime.engine.dispose()
        settings = settings.model_copy(update={"background_jobs": True})
        app = create_app(settings)
        runtime = app.state.runtime
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            for name, role in (("bench-admin", "admin"), ("bench-operator", "operator")):
                auth_service.create_user(
                    session=session,
                    user_in=UserCreate(
                        username=name, password=PASSWORD, full_name="Bench", role=role
                    ),
                    clock=runtime.clock,
                    settings=runtime.settings,
                )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            _run(base, key, sync_playwright, runtime)
        finally:
            server.should_exit = True
            thread.join(15)


def _run(base: str, key: str, sync_playwright: Any, runtime: Any) -> None:
    http = httpx.Client(base_url=base, timeout=120)
    token = http.post(
        "/api/v1/auth/token", data={"username": "bench-admin", "password": PASSWORD}
    ).json()["access_token"]
    admin = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for first in range(0, ENTITIES, 500):
        batch = [_station(i, 40 + i % 50, T0) for i in range(first, min(first + 500, ENTITIES))]
        r = http.post("/ngsi-ld/v1/entityOperations/upsert", json=batch, headers={"X-API-Key": key})
        assert r.status_code in (201, 204), r.text
    print(f"set-up: {ENTITIES:,} entities in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    severities = ("low", "medium", "high", "critical")
    for n in range(INCIDENTS):
        r = http.post(
            "/api/v1/incidents",
            json={
                "title": f"Sự cố thử {n}",
                "category_code": "other",
                "severity": severities[n % 4],
                "unit_code": UNITS[n % len(UNITS)],
                "lat": 10.9 + (n % 40) * 0.01,
                "lon": 106.8 + (n // 40) * 0.01,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
    print(f"set-up: {INCIDENTS:,} open incidents in {time.perf_counter() - started:.1f} s")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        loads = []
        for _ in range(LOADS):
            if ARGS.cold:
                mapdata.layer_cache(runtime).clear()
                mapdata.incident_cache(runtime).clear()
            loads.append(_first_load(browser, base))
        for elapsed, size, count, _, cpu in loads:
            print(
                f"(1) first load of / ({ENTITIES:,} entities, {INCIDENTS:,} open incidents): "
                f"{elapsed:.2f} s to ready, {size / 1e6:.2f} MB in {count} requests, "
                f"server CPU {cpu * 1000:.0f} ms"
            )
        if loads:
            print(
                f"(1) median{' (cold layers)' if ARGS.cold else ''}: "
                f"{statistics.median(x[0] for x in loads):.2f} s, server CPU "
                f"{statistics.median(x[4] for x in loads) * 1000:.0f} ms; load average "
                + " ".join(f"{x:.2f}" for x in os.getloadavg())
            )
        if ARGS.trace:
            elapsed, _, _, _, _ = _first_load(browser, base, trace=ARGS.trace)
            print(f"(3) traced first load: {elapsed:.2f} s to ready (slowed by tracing)")
            summarise(ARGS.trace)
        if not PROBES:
            browser.close()
            return
        page = loads[-1][3] if loads else _first_load(browser, base)[3]

        page.wait_for_selector("body[data-live='1']", state="attached")
        latencies = []
        for n in range(PROBES):
            entity = f"urn:ngsi-ld:AirQualityObserved:web-{n * 97 % ENTITIES}"
            before = page.locator("#feed li.feed-alert").count()
            at = _iso(datetime.now(UTC) + timedelta(seconds=n))
            patch = {"airQualityIndex": {"type": "Property", "value": 176, "observedAt": at}}
            t = time.perf_counter()
            r = http.patch(
                f"/ngsi-ld/v1/entities/{entity}/attrs", json=patch, headers={"X-API-Key": key}
            )
            assert r.status_code == 204, r.text
            page.wait_for_function(
                f"document.querySelectorAll('#feed li.feed-alert').length > {before}",
                polling=5,
                timeout=10_000,
            )
            latencies.append(time.perf_counter() - t)
            time.sleep(0.3)
        ms = [x * 1000 for x in latencies]
        print(
            f"(2) observation PATCH -> alert visible in the feed ({PROBES} probes): "
            f"p50 {percentile(ms, 50):.0f} ms, max {max(ms):.0f} ms"
        )
        browser.close()


def _first_load(
    browser: Any, base: str, trace: Path | None = None
) -> tuple[float, int, int, Any, float]:
    """Load / in a fresh context: (seconds to ready, bytes, requests, the open page, CPU s).

    The CPU time is this process's (the server's threads, and Playwright's client, which mostly
    waits) from navigation to ready: the server's share of a first load, whatever the load."""
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    login = context.request.post(
        f"{base}/api/v1/auth/login",
        data={"username": "bench-operator", "password": PASSWORD},
    )
    assert login.ok, login.text()
    page = context.new_page()
    sizes: list[int] = []
    page.on(
        "requestfinished",
        lambda request, sizes=sizes: sizes.append(
            request.sizes()["responseBodySize"] + request.sizes()["responseHeadersSize"]
        ),
    )
    if trace:
        browser.start_tracing(page=page, path=str(trace), categories=TRACE_CATEGORIES)
    t = time.perf_counter()
    cpu = time.process_time()
    page.goto(f"{base}/")
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=120_000)
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - cpu
    if trace:
        browser.stop_tracing()
    page.wait_for_load_state("networkidle")
    body = page.locator("body")
    assert body.get_attribute("data-sensors") == str(ENTITIES), body.get_attribute("data-sensors")
    assert body.get_attribute("data-incidents") == str(INCIDENTS)
    # Where the time goes: the browser's own resource timings (transferSize included).
    entries = page.evaluate(
        "performance.getEntriesByType('resource').map(e => "
        "[e.name.replace(location.origin, ''), e.startTime, e.duration, e.transferSize])"
    )
    transferred = sum(e[3] for e in entries)
    slow = sorted(entries, key=lambda e: -e[2])[:4]
    print(
        f"    resources: {transferred / 1e6:.2f} MB transferSize; slowest: "
        + "; ".join(f"{e[0][:60]} {e[2]:.0f} ms (from {e[1]:.0f})" for e in slow)
    )
    return elapsed, sum(sizes), len(sizes), page, cpu


if __name__ == "__main__":
    main()
