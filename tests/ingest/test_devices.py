"""The device registry: registration, keys shown once and stored hashed, rotation, scope."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.auth.models import AuditLog
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.ingest.models import Device
from cityops.units import service as unit_service

from .conftest import API, BIEN_HOA, load_fixture


def test_a_device_is_registered_with_its_key_shown_once(
    client: TestClient,
    admin: dict[str, str],
    make_device: Callable[..., dict[str, Any]],
    runtime: Runtime,
    current: Callable[..., dict[str, Any]],
) -> None:
    created = make_device()
    key = created["key"]
    assert key.startswith("cdk_" + created["key_prefix"] + "_")
    assert created["entity_id"] == "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1"
    assert created["status"] == "offline"
    assert created["last_seen_at"] is None
    # The unit comes from the location.
    with unit_of_work(runtime.session_factory) as session:
        unit = unit_service.locate(session=session, **BIEN_HOA)
        row = session.scalars(select(Device).where(Device.id == created["id"])).one()
        audit = session.scalars(
            select(AuditLog).where(AuditLog.resource_type == "ingest_device")
        ).all()
    assert unit is not None
    assert created["unit_code"] == unit.code
    # Stored as a hash only, never in the audit log.
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert [a.action for a in audit] == ["create"]
    assert "key_hash" not in (audit[0].after or {})
    assert key not in str(audit[0].after)
    # Reads never show the key again.
    read = client.get(f"{API}/ingest/devices/{created['id']}", headers=admin)
    assert read.status_code == 200
    assert "key" not in read.json()
    assert "key_hash" not in read.json()
    listed = client.get(f"{API}/ingest/devices", headers=admin).json()
    assert listed["total"] == 1
    assert "key" not in listed["items"][0]
    # The entity is placed on the map before any data arrives.
    assert current(created["entity_id"])["location"]["value"]["coordinates"] == [106.84, 10.95]


def test_a_duplicate_device_id_is_a_conflict(
    client: TestClient, admin: dict[str, str], make_device: Callable[..., dict[str, Any]]
) -> None:
    make_device()
    again = client.post(
        f"{API}/ingest/devices", json=load_fixture("device_air.json"), headers=admin
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


def test_bad_attribute_maps_are_refused_with_field_errors(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = load_fixture("device_air.json")
    cases = [
        [{"key": "no2", "unit_code": "GQ", "from_unit": "ppm", "substance": "unobtainium"}],
        [{"key": "x", "unit_code": "GQ", "from_unit": "furlong"}],
        [{"key": "x", "min": 5, "max": 1}],
        [{"key": "ts"}],
        [{"key": "a", "attribute": "pm25"}, {"key": "b", "attribute": "pm25"}],
        [{"key": "level", "type": "text", "unit_code": "GQ"}],
    ]
    for attributes in cases:
        response = client.post(
            f"{API}/ingest/devices", json={**body, "attributes": attributes}, headers=admin
        )
        assert response.status_code == 422, (attributes, response.text)
        assert response.json()["errors"]
    unknown = client.post(
        f"{API}/ingest/devices", json={**body, "department_code": "NOPE"}, headers=admin
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "department_code"


def test_rotating_the_key_invalidates_the_old_one(
    client: TestClient, admin: dict[str, str], make_device: Callable[..., dict[str, Any]]
) -> None:
    created = make_device()
    old_key = created["key"]
    url = f"{API}/ingest/{created['device_id']}"
    assert client.post(url, json={"pm25": 10}, headers={"X-Device-Key": old_key}).status_code == 200
    rotated = client.post(f"{API}/ingest/devices/{created['id']}/rotate-key", headers=admin)
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    new_key = rotated.json()["key"]
    assert new_key != old_key
    refused = client.post(url, json={"pm25": 11}, headers={"X-Device-Key": old_key})
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert client.post(url, json={"pm25": 12}, headers={"X-Device-Key": new_key}).status_code == 200


def test_wrong_or_foreign_keys_are_refused(
    client: TestClient, make_device: Callable[..., dict[str, Any]]
) -> None:
    first = make_device()
    second = make_device(device_id="dn-bien-hoa-2")
    url = f"{API}/ingest/{first['device_id']}"
    for headers in (
        {"X-Device-Key": first["key"] + "x"},
        {"X-Device-Key": "cdk_000000000000_nothing"},
        {"X-Device-Key": "garbage"},
        # Another device's valid key does not open this device.
        {"X-Device-Key": second["key"]},
        {},
    ):
        assert client.post(url, json={"pm25": 1}, headers=headers).status_code == 401, headers


def test_update_and_delete(
    client: TestClient,
    admin: dict[str, str],
    make_device: Callable[..., dict[str, Any]],
    runtime: Runtime,
) -> None:
    created = make_device()
    # Moving the device re-derives its unit (Long Khánh is another commune).
    moved = client.patch(
        f"{API}/ingest/devices/{created['id']}",
        json={"lat": 10.93, "lon": 107.24, "interval_seconds": 120, "name": "Trạm đã dời"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    with unit_of_work(runtime.session_factory) as session:
        unit = unit_service.locate(session=session, lat=10.93, lon=107.24)
    assert unit is not None
    assert moved.json()["unit_code"] == unit.code != created["unit_code"]
    assert moved.json()["interval_seconds"] == 120
    cleared = client.patch(
        f"{API}/ingest/devices/{created['id']}", json={"attributes": None}, headers=admin
    )
    assert cleared.status_code == 422
    deleted = client.delete(f"{API}/ingest/devices/{created['id']}", headers=admin)
    assert deleted.status_code == 204
    gone = client.post(
        f"{API}/ingest/{created['device_id']}",
        json={"pm25": 1},
        headers={"X-Device-Key": created["key"]},
    )
    assert gone.status_code == 401
    assert client.get(f"{API}/ingest/devices/{created['id']}", headers=admin).status_code == 404


def test_only_ingest_admins_write_and_reads_are_scoped(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_device: Callable[..., dict[str, Any]],
) -> None:
    created = make_device()
    operator = login_as("operator")
    body = {**load_fixture("device_air.json"), "device_id": "other"}
    assert client.post(f"{API}/ingest/devices", json=body, headers=operator).status_code == 403
    assert (
        client.post(
            f"{API}/ingest/devices/{created['id']}/rotate-key", headers=operator
        ).status_code
        == 403
    )
    # The owning department sees it; another department does not.
    owner = login_as("department_officer", department_code="SNNMT")
    other = login_as("department_officer", department_code="SYT")
    assert client.get(f"{API}/ingest/devices", headers=owner).json()["total"] == 1
    assert client.get(f"{API}/ingest/devices", headers=other).json()["total"] == 0
    assert client.get(f"{API}/ingest/devices/{created['id']}", headers=other).status_code == 404
    # A unit officer of the device's commune sees it; one of another commune does not.
    here = login_as("unit_officer", unit_code=created["unit_code"])
    there = login_as(
        "unit_officer", unit_code="25210" if created["unit_code"] != "25210" else "25195"
    )
    assert client.get(f"{API}/ingest/devices", headers=here).json()["total"] == 1
    assert client.get(f"{API}/ingest/devices", headers=there).json()["total"] == 0
    assert client.get(f"{API}/ingest/devices").status_code == 401
