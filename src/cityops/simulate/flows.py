"""Orchestration of the simulator: provision devices and entities, back-fill history, run live.

- `provision` creates one ingest device per asset (so MQTT/HTTP ingest authenticate it) and the
  assets' static entities; device keys are kept under the data folder, since the registry shows
  a key only once (a device whose key was lost is re-keyed).
- `backfill` writes history directly through `write_entities`, one transaction per chunk of
  time steps; it is resumable: time steps at or before an entity's latest stored observation
  are skipped, so a re-run adds nothing.
- `run` emits each asset at its interval (divided by `speed`) with the wall-clock time as
  observedAt, until stopped or the duration ends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cityops.context import flows as context_flows
from cityops.context import service as context_service
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.ingest import flows as ingest_flows
from cityops.ingest import service as ingest_service
from cityops.ingest.schemas import DeviceCreate
from cityops.simulate.catalog import Asset
from cityops.simulate.entities import attribute_specs, observation_entity, static_entity
from cityops.simulate.generators import observe
from cityops.simulate.publish import Publisher, Reading

log = logging.getLogger(__name__)

# The tenant devices and entities live in when none is named (the context store's default).
DEFAULT_TENANT = context_service.DEFAULT_TENANT
# Rows (attribute instances) per back-fill transaction: large enough for multi-row inserts to
# pay off, small enough to keep SQLite's write lock short for a server running beside it.
BACKFILL_CHUNK_ROWS = 20_000


def keys_path(runtime: Runtime, tenant: str) -> Path:
    """Return the file holding the simulated devices' keys for a tenant."""
    return runtime.settings.data_dir / "simulate" / f"device-keys-{tenant}.json"


