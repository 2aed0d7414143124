"""Benchmark: point → commune/ward lookups per second, one at a time and in batches.

Builds a temporary SQLite database migrated and seeded with the Đồng Nai profile, builds the
locator from its (demo) boundaries, then times random points inside the province's bounding box.
Run: .venv/bin/python bench/bench_locate.py
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

import numpy as np

from cityops.app import build_runtime
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.seed import seed
from cityops.units import service

SINGLE_POINTS = 300_000
BATCH_POINTS = 1_000_000
BATCH_SIZE = 10_000


def main() -> None:
    """Print lookups per second for the single and the batch form."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        settings = Settings(
            database_url=f"sqlite:///{data_dir / 'bench.db'}",
            data_dir=data_dir,
            secret_key=secrets.token_urlsafe(48),
        )
        runtime = build_runtime(settings)
        migrate.upgrade(runtime.engine)
        seed(runtime)
        with runtime.session_factory() as session:
            started = time.perf_counter()
            locator = service.get_locator(session=session, caches=runtime.caches)
            build_s = time.perf_counter() - started
            province = service.get(session=session, unit_code="75")
            assert province is not None
            assert province.bbox is not None
            min_lon, min_lat, max_lon, max_lat = province.bbox
        runtime.engine.dispose()

    print(
        f"locator: {len(locator.codes)} units, {locator.cell_count} grid cells, built in "
        f"{build_s * 1000:.0f} ms"
    )
    rng = np.random.default_rng(2026)
    lats = rng.uniform(min_lat, max_lat, SINGLE_POINTS).tolist()
    lons = rng.uniform(min_lon, max_lon, SINGLE_POINTS).tolist()
    locate = locator.locate
    for lat, lon in zip(lats[:10_000], lons[:10_000], strict=True):
        locate(lat, lon)  # warm-up
    started = time.perf_counter()
    hits = 0
    for lat, lon in zip(lats, lons, strict=True):
        if locate(lat, lon) is not None:
            hits += 1
    elapsed = time.perf_counter() - started
    print(
        f"single: {SINGLE_POINTS / elapsed:,.0f} lookups/s "
        f"({elapsed / SINGLE_POINTS * 1e6:.2f} µs each; {hits / SINGLE_POINTS:.0%} inside)"
    )

    blats = rng.uniform(min_lat, max_lat, BATCH_POINTS)
    blons = rng.uniform(min_lon, max_lon, BATCH_POINTS)
    started = time.perf_counter()
    for start in range(0, BATCH_POINTS, BATCH_SIZE):
        locator.locate_many(blats[start : start + BATCH_SIZE], blons[start : start + BATCH_SIZE])
    elapsed = time.perf_counter() - started
    print(f"batch ({BATCH_SIZE:,} points per call): {BATCH_POINTS / elapsed:,.0f} lookups/s")


if __name__ == "__main__":
    main()
