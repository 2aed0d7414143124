"""Benchmark: CPU time of the write pipeline in process (steady under a shared machine's load).

Wall-clock rates swing with whatever else the two cores run; the process CPU time a batch costs
does not much. Prints CPU per 500 observations and per observation, on SQLite, for:

- `write_entities` + commit with the NGSI-LD batch benchmark's body (100 entities × 4
  attributes + location a call, every value changed: 500 observations, 400 change events);
- the same without `location` in the body (the MQTT/PATCH shape: the stored point is used);
- `ingest.flows.ingest` + commit with MQTT-shaped readings (250 devices × 2 values).

To compare with older code, run it against that code's sources, alternating runs:
    git archive COMMIT src | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/bench_context_write_cpu.py
    PYTHONPATH=src .venv/bin/python bench/bench_context_write_cpu.py
`--profile` prints the top functions of a cProfile run of the first workload instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from bench_context_ingest import ENTITIES, _batch
from cityops.context import flows as context_flows
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.ingest import flows as ingest_flows
from cityops.ingest.schemas import DeviceCreate

DEVICES = 250
ROUNDS = 12


def _without_location(call: int) -> list[dict[str, Any]]:
    body = _batch(call)
    for entity in body:
        entity.pop("location")
    return body


def _devices(runtime: Runtime) -> None:
    attributes: list[dict[str, Any]] = [
        {"key": "pm25", "unit_code": "GQ", "min": 0, "max": 1000},
        {"key": "no2", "unit_code": "GQ", "min": 0, "max": 2000},
    ]
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        for n in range(DEVICES):
            ingest_flows.create_device(
                runtime=runtime,
                session=session,
                device_in=DeviceCreate(
                    device_id=f"aq-{n:05d}",
                    name=f"Trạm {n}",
                    entity_type="AirQualityObserved",
                    lat=10.9 + (n % 50) * 0.004,
                    lon=106.8 + (n // 50) * 0.004,
                    interval_seconds=60,
                    attributes=attributes,  # type: ignore[arg-type]
                ),
            )


def _ingest_call(runtime: Runtime) -> Callable[[int], None]:
    from cityops.ingest import service as ingest_service

    def call(n: int) -> None:
        ts = f"2026-11-20T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            devices = ingest_service.get_many(
                session=session, pairs={("default", f"aq-{i:05d}") for i in range(DEVICES)}
            )
            items = [
                ingest_flows.DeviceReadings(
                    device=device,
                    readings=[{"pm25": float((n + i) % 500), "no2": float(n % 97 + i), "ts": ts}],
                )
                for i, device in enumerate(devices.values())
            ]
            ingest_flows.ingest(runtime=runtime, session=session, items=items, transport="mqtt")

    return call


def _write_call(runtime: Runtime, body: Callable[[int], list[dict[str, Any]]]) -> Any:
    def call(n: int) -> None:
        entities = body(n)
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            outcome = context_flows.write_entities(
                runtime=runtime, session=session, tenant="default", entities=entities
            )
            assert not outcome.errors, outcome.errors

    return call


def _measure(call: Callable[[int], None], start: int) -> float:
    """Return the median CPU seconds of one call over ROUNDS calls (after two warm-ups)."""
    call(start)
    call(start + 1)
    samples = []
    for n in range(start + 2, start + 2 + ROUNDS):
        cpu = time.process_time()
        call(n)
        samples.append(time.process_time() - cpu)
    return statistics.median(samples)


def main() -> None:
    """Print CPU per batch and per observation of each workload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("batch", "ingest"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _settings, runtime, _key = prepare(Path(tmp))
        batch = _write_call(runtime, _batch)
        batch(0)
        _devices(runtime)
        if args.profile:
            call = batch if args.profile == "batch" else _ingest_call(runtime)
            call(1)
            profiler = cProfile.Profile()
            profiler.enable()
            for n in range(2, 22):
                call(n)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            runtime.engine.dispose()
            return
        workloads = {
            "write_entities, batch body with location (500 obs)": (batch, ENTITIES * 5),
            "write_entities, no location in body (400 obs)": (
                _write_call(runtime, _without_location),
                ENTITIES * 4,
            ),
            "ingest.flows.ingest, MQTT readings (500 obs)": (
                _ingest_call(runtime),
                DEVICES * 2,
            ),
        }
        start = 100
        for label, (call, observations) in workloads.items():
            cpu = _measure(call, start)
            start += ROUNDS + 10
            print(
                f"[sqlite] {label}: {cpu * 1000:.1f} ms CPU a call, "
                f"{cpu / observations * 1e6:.1f} µs an observation"
            )
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
