"""API keys: shown once, hashed at rest, scoped, never beyond their creator, revocable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.auth.models import ApiKey
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

from .helpers import API, DEPT_A, UNIT_A, UNIT_B, assert_problem


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of an administrator."""
    return login_as("admin")


def _create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/api-keys", json={"name": "gateway", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_key_is_shown_once_and_works_in_both_headers(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    created = _create(client, admin, permissions=["user:read"], tenant="dongnai")
    key = created["key"]
    assert key.startswith("cok_")
    for headers in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}):
        me = client.get(f"{API}/auth/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["kind"] == "api_key"
        assert me.json()["permissions"] == ["user:read"]
        assert me.json()["tenant"] == "dongnai"
        assert client.get(f"{API}/users", headers=headers).status_code == 200
    listed = client.get(f"{API}/api-keys", headers=admin)
    assert listed.status_code == 200
    assert key not in listed.text
    assert key.split("_")[-1] not in listed.text
    assert "key" not in listed.json()["items"][0]
    assert "key_hash" not in listed.json()["items"][0]
    one = client.get(f"{API}/api-keys/{created['id']}", headers=admin)
    assert key not in one.text
    with unit_of_work(runtime.session_factory) as session:
        stored = session.scalars(select(ApiKey)).one()
        assert key not in (stored.key_hash, stored.prefix)


def test_revoked_key_stops_working_at_once(client: TestClient, admin: dict[str, str]) -> None:
    created = _create(client, admin, permissions=["user:read"])
    headers = {"X-API-Key": created["key"]}
    assert client.get(f"{API}/users", headers=headers).status_code == 200
    assert client.delete(f"{API}/api-keys/{created['id']}", headers=admin).status_code == 204
    body = assert_problem(client.get(f"{API}/users", headers=headers), 401)
    assert "thu hồi" in body["detail"]
    listed = client.get(f"{API}/api-keys", headers=admin).json()["items"]
    assert listed[0]["revoked_at"] is not None


def test_expired_key_is_refused(
    client: TestClient, admin: dict[str, str], clock: FrozenClock
) -> None:
    expires = (clock.now() + timedelta(days=1)).isoformat()
    headers = {"X-API-Key": _create(client, admin, expires_at=expires)["key"]}
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    clock.advance(timedelta(days=1))
    assert_problem(client.get(f"{API}/auth/me", headers=headers), 401)


@pytest.mark.parametrize(
    "key",
    ["garbage", "cok_", "cok_000000000000_nope", "cok_" + "a" * 12 + "_" + "b" * 500, "\xe9t\xe9"],
)
def test_garbage_keys_are_401(client: TestClient, admin: dict[str, str], key: str) -> None:
    # Sent as raw latin-1 bytes: HTTP headers may carry any octet, and none may cause a 500.
    _create(client, admin)
    headers = {"Authorization": f"ApiKey {key}".encode("latin-1")}
    assert_problem(client.get(f"{API}/auth/me", headers=headers), 401)


def test_a_key_with_a_wrong_secret_but_a_real_prefix_is_refused(
    client: TestClient, admin: dict[str, str]
) -> None:
    key = _create(client, admin)["key"]
    forged = key[: key.rindex("_") + 1] + "x" * 43
    assert_problem(client.get(f"{API}/auth/me", headers={"X-API-Key": forged}), 401)


def test_key_permissions_never_exceed_the_creator(
    client: TestClient, admin: dict[str, str], count: Callable[..., int]
) -> None:
    key_admin = {"X-API-Key": _create(client, admin, permissions=["apikey:admin"])["key"]}
    # This key may manage keys, but may not mint one holding more than it has.
    response = client.post(
        f"{API}/api-keys", json={"name": "x", "permissions": ["user:admin"]}, headers=key_admin
    )
    assert_problem(response, 403)
    assert count(ApiKey) == 1
    ok = client.post(
        f"{API}/api-keys", json={"name": "y", "permissions": ["apikey:admin"]}, headers=key_admin
    )
    assert ok.status_code == 201


def test_key_loses_what_its_creator_loses(
    client: TestClient,
    admin: dict[str, str],
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
    token_for: Callable[..., dict[str, Any]],
    user_id: Callable[[str], int],
) -> None:
    creator = make_user("admin")
    headers = {"Authorization": f"Bearer {token_for(creator)['access_token']}"}
    key = {"X-API-Key": _create(client, headers, permissions=["user:read"])["key"]}
    assert client.get(f"{API}/users", headers=key).status_code == 200
    demoted = client.patch(
        f"{API}/users/{user_id(creator)}", json={"role": "viewer"}, headers=admin
    )
    assert demoted.status_code == 200
    assert_problem(client.get(f"{API}/users", headers=key), 403)


def test_scoped_key_sees_only_its_unit(
    client: TestClient, admin: dict[str, str], make_user: Callable[..., str]
) -> None:
    inside = make_user("unit_officer", unit_code=UNIT_A)
    outside = make_user("unit_officer", unit_code=UNIT_B)
    key = _create(client, admin, permissions=["user:read"], unit_code=UNIT_A)["key"]
    names = [
        u["username"]
        for u in client.get(f"{API}/users", headers={"X-API-Key": key}).json()["items"]
    ]
    assert inside in names
    assert outside not in names


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "permissions": ["root"]}, "permissions.0"),
        ({"name": "x", "unit_code": "99999"}, "unit_code"),
        ({"name": "x", "department_code": "NOPE"}, "department_code"),
        ({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"name": "x", "tenant": "a b"}, "tenant"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ],
)
def test_invalid_key_requests_are_422(
    client: TestClient,
    admin: dict[str, str],
    count: Callable[..., int],
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post(f"{API}/api-keys", json=body, headers=admin)
    errors = assert_problem(response, 422)["errors"]
    assert field in [e["field"] for e in errors]
    assert count(ApiKey) == 0


def test_department_scoped_key(client: TestClient, admin: dict[str, str]) -> None:
    key = _create(client, admin, department_code=DEPT_A)["key"]
    scope = client.get(f"{API}/auth/me", headers={"X-API-Key": key}).json()["scope"]
    assert scope == {"unit_codes": None, "department_code": DEPT_A}


def test_last_used_is_written_at_most_once_a_minute(
    client: TestClient, admin: dict[str, str], clock: FrozenClock, runtime: Runtime
) -> None:
    created = _create(client, admin)
    headers = {"X-API-Key": created["key"]}

    def last_used() -> Any:
        with unit_of_work(runtime.session_factory) as session:
            return session.get(ApiKey, created["id"]).last_used_at  # type: ignore[union-attr]

    client.get(f"{API}/auth/me", headers=headers)
    first = last_used()
    assert first == clock.now()
    clock.advance(timedelta(seconds=30))
    client.get(f"{API}/auth/me", headers=headers)
    assert last_used() == first
    clock.advance(timedelta(seconds=31))
    client.get(f"{API}/auth/me", headers=headers)
    assert last_used() == clock.now()


def test_unknown_key_id_is_404_and_huge_ids_422(client: TestClient, admin: dict[str, str]) -> None:
    assert_problem(client.delete(f"{API}/api-keys/999", headers=admin), 404)
    assert_problem(client.get(f"{API}/api-keys/99999999999999999999", headers=admin), 422)
