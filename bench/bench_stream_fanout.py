"""Benchmark the live stream's fan-out of entity changes inside the ingesting process.

20 streams are connected to the process's `StreamHub` (served on an event loop in a thread, as
uvicorn serves them), and 50,000 `context.attribute_changed` events (by default 500 stations x 100
values of pm25) are handed to the hub exactly as the after-commit bus hands them over, from the main
thread, paced at a rate (default 5,000/s; 0 = as fast as possible). Prints:

- CPU seconds spent in the publishing thread (the ingesting thread's share: `time.thread_time`),
  and per event;
- CPU seconds of the whole process from the first event until every stream has gone quiet
  (publishing plus formatting and fan-out on the loop), and per event;
- the entity events each stream was sent, and how long after the last event the streams went
  quiet.

Works on any version of `cityops.web.stream` (it only uses `hub.on_event` and `hub.serve`), so
the same command measures before and after a change:
    PYTHONPATH=src:bench .venv/bin/python bench/bench_stream_fanout.py \
        [EVENTS=50000] [RATE=5000] [STREAMS=20] [STATIONS=500]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.web.stream import Subscription, hub_of

QUIET = 2.0  # seconds without a new event after which a stream is deemed drained


def main() -> None:
    """Run the benchmark and print its figures."""
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 5000.0
    streams = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    stations = int(sys.argv[4]) if len(sys.argv) > 4 else 500
    with tempfile.TemporaryDirectory() as folder:
        _settings, runtime, _key = prepare(Path(folder))
        hub = hub_of(runtime)
        received = [0] * streams
        last_seen = [0.0]
        loop = asyncio.new_event_loop()
        started = threading.Event()

        async def consume(index: int, subscription: Subscription) -> None:
            async for chunk in hub.serve(subscription, None):
                count = chunk.count("\ndata: ")
                if chunk.startswith("data: "):
                    count += 1
                if count:
                    received[index] += count
                    last_seen[0] = time.monotonic()

        async def serve_all() -> None:
            # Wall screens: province-wide, and a few scoped to the unit the stations are in.
            kinds = frozenset({"alerts", "incidents", "entities", "devices"})
            tasks = []
            for index in range(streams):
                units = frozenset({"25195"}) if index % 4 == 3 else None
                subscription = Subscription(kinds=kinds, unit_codes=units)
                tasks.append(asyncio.ensure_future(consume(index, subscription)))
            await asyncio.sleep(0.5)  # every stream attached and past its first read
            started.set()
            await asyncio.gather(*tasks)

        def run_loop() -> None:
            with contextlib.suppress(asyncio.CancelledError):  # stopped at the end
                loop.run_until_complete(serve_all())

        thread = threading.Thread(target=run_loop, name="loop", daemon=True)
        thread.start()
        if not started.wait(30):
            raise RuntimeError("the streams did not start")

        at = runtime.clock.now()
        batch = [
            Event(
                type="context.attribute_changed",
                data={
                    "tenant": "default",
                    "entity_id": f"urn:ngsi-ld:AirQualityObserved:bench-{n % stations}",
                    "entity_type": "AirQualityObserved",
                    "attribute": "pm25",
                    "dataset_id": None,
                    "attribute_type": "Property",
                    "value": float(n // stations),
                    "previous": float(n // stations - 1),
                    "unit_code": "25195",
                    "unitCode": "GQ",
                    "observed_at": "2026-11-20T03:00:00.000Z",
                    "deleted": False,
                    "lat": 10.957,
                    "lon": 106.843,
                },
                at=at,
                correlation_id=f"bench-{n}",
            )
            for n in range(events)
        ]
        process_start = time.process_time()
        wall_start = time.monotonic()
        thread_cpu = 0.0
        step = 50  # events handed over between two looks at the clock
        for first in range(0, events, step):
            if rate > 0:
                due = wall_start + first / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            cpu = time.thread_time()
            for event in batch[first : first + step]:
                hub.on_event(event)
            thread_cpu += time.thread_time() - cpu
        published = time.monotonic()
        last_seen[0] = max(last_seen[0], published)
        while time.monotonic() - last_seen[0] < QUIET:
            time.sleep(0.1)
        process_cpu = time.process_time() - process_start
        drained = last_seen[0] - published
        loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
        thread.join(10)
        runtime.engine.dispose()

    print(f"{events} entity changes to {stations} stations, {streams} streams, ", end="")
    print(f"asked {rate:.0f}/s, took {published - wall_start:.1f} s")
    print(
        f"publishing thread CPU: {thread_cpu:.3f} s ({thread_cpu / events * 1e6:.1f} µs per event)"
    )
    print(
        f"process CPU until drained: {process_cpu:.3f} s "
        f"({process_cpu / events * 1e6:.1f} µs per event)"
    )
    print(
        f"entity events sent per stream: min {min(received)}, max {max(received)}; "
        f"streams quiet {drained:.2f} s after the last event"
    )
    print(f"resets sent: {_resets(runtime)}")


def _resets(runtime: Runtime) -> int:
    """The resets the streams were sent (the slow-client guard)."""
    registry = runtime.metrics.registry
    return int(
        sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "cityops_stream_resets"
            for sample in metric.samples
            if sample.name == "cityops_stream_resets_total"
        )
    )


if __name__ == "__main__":
    main()