def load_keys(runtime: Runtime, tenant: str) -> dict[str, str]:
    """Return the stored device keys (device id → key), empty if none."""
    path = keys_path(runtime, tenant)
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def _save_keys(runtime: Runtime, tenant: str, keys: dict[str, str]) -> None:
    path = keys_path(runtime, tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(keys, indent=1, sort_keys=True), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


def write_static(*, runtime: Runtime, assets: Sequence[Asset], tenant: str) -> int:
    """Write the assets' static entities (name, location, capacities); return how many."""
    written = 0
    for start in range(0, len(assets), 500):
        part = assets[start : start + 500]
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            outcome = context_flows.write_entities(
                runtime=runtime,
                session=session,
                tenant=tenant,
                entities=[static_entity(a) for a in part],
            )
        written += len(outcome.success)
    return written


def provision(
    *, runtime: Runtime, assets: Sequence[Asset], tenant: str = DEFAULT_TENANT
) -> dict[str, int]:
    """Create missing devices (keeping their keys) and the static entities; safe to re-run."""
    keys = load_keys(runtime, tenant)
    created = rekeyed = 0
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        for asset in assets:
            device = ingest_service.get_by_device_id(
                session=session, tenant=tenant, device_id=asset.device_id
            )
            if device is None:
                device_in = DeviceCreate.model_validate(
                    {
                        "device_id": asset.device_id,
                        "tenant": tenant,
                        "name": asset.name,
                        "entity_type": asset.entity_type,
                        "entity_id": asset.entity_id,
                        "unit_code": asset.unit_code,
                        "lat": asset.lat,
                        "lon": asset.lon,
                        "interval_seconds": asset.interval,
                        "attributes": attribute_specs(asset),
                    }
                )
                _, key = ingest_flows.create_device(
                    runtime=runtime, session=session, device_in=device_in
                )
                keys[asset.device_id] = key
                created += 1
            elif asset.device_id not in keys:
                _, key = ingest_service.rotate_key(
                    session=session, device=device, clock=runtime.clock
                )
                keys[asset.device_id] = key
                rekeyed += 1
    _save_keys(runtime, tenant, keys)
    entities = write_static(runtime=runtime, assets=assets, tenant=tenant)
    return {"devices_created": created, "devices_rekeyed": rekeyed, "entities": entities}


def is_provisioned(*, runtime: Runtime, assets: Sequence[Asset], tenant: str) -> bool:
    """Tell whether every asset has a device whose key is stored here."""
    keys = load_keys(runtime, tenant)
    if any(a.device_id not in keys for a in assets):
        return False
    with runtime.session_factory() as session:
        found = ingest_service.get_many(
            session=session, pairs=[(tenant, a.device_id) for a in assets]
        )
    return len(found) == len(assets)


def latest_observations(
    *, runtime: Runtime, assets: Sequence[Asset], tenant: str
) -> dict[str, datetime]:
    """Return each stored entity's latest observation time (entities never observed are absent)."""
    out: dict[str, datetime] = {}
    with runtime.session_factory() as session:
        tenant_row = context_service.get_tenant(session=session, name=tenant)
        if tenant_row is None:
            return out
        rows = context_service.get_entity_rows(
            session=session, tenant_id=tenant_row.id, entity_ids=[a.entity_id for a in assets]
        )
        by_pk = {row.pk: entity_id for entity_id, row in rows.items()}
        attributes = context_service.get_attributes(session=session, entity_pks=list(by_pk))
        for pk, attrs in attributes.items():
            times = [a.observed_at for a in attrs if a.observed_at is not None]
            if times:
                out[by_pk[pk]] = max(times)
    return out


@dataclass
class BackfillResult:
    """What a back-fill wrote."""

    steps: int = 0
    entities: int = 0
    rows: int = 0
    skipped: int = 0
    seconds: float = 0.0


def _floor(t: datetime, step: timedelta) -> datetime:
    seconds = int(step.total_seconds())
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def backfill(
    *,
    runtime: Runtime,
    assets: Sequence[Asset],
    seed: int,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(hours=1),
    tenant: str = DEFAULT_TENANT,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    """Write history for [start, end) at aligned steps; skip what is already stored."""
    began = time.perf_counter()
    result = BackfillResult()
    latest = latest_observations(runtime=runtime, assets=assets, tenant=tenant)
    missing_static = [a for a in assets if a.entity_id not in latest]
    if missing_static:
        write_static(runtime=runtime, assets=missing_static, tenant=tenant)
    times: list[datetime] = []
    t = _floor(start, step)
    if t < start:
        t += step
    while t < end:
        times.append(t)
        t += step
    total = len(times)
    index = 0
    while index < total:
        batch_rows = 0
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            session.info["audit"] = False
            while index < total and batch_rows < BACKFILL_CHUNK_ROWS:
                at = times[index]
                entities = []
                for asset in assets:
                    stored = latest.get(asset.entity_id)
                    if stored is not None and at <= stored:
                        result.skipped += 1
                        continue
                    values = observe(asset, at, seed)
                    if values is None:
                        continue
                    entities.append(observation_entity(asset, values, at))
                if entities:
                    outcome = context_flows.write_entities(
                        runtime=runtime, session=session, tenant=tenant, entities=entities
                    )
                    result.entities += len(outcome.success)
                    result.rows += outcome.observations
                    batch_rows += outcome.observations
                    for error in outcome.errors:
                        log.warning("simulate: back-fill entity refused: %s", error)
                index += 1
                result.steps += 1
        if progress is not None:
            progress(index, total)
    result.seconds = time.perf_counter() - began
    return result


@dataclass
class RunResult:
    """What a live run sent."""

    ticks: int = 0
    readings: int = 0
    delivered: int = 0


def run(
    *,
    assets: Sequence[Asset],
    seed: int,
    publisher: Publisher,
    now: Callable[[], datetime],
    speed: float = 1.0,
    duration: timedelta | None = None,
    stop: threading.Event | None = None,
    on_tick: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """Emit live readings until `stop` is set or `duration` (wall time) has passed."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or threading.Event()
    result = RunResult()
    began = time.monotonic()
    limit = None if duration is None else duration.total_seconds()
    due = {a.entity_id: began for a in assets}
    while not stop.is_set():
        tick = time.monotonic()
        if limit is not None and tick - began >= limit:
            break
        at = now().replace(microsecond=0)
        readings: list[Reading] = []
        for asset in assets:
            if due[asset.entity_id] > tick:
                continue
            due[asset.entity_id] = tick + asset.interval / speed
            values = observe(asset, at, seed)
            if values is not None:
                readings.append(Reading(asset, values, at))
        if readings:
            result.readings += len(readings)
            result.delivered += publisher.publish(readings)
            result.ticks += 1
            if on_tick is not None:
                on_tick(result)
        wait = min(due.values()) - time.monotonic()
        if limit is not None:
            wait = min(wait, limit - (time.monotonic() - began))
        # Bounded waits: wake at least every second to notice `stop`.
        stop.wait(max(0.0, min(wait, 1.0)))
    return result
