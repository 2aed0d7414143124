"""Users API: create with role, scope and password rules; list, read, update, deactivate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.auth import flows
from cityops.auth import service as auth_service
from cityops.auth.models import User
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL

from .helpers import API, AREA, DEPT_A, DEPT_B, PASSWORD, PROVINCE, UNIT_A, UNIT_B, assert_problem


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of an administrator."""
    return login_as("admin", username="root-admin")


def _new(**fields: Any) -> dict[str, Any]:
    return {
        "username": "nguyen.van.a",
        "password": "Bien-Hoa-2027",
        "full_name": "Nguyễn Văn A",
        "role": "viewer",
        **fields,
    }


def test_create_user_and_read_it_back(
    client: TestClient, admin: dict[str, str], token_for: Callable[..., dict[str, Any]]
) -> None:
    response = client.post(
        f"{API}/users",
        json=_new(role="unit_officer", unit_code=UNIT_A, email="a@dongnai.gov.vn"),
        headers=admin,
    )
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["username"] == "nguyen.van.a"
    assert user["unit_code"] == UNIT_A
    assert "Bien-Hoa-2027" not in response.text
    assert "password_hash" not in user
    read = client.get(f"{API}/users/{user['id']}", headers=admin)
    assert read.json() == user
    token = token_for("nguyen.van.a", "Bien-Hoa-2027")["access_token"]
    me = client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["permissions"] == [
        "alert:read",
        "citizen:handle",
        "context:read",
        "egov:read",
        "incident:read",
        "incident:work",
        "kpi:read",
        "rule:read",
        "unit:update",
    ]
    assert me["scope"]["department_code"] is None
    assert UNIT_A in me["scope"]["unit_codes"]


def test_unit_scope_is_the_subtree_and_area_scope_its_members(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
    token_for: Callable[..., dict[str, Any]],
    admin: dict[str, str],
) -> None:
    province = client.get(f"{API}/auth/me", headers=login_as("leader", unit_code=PROVINCE))
    assert {UNIT_A, UNIT_B, PROVINCE} <= set(province.json()["scope"]["unit_codes"])
    client.post(f"{API}/users", json=_new(role="operator", area_code=AREA), headers=admin)
    token = token_for("nguyen.van.a", "Bien-Hoa-2027")["access_token"]
    area = client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert len(area["scope"]["unit_codes"]) == 10
    assert UNIT_A not in area["scope"]["unit_codes"]


def test_duplicate_username_is_409(client: TestClient, admin: dict[str, str]) -> None:
    assert client.post(f"{API}/users", json=_new(), headers=admin).status_code == 201
    again = client.post(f"{API}/users", json=_new(username="Nguyen.Van.A"), headers=admin)
    body = assert_problem(again, 409)
    assert "nguyen.van.a" in body["detail"]


@pytest.mark.parametrize(
    ("password", "vi", "en"),
    [
        ("Short-1", "ít nhất 10 ký tự", "at least 10 characters"),
        ("only-letters-here", "cả chữ cái và chữ số", "both letters and digits"),
        ("1234567890123", "cả chữ cái và chữ số", "both letters and digits"),
        ("xnguyen.van.a1", "không được chứa tên đăng nhập", "must not contain the username"),
        ("Password123", "quá phổ biến", "too common"),
        ("matkhau123", "quá phổ biến", "too common"),
    ],
)
def test_password_rules_in_both_languages(
    client: TestClient,
    admin: dict[str, str],
    count: Callable[..., int],
    password: str,
    vi: str,
    en: str,
) -> None:
    before = count(User)
    response = client.post(f"{API}/users", json=_new(password=password), headers=admin)
    errors = assert_problem(response, 422)["errors"]
    assert any(e["field"] == "password" and vi in e["message"] for e in errors)
    english = client.post(
        f"{API}/users", json=_new(password=password), headers={**admin, "Accept-Language": "en"}
    )
    assert any(en in e["message"] for e in english.json()["errors"])
    assert count(User) == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"role": "unit_officer"}, "unit_code"),
        ({"role": "department_officer", "unit_code": UNIT_A}, "department_code"),
        ({"role": "viewer", "unit_code": "00000"}, "unit_code"),
        ({"role": "viewer", "department_code": "NOPE"}, "department_code"),
        ({"role": "viewer", "area_code": "nowhere"}, "area_code"),
        ({"role": "operator", "unit_code": UNIT_A, "area_code": AREA}, "area_code"),
        ({"role": "emperor"}, "role"),
        ({"username": "a b"}, "username"),
        ({"username": "ab"}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"full_name": "x" * 201}, "full_name"),
        ({"is_admin": True}, "is_admin"),
    ],
)
def test_invalid_users_are_422_naming_the_field(
    client: TestClient,
    admin: dict[str, str],
    count: Callable[..., int],
    fields: dict[str, Any],
    field: str,
) -> None:
    before = count(User)
    response = client.post(f"{API}/users", json=_new(**fields), headers=admin)
    errors = assert_problem(response, 422)["errors"]
    assert field in [e["field"] for e in errors]
    assert count(User) == before


