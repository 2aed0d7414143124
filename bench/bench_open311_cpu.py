"""Benchmark: CPU time of one citizen report's flow, in process (no HTTP, no other load counted).

`citizen.flows.create_report` as the Open311 POST runs it — key check, rate limit, validation,
point → ward, duplicates, routing, an incident with its SLA deadlines, timeline and events —
through the report writer (citizen.writer), one transaction per batch of `--batch=N` reports,
on a seeded SQLite database in a temporary folder. Prints the CPU milliseconds per report
(`time.process_time`, which another process's load barely moves) and, with `--profile`, the
functions that take the most.
Run: PYTHONPATH=src:bench .venv/bin/python bench/bench_open311_cpu.py [REPORTS] [--batch=N]
[--profile]
"""

from __future__ import annotations

import cProfile
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from bench_open311 import DESCRIPTIONS, _key, seeded
from cityops.citizen import flows
from cityops.citizen.writer import writer_of
from cityops.core.runtime import Runtime

REPORTS = int(next((a for a in sys.argv[1:] if a.isdigit()), "300"))
# `--batch=N`: reports written per transaction by the report writer (what N clients sending at
# once get); 1 is a lone client.
BATCH = int(next((a.split("=")[1] for a in sys.argv[1:] if a.startswith("--batch=")), "1"))
WARMUP = 30
CENTRES = [(10.938, 106.835), (10.954, 106.859), (10.976, 106.927), (10.94, 107.24)]
SERVICES = ["GT-01", "TN-01", "MT-01", "CS-01", "MT-02", "AT-01", "KH-01"]


def _fields(rng: random.Random, key: str) -> dict[str, list[str]]:
    lat, lon = rng.choice(CENTRES)
    service = rng.choice(SERVICES)
    fields = {
        "api_key": [key],
        "service_code": [service],
        "lat": [f"{lat + rng.uniform(-0.005, 0.005):.6f}"],
        "long": [f"{lon + rng.uniform(-0.005, 0.005):.6f}"],
        "description": [rng.choice(DESCRIPTIONS)],
        "email": ["nguoi.dan@example.vn"],
    }
    if service == "GT-01":
        fields["attribute[damage]"] = ["pothole"]
    return fields


def _work(runtime: Runtime, fields: dict[str, list[str]]) -> Callable[[Session], str]:
    """What the Open311 POST hands to the report writer."""

    def write(session: Session) -> str:
        client_id = flows.open311_client(
            runtime=runtime, session=session, api_key=fields["api_key"][0]
        )
        flows.check_rate(runtime, f"key:{client_id}")
        created = flows.create_report(
            runtime=runtime,
            session=session,
            sub=flows.submission_from_form(fields),
            client_id=client_id,
            language="vi",
        )
        return created.report.tracking_code

    return write


def _reports(runtime: Runtime, bodies: list[dict[str, list[str]]]) -> None:
    """Write the reports in batches of BATCH (1: one transaction each, as a lone client)."""
    writer = writer_of(runtime)
    for first in range(0, len(bodies), BATCH):
        results = writer.run_batch([_work(runtime, f) for f in bodies[first : first + BATCH]])
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]


def main() -> None:
    """Seed, warm up, then time REPORTS reports one after the other."""
    with tempfile.TemporaryDirectory() as tmp:
        _, runtime = seeded(Path(tmp), citizen_rate_per_minute=1_000_000)
        key = _key(runtime)
        rng = random.Random(7)
        _reports(runtime, [_fields(rng, key) for _ in range(WARMUP)])
        bodies = [_fields(rng, key) for _ in range(REPORTS)]
        profile = cProfile.Profile() if "--profile" in sys.argv else None
        started = time.process_time()
        if profile is not None:
            profile.enable()
        _reports(runtime, bodies)
        if profile is not None:
            profile.disable()
        cpu = (time.process_time() - started) / REPORTS * 1000
        print(
            f"report flow (locate, duplicates, route, incident; batches of {BATCH}): "
            f"{cpu:.1f} ms CPU per report over {REPORTS} (≈ {1000 / cpu:.0f}/s per core)"
            + (" — with the profiler on" if profile is not None else "")
        )
        if profile is not None:
            pstats.Stats(profile).sort_stats("cumulative").print_stats("cityops", 40)
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
