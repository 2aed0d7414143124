"""Audit log: every write of an audited table, logins and logouts; nothing for failed requests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from fastapi.testclient import TestClient

from cityops.auth import service as auth_service
from cityops.auth.enums import Role
from cityops.auth.flows import json_safe
from cityops.auth.models import AuditLog, User
from cityops.auth.schemas import UserCreate
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

from .helpers import API, PASSWORD, UNIT_A, assert_problem


def test_create_update_delete_are_recorded_with_actor_and_changes(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[AuditLog]],
) -> None:
    admin = login_as("admin", username="chief")
    created = client.post(
        f"{API}/users",
        json={
            "username": "tran.b",
            "password": "Bien-Hoa-2027",
            "full_name": "Trần B",
            "role": "unit_officer",
            "unit_code": UNIT_A,
        },
        headers={**admin, "X-Request-ID": "req-create-1"},
    ).json()
    uid = str(created["id"])
    client.patch(f"{API}/users/{uid}", json={"full_name": "Trần Văn B"}, headers=admin)
    client.delete(f"{API}/users/{uid}", headers=admin)
    rows = audit_rows(resource_type="auth_user", resource_id=uid)
    assert [r.action for r in rows] == ["create", "update", "update"]
    create, rename, deactivate = rows
    assert {r.actor_name for r in rows} == {"chief"}
    assert {r.actor_kind for r in rows} == {"user"}
    assert create.via == "bearer"
    assert create.request_id == "req-create-1"
    assert create.unit_code == UNIT_A
    assert create.before is None
    assert create.after is not None
    assert create.after["username"] == "tran.b"
    assert "password_hash" not in create.after
    assert rename.before == {"id": created["id"], "full_name": "Trần B"}
    assert rename.after == {"id": created["id"], "full_name": "Trần Văn B"}
    assert deactivate.before is not None
    assert deactivate.before["is_active"] is True
    assert deactivate.after is not None
    assert deactivate.after["is_active"] is False


def test_password_changes_are_audited_without_the_hash(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[AuditLog]],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
    clock: FrozenClock,
) -> None:
    admin = login_as("admin")
    uid = user_id(make_user("viewer"))
    clock.advance(timedelta(minutes=1))
    client.patch(f"{API}/users/{uid}", json={"password": "Long-Khanh-2027"}, headers=admin)
    update = audit_rows(resource_id=str(uid), action="update")[-1]
    assert update.after is not None
    assert set(update.after) == {"id", "password_changed_at", "updated_at"}
    assert "hash" not in str(update.before) + str(update.after)


def test_api_key_creation_and_revocation_are_audited_without_secret(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[AuditLog]],
) -> None:
    admin = login_as("admin")
    created = client.post(f"{API}/api-keys", json={"name": "gw"}, headers=admin).json()
    client.delete(f"{API}/api-keys/{created['id']}", headers=admin)
    rows = audit_rows(resource_type="auth_api_key")
    assert [r.action for r in rows] == ["create", "update"]
    assert created["key"].split("_")[-1] not in str([r.after for r in rows])
    assert rows[0].after is not None
    assert "key_hash" not in rows[0].after


def test_logins_failed_logins_and_logouts_are_recorded(
    client: TestClient,
    make_user: Callable[..., str],
    audit_rows: Callable[..., list[AuditLog]],
) -> None:
    username = make_user("viewer")
    client.post(f"{API}/auth/token", data={"username": username, "password": "Wrong-pass-1"})
    client.post(f"{API}/auth/token", data={"username": "ghost", "password": "Wrong-pass-1"})
    token = client.post(
        f"{API}/auth/token", data={"username": username, "password": PASSWORD}
    ).json()["access_token"]
    client.post(f"{API}/auth/logout", headers={"Authorization": f"Bearer {token}"})
    failed = audit_rows(action="login_failed")
    assert [(r.actor_name, r.actor_kind, (r.after or {})["reason"]) for r in failed] == [
        (username, "anonymous", "wrong_password"),
        ("ghost", "anonymous", "unknown_user"),
    ]
    assert failed[0].ip == "testclient"
    login = audit_rows(action="login")[-1]
    assert (login.actor_name, login.actor_kind, login.via) == (username, "user", "bearer")
    logout = audit_rows(action="logout")[-1]
    assert logout.actor_name == username
    assert logout.at is not None


def test_a_failed_request_writes_no_audit_row(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    count: Callable[..., int],
    user_id: Callable[[str], int],
) -> None:
    admin = login_as("admin", username="only-admin")
    before = count(AuditLog)
    # The demotion is flushed (and its audit row written) before the last-admin check fails.
    response = client.patch(
        f"{API}/users/{user_id('only-admin')}",
        json={"role": "viewer", "full_name": "X"},
        headers=admin,
    )
    assert_problem(response, 409)
    duplicate = client.post(
        f"{API}/users",
        json={
            "username": "only-admin",
            "password": "Bien-Hoa-2027",
            "full_name": "Y",
            "role": "viewer",
        },
        headers=admin,
    )
    assert_problem(duplicate, 409)
    assert count(AuditLog) == before
    assert count(User, full_name="X") == 0


def test_seed_writes_no_audit_rows(count: Callable[..., int]) -> None:
    assert count(AuditLog) == 0


def test_cli_writes_are_attributed_to_the_system(
    runtime: Runtime, audit_rows: Callable[..., list[AuditLog]]
) -> None:
    from cityops.core.security import SYSTEM_PRINCIPAL

    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        auth_service.create_user(
            session=session,
            user_in=UserCreate(
                username="cli-made", password="Bien-Hoa-2027", full_name="CLI", role=Role.VIEWER
            ),
            clock=runtime.clock,
            settings=runtime.settings,
        )
    row = audit_rows(action="create")[-1]
    assert (row.actor_kind, row.actor_name, row.actor_id, row.via) == (
        "system",
        "system",
        None,
        "cli",
    )


def test_audit_api_filters_newest_first(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
    clock: FrozenClock,
) -> None:
    admin = login_as("admin", username="boss")
    start = clock.now()
    clock.advance(timedelta(minutes=5))
    client.post(
        f"{API}/users",
        json={"username": "later", "password": "Bien-Hoa-2027", "full_name": "L", "role": "viewer"},
        headers=admin,
    )

    def entries(**params: Any) -> list[dict[str, Any]]:
        response = client.get(f"{API}/audit", params=params, headers=admin)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    everything = entries()
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)
    assert [e["action"] for e in entries(actor="boss")] == ["create", "login"]
    assert {e["resource_type"] for e in entries(action="create")} == {"auth_user"}
    assert len(entries(action="login")) == 1
    since = (start + timedelta(minutes=1)).isoformat()
    assert [e["after"]["username"] for e in entries(since=since)] == ["later"]
    assert all(
        e["action"] != "create" or e["after"]["username"] != "later" for e in entries(until=since)
    )
    later_id = entries(since=since)[0]["resource_id"]
    assert len(entries(resource_type="auth_user", resource_id=later_id)) == 1
    assert_problem(client.get(f"{API}/audit", params={"since": "yesterday"}, headers=admin), 422)
    assert_problem(
        client.get(f"{API}/audit", params={"since": "2026-01-01T00:00:00"}, headers=admin), 422
    )


def test_the_audit_log_cannot_be_modified_through_the_api(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    admin = login_as("admin")
    assert client.post(f"{API}/audit", json={}, headers=admin).status_code == 405
    assert client.delete(f"{API}/audit", headers=admin).status_code == 405
    assert client.patch(f"{API}/audit/1", json={}, headers=admin).status_code == 404


class _Colour(Enum):
    RED = "red"


def test_json_safe_turns_values_into_json() -> None:
    moment = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert json_safe(
        {
            "at": moment,
            "d": date(2026, 1, 2),
            "n": Decimal("1.50"),
            "c": _Colour.RED,
            "s": {2, 1},
            "t": (1, "a"),
            "b": b"\x01",
            "f": float("nan"),
            3: None,
        }
    ) == {
        "at": "2026-01-02T03:04:00+00:00",
        "d": "2026-01-02",
        "n": "1.50",
        "c": "red",
        "s": [1, 2],
        "t": [1, "a"],
        "b": "01",
        "f": "nan",
        "3": None,
    }


def test_a_unit_edit_is_logged_under_that_unit(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    officer = login_as("unit_officer", unit_code=UNIT_A)
    response = client.patch(
        f"{API}/units/{UNIT_A}", json={"contact": {"phone": "0251 3822 111"}}, headers=officer
    )
    assert response.status_code == 200, response.text
    admin = login_as("admin")
    entries = client.get(
        f"{API}/audit", params={"resource_type": "admin_unit"}, headers=admin
    ).json()["items"]
    assert entries[0]["resource_id"] == UNIT_A
    assert entries[0]["unit_code"] == UNIT_A
    assert entries[0]["after"]["contact"] == {"phone": "0251 3822 111"}