def test_list_filters_and_pages(
    client: TestClient, admin: dict[str, str], make_user: Callable[..., str]
) -> None:
    make_user("unit_officer", unit_code=UNIT_A, username="phuong-a")
    make_user("unit_officer", unit_code=UNIT_B, username="phuong-b")
    make_user("department_officer", department_code=DEPT_A, username="so-y-te")
    make_user("department_officer", department_code=DEPT_B, username="so-xay-dung")

    def names(**params: Any) -> list[str]:
        response = client.get(f"{API}/users", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [u["username"] for u in response.json()["items"]]

    assert names(role="unit_officer") == ["phuong-a", "phuong-b"]
    assert names(unit=UNIT_A) == ["phuong-a"]
    assert set(names(unit=PROVINCE)) == {"phuong-a", "phuong-b"}
    assert names(department=DEPT_A) == ["so-y-te"]
    assert names(q="XAY") == ["so-xay-dung"]
    page = client.get(f"{API}/users", params={"limit": 2, "offset": 1}, headers=admin).json()
    assert page["total"] == 5
    assert page["limit"] == 2
    assert page["offset"] == 1
    assert len(page["items"]) == 2
    assert_problem(client.get(f"{API}/users", params={"limit": 0}, headers=admin), 422)
    assert_problem(client.get(f"{API}/users", params={"role": "x"}, headers=admin), 422)


def test_update_user_role_scope_and_profile(
    client: TestClient,
    admin: dict[str, str],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
) -> None:
    uid = user_id(make_user("viewer"))
    response = client.patch(
        f"{API}/users/{uid}",
        json={
            "role": "department_officer",
            "department_code": DEPT_A,
            "full_name": "Trần Thị B",
            "language": "en",
        },
        headers=admin,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["role"], body["department_code"], body["full_name"], body["language"]) == (
        "department_officer",
        DEPT_A,
        "Trần Thị B",
        "en",
    )
    cleared = client.patch(f"{API}/users/{uid}", json={"department_code": None}, headers=admin)
    assert assert_problem(cleared, 422)["errors"][0]["field"] == "department_code"


def test_admin_password_reset_ends_the_users_sessions(
    client: TestClient,
    admin: dict[str, str],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
    token_for: Callable[..., dict[str, Any]],
) -> None:
    username = make_user("viewer")
    headers = {"Authorization": f"Bearer {token_for(username)['access_token']}"}
    weak = client.patch(f"{API}/users/{user_id(username)}", json={"password": "abc"}, headers=admin)
    assert assert_problem(weak, 422)["errors"][0]["field"] == "password"
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    reset = client.patch(
        f"{API}/users/{user_id(username)}", json={"password": "Long-Khanh-2027"}, headers=admin
    )
    assert reset.status_code == 200
    assert_problem(client.get(f"{API}/auth/me", headers=headers), 401)
    token_for(username, "Long-Khanh-2027")


def test_delete_deactivates_and_keeps_the_row(
    client: TestClient,
    admin: dict[str, str],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
) -> None:
    uid = user_id(make_user("viewer"))
    assert client.delete(f"{API}/users/{uid}", headers=admin).status_code == 204
    user = client.get(f"{API}/users/{uid}", headers=admin).json()
    assert user["is_active"] is False
    reactivated = client.patch(f"{API}/users/{uid}", json={"is_active": True}, headers=admin)
    assert reactivated.json()["is_active"] is True


def test_the_last_admin_cannot_be_deactivated_or_demoted(
    client: TestClient,
    admin: dict[str, str],
    user_id: Callable[[str], int],
    make_user: Callable[..., str],
) -> None:
    me = user_id("root-admin")
    body = assert_problem(client.delete(f"{API}/users/{me}", headers=admin), 409)
    assert "quản trị viên cuối cùng" in body["detail"]
    assert_problem(client.patch(f"{API}/users/{me}", json={"role": "leader"}, headers=admin), 409)
    assert_problem(client.patch(f"{API}/users/{me}", json={"is_active": False}, headers=admin), 409)
    assert_problem(
        client.patch(f"{API}/users/{me}", json={"unit_code": UNIT_A}, headers=admin), 409
    )
    assert client.get(f"{API}/users/{me}", headers=admin).json()["role"] == "admin"
    make_user("admin")
    assert (
        client.patch(f"{API}/users/{me}", json={"role": "leader"}, headers=admin).status_code == 200
    )


def test_unknown_users_are_404(client: TestClient, admin: dict[str, str]) -> None:
    body = assert_problem(client.get(f"{API}/users/4242", headers=admin), 404)
    assert "4242" in body["detail"]
    assert_problem(client.patch(f"{API}/users/4242", json={}, headers=admin), 404)
    assert_problem(client.delete(f"{API}/users/4242", headers=admin), 404)
    assert_problem(client.get(f"{API}/users/abc", headers=admin), 422)
    assert_problem(client.get(f"{API}/users/99999999999999999999", headers=admin), 422)


def test_ensure_admin_creates_one_only_when_none_exists(runtime: Runtime) -> None:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        password = flows.ensure_admin(
            session=session, settings=runtime.settings, clock=runtime.clock
        )
        assert password is not None
        assert not auth_service.password_errors(password=password, username="admin")
    with unit_of_work(runtime.session_factory) as session:
        user = auth_service.get_by_username(session=session, username="admin")
        assert user is not None
        assert user.role == "admin"
        assert auth_service.verify_password(
            password_hash=user.password_hash, password=password, settings=runtime.settings
        )
        assert (
            flows.ensure_admin(session=session, settings=runtime.settings, clock=runtime.clock)
            is None
        )


def test_ensure_admin_restores_a_demoted_account(
    runtime: Runtime, make_user: Callable[..., str], client: TestClient
) -> None:
    make_user("viewer", username="admin")
    with unit_of_work(runtime.session_factory) as session:
        password = flows.ensure_admin(
            session=session, settings=runtime.settings, clock=runtime.clock
        )
    assert password is not None
    response = client.post(f"{API}/auth/token", data={"username": "admin", "password": password})
    assert response.status_code == 200
    assert (
        client.post(
            f"{API}/auth/token", data={"username": "admin", "password": PASSWORD}
        ).status_code
        == 401
    )
