"""Orchestration of ingest: readings of devices → the context store, device states and events,
device provisioning and device health.

Every function here works inside the caller's transaction (request, MQTT batch, job, import
batch) and publishes its events after that transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cityops.auth import service as auth_service
from cityops.auth.enums import role_permissions
from cityops.context import flows as context_flows
from cityops.core.errors import Invalid
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import Permission
from cityops.ingest import readings as rd
from cityops.ingest import service
from cityops.ingest.enums import DeviceStatus, IngestEvent, Refusal
from cityops.ingest.metrics import metrics_of
from cityops.ingest.models import Device
from cityops.ingest.schemas import DeviceCreate, DeviceUpdate

log = logging.getLogger(__name__)

# last_seen_at is rewritten at most this often for a device that stays online, so a busy
# device does not turn every batch into a row update; offline detection works at 2× interval.
MAX_TOUCH_INTERVAL = timedelta(seconds=60)
# The health job looks only at devices silent at least this long (2× the smallest interval).
HEALTH_FLOOR = timedelta(seconds=20)
HEALTH_JOB = "ingest.device_health"
HEALTH_EVERY_SECONDS = 30.0


@dataclass(slots=True)
class DeviceReadings:
    """The readings one device sent in one message or request, and what became of them."""

    device: Device
    readings: Sequence[Any]
    outcomes: list[rd.ReadingOutcome] = field(default_factory=list)

    @property
    def stored_values(self) -> int:
        """How many values were stored."""
        return sum(len(o.stored) for o in self.outcomes)

    @property
    def refused_values(self) -> int:
        """How many values (or whole readings) were refused."""
        return sum(len(o.refused) for o in self.outcomes)


def compiled_attributes(runtime: Runtime, device: Device) -> dict[str, rd.CompiledAttribute]:
    """Return a device's attribute map, compiled (cached until the device changes)."""
    return rd.compiled_for(
        device_pk=device.id,
        version=device.updated_at,
        specs=device.attributes,
        caches=runtime.caches,
    )


def ingest(
    *, runtime: Runtime, session: Session, items: Sequence[DeviceReadings], transport: str
) -> None:
    """Store the valid values of every item in one write per tenant; refuse the rest.

    Fills each item's `outcomes`, updates the devices' states and queues their events. A
    reading with nothing valid changes nothing in the context store.
    """
    now = runtime.clock.now()
    by_tenant: dict[str, list[rd.ReadingOutcome]] = {}
    for item in items:
        attributes = compiled_attributes(runtime, item.device)
        item.outcomes = [
            rd.normalize(
                reading=reading,
                index=index,
                entity_id=item.device.entity_id,
                entity_type=item.device.entity_type,
                attributes=attributes,
                now=now,
            )
            for index, reading in enumerate(item.readings)
        ]
        by_tenant.setdefault(item.device.tenant, []).extend(
            o for o in item.outcomes if o.fragment is not None
        )
    for tenant, outcomes in by_tenant.items():
        if outcomes:
            _write(runtime=runtime, session=session, tenant=tenant, outcomes=outcomes)
    _update_states(runtime=runtime, session=session, items=items, now=now)
    metrics = metrics_of(runtime)
    # Summed over the batch: one counter update instead of one per device message.
    stored_readings = stored_values = 0
    for item in items:
        for outcome in item.outcomes:
            if outcome.stored:
                stored_readings += 1
                stored_values += len(outcome.stored)
            for refused in outcome.refused:
                metrics.refuse(transport, refused.reason.value)
    if stored_readings:
        metrics.stored_readings.labels(transport).inc(stored_readings)
        metrics.stored_values.labels(transport).inc(stored_values)


def _write(
    *, runtime: Runtime, session: Session, tenant: str, outcomes: list[rd.ReadingOutcome]
) -> None:
    written = [o for o in outcomes if o.fragment is not None]
    result = context_flows.write_entities(
        runtime=runtime,
        session=session,
        tenant=tenant,
        entities=[o.fragment for o in written if o.fragment is not None],
        mode="upsert",
    )
    # By position: of several readings of one device in a batch, only the refused ones fail.
    for index, error in result.failed.items():
        outcome = written[index]
        detail = error.get("error") or {}
        entity_id = str((outcome.fragment or {}).get("id"))
        log.warning("context store refused a reading", extra={"entity_id": entity_id})
        outcome.refuse_all(
            Refusal.STORE_ERROR, detail=str(detail.get("detail") or detail.get("title") or "")
        )


def _touch_due(device: Device, now: datetime) -> bool:
    if device.last_seen_at is None:
        return True
    every = min(MAX_TOUCH_INTERVAL, timedelta(seconds=device.interval_seconds / 10))
    return now - device.last_seen_at >= every


def _error_text(runtime: Runtime, refused: rd.Refused) -> str:
    message = runtime.translate(
        refused.message_key, "en", field=refused.key or "", **refused.params
    )
    return (f"{refused.key}: {message}" if refused.key else message)[:500]


