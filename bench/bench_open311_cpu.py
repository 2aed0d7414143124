"""Benchmark: CPU time of one citizen report's flow, in process (no HTTP, no other load counted).

The Open311 POST's work, as it runs it: the plan (key check, rate limit, validation, point →
ward, duplicates, routing, SLA deadlines) with reads only, then the report writer
(citizen.writer) writing each batch of `--batch=N` plans — reports, incidents, timelines, audit,
outbox and stream rows, events — with one statement per table, in one transaction,
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
from pathlib import Path

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


def _plan(runtime: Runtime, fields: dict[str, list[str]]) -> flows.Plan:
    """What the Open311 POST plans before it hands the report to the writer."""
    with runtime.session_factory() as session:
        client_id = flows.open311_client(
            runtime=runtime, session=session, api_key=fields["api_key"][0]
        )
        flows.check_rate(runtime, f"key:{client_id}")
        return flows.plan_report(
            runtime=runtime,
            session=session,
            sub=flows.submission_from_form(fields),
            client_id=client_id,
            language="vi",
        )


def _reports(runtime: Runtime, bodies: list[dict[str, list[str]]]) -> None:
    """Write the reports in batches of BATCH (1: one transaction each, as a lone client)."""
    writer = writer_of(runtime)
    for first in range(0, len(bodies), BATCH):
        results = writer.run_batch([_plan(runtime, f) for f in bodies[first : first + BATCH]])
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
            stats = pstats.Stats(profile).sort_stats("cumulative")
            stats.print_stats("cityops", 40)
            if "--callees" in sys.argv:
                stats.print_callees("find_duplicates")
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
