"""Benchmark: CPU time of one Open311 list request, in process (no server, no other load counted).

Loads REPORTS reports over a year into SQLite (as bench_open311 does), then sends each of the
bench's GET lists through the whole app (TestClient: middleware, gzip, routing, SQL, shaping,
encoding) and prints the CPU milliseconds per request (`time.process_time`: another process's
load barely moves it). `--profile` then calls the route function itself for each query in this
thread (cProfile sees one thread; the app runs its handlers in others) and prints the functions
that take the most: SQL, row shaping and encoding, without the middleware and gzip.
Run: PYTHONPATH=src:bench .venv/bin/python bench/bench_open311_list_cpu.py [REPORTS] [--profile]
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi.testclient import TestClient
from starlette.requests import Request

import bench_open311
from cityops.app import create_app
from cityops.citizen import open311
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

REPORTS = int(next((a for a in sys.argv[1:] if a.isdigit()), "100000"))
REQUESTS = 30
WARMUP = 5
QUERIES = [
    ("default (last 90 days)", "/open311/v2/requests.json"),
    ("one service", "/open311/v2/requests.json?service_code=MT-01"),
    ("open only", "/open311/v2/requests.json?status=open"),
    ("service + status", "/open311/v2/requests.json?service_code=GT-01,TN-01&status=open"),
    ("page 20 of 1,000", "/open311/v2/requests.json?page=20"),
    ("default, XML", "/open311/v2/requests.xml"),
]


def main() -> None:
    """Load the reports, then time each list query's CPU per request."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings, runtime = bench_open311.seeded(folder)
        seconds = bench_open311.load(runtime, REPORTS)
        runtime.engine.dispose()
        print(
            f"loaded {REPORTS:,} reports in {seconds:.1f} s; load average {os.getloadavg()[0]:.1f}"
        )
        with TestClient(create_app(settings), headers={"accept-encoding": "gzip"}) as client:
            for name, url in QUERIES:
                for _ in range(WARMUP):
                    assert client.get(url).status_code == 200
                started, wall = time.process_time(), time.perf_counter()
                for _ in range(REQUESTS):
                    response = client.get(url)
                cpu = (time.process_time() - started) / REQUESTS * 1000
                wall = (time.perf_counter() - wall) / REQUESTS * 1000
                count = response.text.count("service_request_id")
                if url.endswith(".xml"):
                    count //= 2
                print(
                    f"GET {name:24s} {count:5d} results {len(response.content) / 1024:5.0f} KiB  "
                    f"CPU {cpu:5.1f} ms/request (wall {wall:5.1f} ms)"
                )
            if "--profile" in sys.argv:
                _profile(client.app.state.runtime)  # type: ignore[attr-defined]


def _profile(runtime: Runtime) -> None:
    """Profile the list route itself, called in this thread, for every query."""
    profile = cProfile.Profile()
    for _, url in QUERIES:
        path, _, query = url.partition("?")
        params = dict(parse_qsl(query))
        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
        for _ in range(REQUESTS):
            with unit_of_work(runtime.session_factory) as session:
                profile.enable()
                open311.get_requests(
                    request=Request(scope),
                    runtime=runtime,
                    session=session,
                    fmt=path.rsplit(".", 1)[1],
                    **params,
                )
                profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
