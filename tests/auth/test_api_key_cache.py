"""The short-lived API-key principal cache: fewer statements per request, revocation honoured."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from cityops.auth.flows import api_key_cache
from cityops.auth.models import ApiKey
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

from .helpers import API, assert_problem


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of an administrator."""
    return login_as("admin")


def _create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/api-keys", json={"name": "gateway", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@contextmanager
def _statements(runtime: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)


def test_a_repeated_key_is_not_looked_up_again(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    headers = {"X-API-Key": _create(client, admin, permissions=["user:read"])["key"]}
    with _statements(runtime) as first:
        assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    with _statements(runtime) as second:
        me = client.get(f"{API}/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["permissions"] == ["user:read"]
    assert any("api_key" in s for s in first)
    assert not any("api_key" in s for s in second)


def test_a_key_revoked_in_this_process_is_refused_even_when_cached(
    client: TestClient, admin: dict[str, str]
) -> None:
    created = _create(client, admin, permissions=["user:read"])
    headers = {"X-API-Key": created["key"]}
    for _ in range(3):
        assert client.get(f"{API}/users", headers=headers).status_code == 200
    assert client.delete(f"{API}/api-keys/{created['id']}", headers=admin).status_code == 204
    assert_problem(client.get(f"{API}/users", headers=headers), 401)


def test_a_key_revoked_by_another_process_is_refused_after_the_ttl(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    api_key_cache(runtime).ttl = 0.2
    created = _create(client, admin, permissions=["user:read"])
    headers = {"X-API-Key": created["key"]}
    assert client.get(f"{API}/users", headers=headers).status_code == 200
    # A plain UPDATE, as another worker process would commit it: no ORM event here.
    with unit_of_work(runtime.session_factory) as session:
        session.execute(
            update(ApiKey).where(ApiKey.id == created["id"]).values(revoked_at=runtime.clock.now())
        )
    assert client.get(f"{API}/users", headers=headers).status_code == 200
    time.sleep(0.3)
    assert_problem(client.get(f"{API}/users", headers=headers), 401)


def test_a_wrong_secret_is_refused_while_the_real_key_is_cached(
    client: TestClient, admin: dict[str, str]
) -> None:
    key = _create(client, admin)["key"]
    assert client.get(f"{API}/auth/me", headers={"X-API-Key": key}).status_code == 200
    forged = key[: key.rindex("_") + 1] + "x" * 43
    assert_problem(client.get(f"{API}/auth/me", headers={"X-API-Key": forged}), 401)
