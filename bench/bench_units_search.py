"""Benchmark: latency of `GET /api/v1/units?q=...` over HTTP against a real server.

Creates a temporary SQLite database (migrated and seeded with the Đồng Nai profile), starts
uvicorn on a free localhost port in a subprocess, and times a few hundred searches with httpx.
Run: .venv/bin/python bench/bench_units_search.py
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from cityops.app import build_runtime
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.seed import seed
from harness import free_port, percentile, wait_ready

REQUESTS = 600
WARMUP = 30
QUERIES = [
    "long khanh", "Long Khánh", "bien hoa", "Biên Hòa", "tran bien", "trị an", "xuan", "phuoc",
    "dong xoai", "nhon trach", "tan", "an", "binh", "26041", "xa", "phuong", "loc ninh",
    "bu dang", "dau giay", "cat tien", "zzz", "long",
]  # fmt: skip
# A throwaway key: the temporary database and server live only as long as the benchmark.
SECRET = secrets.token_urlsafe(48)


def main() -> None:
    """Print p50/p95/p99 latency of unit searches over HTTP."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        database_url = f"sqlite:///{data_dir / 'bench.db'}"
        runtime = build_runtime(
            Settings(database_url=database_url, data_dir=data_dir, secret_key=SECRET)
        )
        migrate.upgrade(runtime.engine)
        seed(runtime)
        runtime.engine.dispose()

        port = free_port()
        env = {
            **os.environ,
            "CITYOPS_DATABASE_URL": database_url,
            "CITYOPS_DATA_DIR": str(data_dir),
            "CITYOPS_SECRET_KEY": SECRET,
            "CITYOPS_LOG_LEVEL": "WARNING",
        }
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "cityops.app:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        server = subprocess.Popen(command, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, server)
            rng = random.Random(75)
            timings: list[float] = []
            with httpx.Client(base_url=base, timeout=10) as client:
                for i in range(WARMUP + REQUESTS):
                    query = rng.choice(QUERIES)
                    started = time.perf_counter()
                    response = client.get("/api/v1/units", params={"q": query, "limit": 20})
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    if i >= WARMUP:
                        timings.append(elapsed * 1000)
        finally:
            server.terminate()
            server.wait(timeout=10)

    print(f"GET /api/v1/units?q=... over HTTP, {REQUESTS} requests, {len(QUERIES)} queries")
    print(
        f"p50 {percentile(timings, 50):.2f} ms  p95 {percentile(timings, 95):.2f} ms  "
        f"p99 {percentile(timings, 99):.2f} ms  mean {statistics.fmean(timings):.2f} ms"
    )


if __name__ == "__main__":
    main()
