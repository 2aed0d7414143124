"""Database work of the ingest context: devices, their keys and states, and the import ledger.

Services flush, never commit; the caller (request, MQTT batch, job, command) owns the
transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, MutableMapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.errors import Conflict, Invalid
from cityops.core.security import Scope
from cityops.ingest.enums import DeviceStatus
from cityops.ingest.models import Device, ImportBatch
from cityops.ingest.schemas import DeviceCreate, DeviceUpdate
from cityops.units import service as unit_service

DEVICE_KEY_MARK = "cdk"
PREFIX_LENGTH = 12


# --- keys --------------------------------------------------------------------------------------


def key_digest(plaintext: str) -> str:
    """Return the SHA-256 of a device key, as hex (keys are high-entropy: no slow hash needed)."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """Return a fresh (public prefix, plaintext key) pair: `cdk_<prefix>_<secret>`."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    return prefix, f"{DEVICE_KEY_MARK}_{prefix}_{secrets.token_urlsafe(32)}"


def split_key(plaintext: str) -> str | None:
    """Return the public prefix of a device key, or None if the text is not one."""
    if len(plaintext) > 200:
        return None
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != DEVICE_KEY_MARK or len(parts[1]) != PREFIX_LENGTH:
        return None
    if not all(ch in "0123456789abcdef" for ch in parts[1]):
        return None
    return parts[1]


def key_matches(*, device: Device, key: str) -> bool:
    """Tell whether a key is this device's current key (constant-time comparison)."""
    return split_key(key) == device.key_prefix and hmac.compare_digest(
        key_digest(key), device.key_hash
    )


# --- devices -----------------------------------------------------------------------------------


def get(*, session: Session, device_pk: int) -> Device | None:
    """Return a device by its numeric id."""
    return session.get(Device, device_pk)


def get_by_device_id(*, session: Session, tenant: str, device_id: str) -> Device | None:
    """Return a device by tenant and device id."""
    return session.scalars(
        select(Device).where(Device.tenant == tenant, Device.device_id == device_id)
    ).one_or_none()


def get_by_key_prefix(*, session: Session, prefix: str) -> Device | None:
    """Return the device whose current key has this public prefix."""
    return session.scalars(select(Device).where(Device.key_prefix == prefix)).one_or_none()


def get_by_key(*, session: Session, key: str) -> Device | None:
    """Return the device a key belongs to, or None if the key is unknown, stale or malformed."""
    prefix = split_key(key)
    device = get_by_key_prefix(session=session, prefix=prefix) if prefix else None
    if device is None or not key_matches(device=device, key=key):
        return None
    return device


def get_many(
    *, session: Session, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Device]:
    """Return the devices named by (tenant, device id) pairs, in one query per tenant."""
    by_tenant: dict[str, set[str]] = {}
    for tenant, device_id in pairs:
        by_tenant.setdefault(tenant, set()).add(device_id)
    found: dict[tuple[str, str], Device] = {}
    for tenant, ids in by_tenant.items():
        rows = session.scalars(
            select(Device).where(Device.tenant == tenant, Device.device_id.in_(sorted(ids)))
        )
        for device in rows:
            found[(device.tenant, device.device_id)] = device
    return found


