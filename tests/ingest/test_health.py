"""Device health: silent devices go offline (and come back), driven by the clock and the jobs."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock
from cityops.core.events import Event
from cityops.core.runtime import Runtime

from .conftest import API

_ticks = itertools.count(1)


def _run_jobs(runtime: Runtime) -> None:
    # Each call is a moment far enough after the previous one for every job to be due.
    runtime.jobs.run_due(now=next(_ticks) * 1_000_000.0)


def test_a_silent_device_goes_offline_and_comes_back(
    client: TestClient,
    admin: dict[str, str],
    make_device: Callable[..., dict[str, Any]],
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    assert "ingest.device_health" in runtime.jobs.jobs
    events: list[Event] = []
    runtime.bus.subscribe("ingest.device_offline", events.append)
    runtime.bus.subscribe("ingest.device_online", events.append)
    station = make_device(interval_seconds=60)
    quiet = make_device(device_id="never-seen", interval_seconds=60)
    url = f"{API}/ingest/{station['device_id']}"
    headers = {"X-Device-Key": station["key"]}

    def status(device: dict[str, Any]) -> str:
        body = client.get(f"{API}/ingest/devices/{device['id']}", headers=admin).json()
        return str(body["status"])

    assert client.post(url, json={"pm25": 10}, headers=headers).status_code == 200
    assert status(station) == "online"
    assert [e.type for e in events] == ["ingest.device_online"]
    # Within twice the interval: still online.
    clock.advance(timedelta(seconds=119))
    _run_jobs(runtime)
    assert status(station) == "online"
    # Past twice the interval: offline, once.
    clock.advance(timedelta(seconds=2))
    _run_jobs(runtime)
    _run_jobs(runtime)
    assert status(station) == "offline"
    assert [e.type for e in events] == ["ingest.device_online", "ingest.device_offline"]
    assert events[-1].data["device_id"] == station["device_id"]
    assert events[-1].data["entity_id"] == station["entity_id"]
    # A device never heard from is not "going" offline.
    assert status(quiet) == "offline"
    assert all(e.data["device_id"] != quiet["device_id"] for e in events)
    # It reports again: online, with an event.
    clock.advance(timedelta(minutes=10))
    assert client.post(url, json={"pm25": 11}, headers=headers).status_code == 200
    assert status(station) == "online"
    assert [e.type for e in events][-1] == "ingest.device_online"


def test_a_steady_device_stays_online(
    client: TestClient,
    admin: dict[str, str],
    make_device: Callable[..., dict[str, Any]],
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    station = make_device(interval_seconds=60)
    url = f"{API}/ingest/{station['device_id']}"
    for _ in range(10):
        assert (
            client.post(
                url, json={"pm25": 10}, headers={"X-Device-Key": station["key"]}
            ).status_code
            == 200
        )
        clock.advance(timedelta(seconds=60))
        _run_jobs(runtime)
    body = client.get(f"{API}/ingest/devices/{station['id']}", headers=admin).json()
    assert body["status"] == "online"
    # last_seen_at is kept within a tenth of the interval of the last report.
    assert clock.now() - timedelta(seconds=66) <= datetime.fromisoformat(body["last_seen_at"])
