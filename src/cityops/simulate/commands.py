"""What `cityops simulate` and `cityops demo` do with the simulator, behind the Typer layer."""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cityops.core.runtime import Runtime
from cityops.simulate import anomalies, flows
from cityops.simulate.catalog import build_catalog
from cityops.simulate.publish import DirectPublisher, HttpPublisher, MqttPublisher, Publisher

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The demo's history and its live pace: three days, hourly; streams 20× faster than life.
DEMO_BACKFILL = timedelta(days=3)
DEMO_SPEED = 20.0
DEMO_SEED = 42


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "10m", "6h" or "30d"."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 10m, 6h, 30d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass
class SimulateOptions:
    """Options of `cityops simulate`."""

    seed: int = DEMO_SEED
    rate: int = 1
    via: str = "http"
    url: str = "http://127.0.0.1:8000"
    tenant: str = flows.DEFAULT_TENANT
    backfill: timedelta | None = None
    step: timedelta = timedelta(hours=1)
    duration: timedelta | None = None
    speed: float = 1.0
    provision: bool = False
    # The demo's storyline anchored at this instant (anomalies.demo_story), or none.
    story: datetime | None = None


def backfill_with_progress(
    runtime: Runtime, options: SimulateOptions, span: timedelta, echo: Callable[[str], None]
) -> flows.BackfillResult:
    """Back-fill `span` of history up to now, showing a progress bar."""
    assets = build_catalog(options.rate)
    end = runtime.clock.now()
    with Progress(
        TextColumn("[bold]back-fill"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("back-fill", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = flows.backfill(
            runtime=runtime,
            assets=assets,
            seed=options.seed,
            start=end - span,
            end=end,
            step=options.step,
            tenant=options.tenant,
            progress=advance,
        )
    echo(
        f"back-fill: {result.rows} values for {result.entities} entity observations "
        f"in {result.seconds:.1f} s ({result.skipped} already stored)"
    )
    return result


def _publisher(runtime: Runtime, options: SimulateOptions) -> Publisher:
    if options.via == "direct":
        return DirectPublisher(runtime, options.tenant)
    keys = flows.load_keys(runtime, options.tenant)
    if options.via == "mqtt":
        return MqttPublisher(runtime.settings.mqtt_url, options.tenant, keys)
    return HttpPublisher(options.url, keys)


def simulate(runtime: Runtime, options: SimulateOptions, echo: Callable[[str], None]) -> None:
    """Provision if needed, back-fill if asked, then stream live readings until stopped."""
    if options.via not in ("mqtt", "http", "direct"):
        raise ValueError("--via must be mqtt, http or direct")
    assets = build_catalog(options.rate)
    if options.story is not None:
        anomalies.script(anomalies.demo_story(options.story))
    if options.provision or (
        options.via != "direct"
        and not flows.is_provisioned(runtime=runtime, assets=assets, tenant=options.tenant)
    ):
        counts = flows.provision(runtime=runtime, assets=assets, tenant=options.tenant)
        echo("provisioned: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if options.backfill is not None:
        backfill_with_progress(runtime, options, options.backfill, echo)
        if options.duration is None:
            return
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # SIGTERM (the demo stopping its child) ends the loop cleanly, as Ctrl-C does.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    publisher = _publisher(runtime, options)
    echo(
        f"simulating {len(assets)} assets via {options.via} (seed {options.seed}, "
        f"speed {options.speed:g}×); Ctrl-C stops"
    )
    result = flows.RunResult()

    def _progress(current: flows.RunResult) -> None:
        result.readings, result.delivered, result.ticks = (
            current.readings,
            current.delivered,
            current.ticks,
        )

    try:
        flows.run(
            assets=assets,
            seed=options.seed,
            publisher=publisher,
            now=runtime.clock.now,
            speed=options.speed,
            duration=options.duration,
            stop=stop,
            on_tick=_progress,
        )
    except KeyboardInterrupt:
        stop.set()
    finally:
        publisher.close()
    echo(f"sent {result.delivered} of {result.readings} readings")


def demo_prepare(runtime: Runtime, echo: Callable[[str], None], story: datetime) -> str:
    """Provision the demo's devices and, on an empty store, back-fill three days; describe it.

    `story` anchors the demo's storyline: the history holds its past episodes and the live
    simulator (started with the same anchor) plays the spike that comes minutes after it.
    """
    options = SimulateOptions(seed=DEMO_SEED, story=story)
    anomalies.script(anomalies.demo_story(story))
    assets = build_catalog(1)
    latest = flows.latest_observations(runtime=runtime, assets=assets, tenant=options.tenant)
    if not flows.is_provisioned(runtime=runtime, assets=assets, tenant=options.tenant):
        flows.provision(runtime=runtime, assets=assets, tenant=options.tenant)
    if not latest:
        backfill_with_progress(runtime, options, DEMO_BACKFILL, echo)
    return f"{len(assets)} simulated stations, road segments and facilities"


def demo_command(url: str, *, mqtt: bool, story: datetime) -> list[str]:
    """Return the command line of the demo's live simulator child process."""
    return [
        sys.executable,
        "-c",
        "from cityops.cli import main; main()",
        "simulate",
        "--via",
        "mqtt" if mqtt else "http",
        "--url",
        url,
        "--seed",
        str(DEMO_SEED),
        "--speed",
        str(DEMO_SPEED),
        "--story",
        story.isoformat(),
    ]