def get_all(
    *,
    session: Session,
    scope: Scope,
    tenant: str | None = None,
    status: str | None = None,
    unit_code: str | None = None,
    department_code: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Device], int]:
    """Return one page of the devices in a scope, matching the filters, and how many match."""
    conditions = [
        scope.unit_filter(Device.unit_code),
        scope.department_filter(Device.department_code),
    ]
    if tenant is not None:
        conditions.append(Device.tenant == tenant)
    if status is not None:
        conditions.append(Device.status == status)
    if unit_code is not None:
        conditions.append(Device.unit_code == unit_code)
    if department_code is not None:
        conditions.append(Device.department_code == department_code)
    if q:
        pattern = f"%{q.lower()}%"
        conditions.append(
            or_(
                func.lower(Device.device_id).like(pattern),
                func.lower(Device.name).like(pattern),
                func.lower(Device.entity_id).like(pattern),
            )
        )
    total = session.scalar(select(func.count()).select_from(Device).where(*conditions)) or 0
    rows = session.scalars(
        select(Device)
        .where(*conditions)
        .order_by(Device.tenant, Device.device_id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def _field_error(field: str, key: str, **params: Any) -> dict[str, Any]:
    return {"field": field, "in": "body", "key": key, "params": params}


def _resolve_owner(
    *,
    session: Session,
    department_code: str | None,
    unit_code: str | None,
    lat: float | None,
    lon: float | None,
    caches: MutableMapping[str, Any] | None,
) -> str | None:
    """Check the department and unit; derive the unit from the location when not given."""
    errors: list[dict[str, Any]] = []
    if department_code is not None and (
        unit_service.get_department(session=session, department_code=department_code) is None
    ):
        errors.append(
            _field_error(
                "department_code", "ingest.device.unknown_department", code=department_code
            )
        )
    if unit_code is not None:
        if unit_service.get(session=session, unit_code=unit_code) is None:
            errors.append(_field_error("unit_code", "ingest.device.unknown_unit", code=unit_code))
    elif lat is not None and lon is not None:
        unit = unit_service.locate(session=session, lat=lat, lon=lon, caches=caches)
        unit_code = unit.code if unit is not None else None
    if errors:
        raise Invalid("ingest.device.invalid", errors=errors)
    return unit_code


def create(
    *,
    session: Session,
    device_in: DeviceCreate,
    clock: Clock,
    caches: MutableMapping[str, Any] | None = None,
) -> tuple[Device, str]:
    """Create a device; return it and its key (the only time the key is available)."""
    if get_by_device_id(session=session, tenant=device_in.tenant, device_id=device_in.device_id):
        raise Conflict(
            "ingest.device.exists", tenant=device_in.tenant, device_id=device_in.device_id
        )
    unit_code = _resolve_owner(
        session=session,
        department_code=device_in.department_code,
        unit_code=device_in.unit_code,
        lat=device_in.lat,
        lon=device_in.lon,
        caches=caches,
    )
    now = clock.now()
    prefix, plaintext = new_key()
    device = Device(
        tenant=device_in.tenant,
        device_id=device_in.device_id,
        name=device_in.name,
        entity_type=device_in.entity_type,
        entity_id=device_in.entity_id
        or f"urn:ngsi-ld:{device_in.entity_type}:{device_in.device_id}",
        department_code=device_in.department_code,
        unit_code=unit_code,
        lat=device_in.lat,
        lon=device_in.lon,
        interval_seconds=device_in.interval_seconds,
        attributes=[
            spec.model_dump(mode="json", exclude_none=True) for spec in device_in.attributes
        ],
        status=DeviceStatus.OFFLINE,
        key_prefix=prefix,
        key_hash=key_digest(plaintext),
        key_created_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(device)
    session.flush()
    return device, plaintext


def update(
    *,
    session: Session,
    device: Device,
    device_in: DeviceUpdate,
    clock: Clock,
    caches: MutableMapping[str, Any] | None = None,
) -> Device:
    """Change a device; a new location re-derives the unit unless one is given."""
    changes = device_in.model_dump(exclude_unset=True)
    for required in ("name", "entity_type", "entity_id", "interval_seconds", "attributes"):
        if required in changes and changes[required] is None:
            raise Invalid(
                "ingest.device.invalid",
                errors=[_field_error(required, "ingest.device.required")],
            )
    lat = changes.get("lat", device.lat)
    lon = changes.get("lon", device.lon)
    if (lat is None) != (lon is None):
        raise Invalid(
            "ingest.device.invalid", errors=[_field_error("lat", "ingest.device.lat_lon_pair")]
        )
    moved = "lat" in changes or "lon" in changes
    # An explicit unit wins; otherwise a move re-derives the unit from the new location.
    unit_code = changes.get("unit_code", None if moved else device.unit_code)
    unit_code = _resolve_owner(
        session=session,
        department_code=changes.get("department_code", device.department_code),
        unit_code=unit_code,
        lat=lat,
        lon=lon,
        caches=caches,
    )
    if "attributes" in changes and device_in.attributes is not None:
        changes["attributes"] = [
            spec.model_dump(mode="json", exclude_none=True) for spec in device_in.attributes
        ]
    for field, value in changes.items():
        if field != "unit_code":
            setattr(device, field, value)
    device.unit_code = unit_code
    device.updated_at = clock.now()
    session.flush()
    return device


def delete(*, session: Session, device: Device) -> None:
    """Delete a device: its key stops working at once (its entity and history stay)."""
    session.delete(device)
    session.flush()


def rotate_key(*, session: Session, device: Device, clock: Clock) -> tuple[Device, str]:
    """Give a device a new key; the old one stops working at once. Return the new key."""
    prefix, plaintext = new_key()
    now = clock.now()
    device.key_prefix = prefix
    device.key_hash = key_digest(plaintext)
    device.key_created_at = now
    device.updated_at = now
    session.flush()
    return device, plaintext


def set_states(*, session: Session, states: Sequence[dict[str, Any]]) -> None:
    """Write devices' status, last-seen time and last error in one statement (not audited:
    these are operational facts, written by every ingest batch)."""
    if states:
        session.execute(sql_update(Device), list(states))


def get_silent_since(*, session: Session, now: datetime, floor: timedelta) -> list[Device]:
    """Return the devices online or unavailable but not seen for at least `floor`."""
    return list(
        session.scalars(
            select(Device)
            .where(
                Device.status.in_([DeviceStatus.ONLINE, DeviceStatus.UNAVAILABLE]),
                Device.last_seen_at < now - floor,
            )
            .order_by(Device.id)
        )
    )


# --- import ledger -----------------------------------------------------------------------------


def get_import_batches(*, session: Session, tenant: str, file_hash: str) -> set[int]:
    """Return the indexes of the batches of a file already imported."""
    return set(
        session.scalars(
            select(ImportBatch.batch_index).where(
                ImportBatch.tenant == tenant, ImportBatch.file_hash == file_hash
            )
        )
    )


def create_import_batch(
    *,
    session: Session,
    tenant: str,
    file_hash: str,
    batch_index: int,
    file_name: str,
    rows: int,
    stored: int,
    clock: Clock,
) -> ImportBatch:
    """Record that one batch of a file has been imported (in the batch's own transaction)."""
    batch = ImportBatch(
        tenant=tenant,
        file_hash=file_hash,
        batch_index=batch_index,
        file_name=file_name[:300],
        rows=rows,
        stored=stored,
        committed_at=clock.now(),
    )
    session.add(batch)
    session.flush()
    return batch