def _update_states(
    *, runtime: Runtime, session: Session, items: Sequence[DeviceReadings], now: datetime
) -> None:
    grouped: dict[int, tuple[Device, list[rd.ReadingOutcome]]] = {}
    for item in items:
        grouped.setdefault(item.device.id, (item.device, []))[1].extend(item.outcomes)
    states: list[dict[str, Any]] = []
    for device, outcomes in grouped.values():
        if not outcomes:
            continue
        stored = any(o.stored for o in outcomes)
        refusals = [r for o in outcomes for r in o.refused]
        status = DeviceStatus.ONLINE if stored else DeviceStatus.UNAVAILABLE
        error = _error_text(runtime, refusals[-1]) if refusals else None
        changed = status != device.status
        state: dict[str, Any] = {}
        if changed or _touch_due(device, now):
            state.update(status=status, last_seen_at=now)
        if error is not None and (error != device.last_error or changed or state):
            state.update(last_error=error, last_error_at=now)
        if not state:
            continue
        states.append({"id": device.id, **state})
        if changed:
            event_type = IngestEvent.DEVICE_ONLINE if stored else IngestEvent.DEVICE_UNAVAILABLE
            _queue_event(runtime, session, device, event_type, now, previous=device.status)
    if states:
        service.set_states(session=session, states=states)
        # The rows were written by one statement: reload them if read again.
        for device, _outcomes in grouped.values():
            if device in session:
                session.expire(device)


def _queue_event(
    runtime: Runtime,
    session: Session,
    device: Device,
    event_type: IngestEvent,
    now: datetime,
    *,
    previous: str,
) -> None:
    data = {
        "tenant": device.tenant,
        "device_id": device.device_id,
        "entity_id": device.entity_id,
        "entity_type": device.entity_type,
        "unit_code": device.unit_code,
        "department_code": device.department_code,
        "previous": previous,
        "status": _STATUS_OF_EVENT[event_type],
        "at": now.isoformat(),
    }
    runtime.bus.publish_after_commit(session, Event(type=str(event_type), data=data, at=now))


_STATUS_OF_EVENT = {
    IngestEvent.DEVICE_ONLINE: DeviceStatus.ONLINE.value,
    IngestEvent.DEVICE_OFFLINE: DeviceStatus.OFFLINE.value,
    IngestEvent.DEVICE_UNAVAILABLE: DeviceStatus.UNAVAILABLE.value,
}


# --- gateway keys --------------------------------------------------------------------------------


def gateway_key_allows(*, runtime: Runtime, session: Session, key: str, device: Device) -> bool:
    """Tell whether an API key may send readings for a device: it holds `context:write`, is
    live, its tenant (if any) is the device's, and its scope covers the device."""
    prefix = auth_service.split_api_key(key) if len(key) <= 200 else None
    row = auth_service.get_api_key_by_prefix(session=session, prefix=prefix) if prefix else None
    if row is None or not auth_service.digest_matches(key, row.key_hash):
        return False
    now = runtime.clock.now()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return False
    permissions = frozenset(row.permissions)
    if row.created_by is not None:
        # A key never does more than its creator may do today (as for requests).
        creator = auth_service.get(session=session, user_id=row.created_by)
        permissions &= (
            role_permissions(creator.role) if creator and creator.is_active else frozenset()
        )
    if str(Permission.CONTEXT_WRITE) not in permissions:
        return False
    if row.tenant is not None and row.tenant != device.tenant:
        return False
    scope = auth_service.resolve_scope(
        session=session,
        unit_code=row.unit_code,
        area_code=None,
        department_code=row.department_code,
    )
    return scope.covers(unit_code=device.unit_code, department_code=device.department_code)


# --- provisioning --------------------------------------------------------------------------------


def _provision_entity(*, runtime: Runtime, session: Session, device: Device) -> None:
    """Give the device's entity its type and fixed location, so it is on the map before data."""
    if device.lat is None or device.lon is None:
        return
    fragment = {
        "id": device.entity_id,
        "type": device.entity_type,
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [device.lon, device.lat]},
        },
    }
    result = context_flows.write_entities(
        runtime=runtime, session=session, tenant=device.tenant, entities=[fragment], mode="upsert"
    )
    if result.errors:
        detail = (result.errors[0].get("error") or {}).get("detail") or ""
        raise Invalid(
            "ingest.device.entity_refused",
            errors=[
                {
                    "field": "entity_id",
                    "in": "body",
                    "key": "ingest.device.entity_refused",
                    "params": {"detail": detail},
                }
            ],
        )


def create_device(
    *, runtime: Runtime, session: Session, device_in: DeviceCreate
) -> tuple[Device, str]:
    """Create a device and place its entity; return the device and its key (shown once)."""
    device, key = service.create(
        session=session, device_in=device_in, clock=runtime.clock, caches=runtime.caches
    )
    _provision_entity(runtime=runtime, session=session, device=device)
    return device, key


def update_device(
    *, runtime: Runtime, session: Session, device: Device, device_in: DeviceUpdate
) -> Device:
    """Change a device; a new location or entity is placed in the context store."""
    before = (device.entity_id, device.entity_type, device.lat, device.lon)
    device = service.update(
        session=session,
        device=device,
        device_in=device_in,
        clock=runtime.clock,
        caches=runtime.caches,
    )
    if (device.entity_id, device.entity_type, device.lat, device.lon) != before:
        _provision_entity(runtime=runtime, session=session, device=device)
    return device


# --- health --------------------------------------------------------------------------------------


def check_device_health(*, runtime: Runtime, session: Session) -> list[Device]:
    """Mark devices silent for more than twice their reporting interval offline; return them."""
    now = runtime.clock.now()
    silent = [
        device
        for device in service.get_silent_since(session=session, now=now, floor=HEALTH_FLOOR)
        if device.last_seen_at is not None
        and now - device.last_seen_at > timedelta(seconds=2 * device.interval_seconds)
    ]
    if not silent:
        return []
    service.set_states(
        session=session,
        states=[{"id": device.id, "status": DeviceStatus.OFFLINE} for device in silent],
    )
    for device in silent:
        _queue_event(
            runtime, session, device, IngestEvent.DEVICE_OFFLINE, now, previous=device.status
        )
        session.expire(device)
    return silent
