"""The permission matrix: each role and scope against reading and writing users, keys, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.auth.models import ApiKey, User

from .helpers import API, AREA, DEPT_A, PROVINCE, UNIT_A, UNIT_B, assert_problem

NEW_USER = {
    "username": "matrix-user",
    "password": "Bien-Hoa-2027",
    "full_name": "Matrix",
    "role": "viewer",
}

# (method, path, body): one read and one write per resource.
ACTIONS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "read users": ("GET", "/users", None),
    "write users": ("POST", "/users", NEW_USER),
    "read api-keys": ("GET", "/api-keys", None),
    "write api-keys": ("POST", "/api-keys", {"name": "matrix-key"}),
    "read audit": ("GET", "/audit", None),
}

# role, scope → expected status per action, in the order of ACTIONS.
MATRIX: list[tuple[str | None, dict[str, str], tuple[int, int, int, int, int]]] = [
    ("admin", {}, (200, 201, 200, 201, 200)),
    ("leader", {}, (200, 403, 403, 403, 200)),
    ("leader", {"unit_code": PROVINCE}, (200, 403, 403, 403, 200)),
    ("operator", {}, (403, 403, 403, 403, 403)),
    ("operator", {"unit_code": UNIT_A}, (403, 403, 403, 403, 403)),
    ("department_officer", {"department_code": DEPT_A}, (403, 403, 403, 403, 403)),
    ("unit_officer", {"unit_code": UNIT_A}, (403, 403, 403, 403, 403)),
    ("viewer", {}, (403, 403, 403, 403, 403)),
    (None, {}, (401, 401, 401, 401, 401)),
]


@pytest.mark.parametrize(("role", "scope", "expected"), MATRIX)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_permission_matrix(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    count: Callable[..., int],
    role: str | None,
    scope: dict[str, str],
    expected: tuple[int, ...],
    action: str,
) -> None:
    headers = login_as(role, **scope) if role else {}
    status = expected[list(ACTIONS).index(action)]
    method, path, body = ACTIONS[action]
    users, keys = count(User), count(ApiKey)
    response = client.request(method, f"{API}{path}", json=body, headers=headers)
    assert response.status_code == status, response.text
    if status >= 400:
        assert_problem(response, status)
        assert (count(User), count(ApiKey)) == (users, keys)
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("leader", {}),
        ("operator", {}),
        ("department_officer", {"department_code": DEPT_A}),
        ("unit_officer", {"unit_code": UNIT_A}),
        ("viewer", {}),
    ],
)
def test_non_admins_cannot_change_or_deactivate_users(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
    role: str,
    scope: dict[str, str],
) -> None:
    target = user_id(make_user("viewer", unit_code=UNIT_A))
    headers = login_as(role, **scope)
    assert_problem(
        client.patch(f"{API}/users/{target}", json={"role": "admin"}, headers=headers), 403
    )
    assert_problem(client.delete(f"{API}/users/{target}", headers=headers), 403)
    admin = login_as("admin")
    after = client.get(f"{API}/users/{target}", headers=admin).json()
    assert (after["role"], after["is_active"]) == ("viewer", True)


def test_scoped_reader_sees_only_users_in_scope(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
) -> None:
    inside = make_user("unit_officer", unit_code=UNIT_A)
    outside = make_user("unit_officer", unit_code=UNIT_B)
    provincial = make_user("operator")
    headers = login_as("leader", unit_code=UNIT_A)
    names = {u["username"] for u in client.get(f"{API}/users", headers=headers).json()["items"]}
    assert inside in names
    assert not names & {outside, provincial}
    assert client.get(f"{API}/users/{user_id(inside)}", headers=headers).status_code == 200
    body = assert_problem(client.get(f"{API}/users/{user_id(outside)}", headers=headers), 403)
    assert "phạm vi" in body["detail"]
    assert_problem(client.get(f"{API}/users/{user_id(provincial)}", headers=headers), 403)


def test_scoped_admin_manages_only_inside_its_scope(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
    count: Callable[..., int],
) -> None:
    headers = login_as("admin", unit_code=PROVINCE)

    def create(**fields: Any) -> int:
        body = {**NEW_USER, "username": f"u-{count(User)}", **fields}
        return client.post(f"{API}/users", json=body, headers=headers).status_code

    assert create(role="unit_officer", unit_code=UNIT_A) == 201
    assert create(role="viewer") == 403  # a province-wide user is beyond a scoped admin
    assert create(role="operator", area_code=AREA) == 201  # the area lies inside the province
    dept_admin = login_as("admin", department_code=DEPT_A)
    body = {**NEW_USER, "username": "dept-user", "role": "unit_officer", "unit_code": UNIT_A}
    assert client.post(f"{API}/users", json=body, headers=dept_admin).status_code == 403
    target = user_id(make_user("viewer"))
    assert_problem(
        client.patch(f"{API}/users/{target}", json={"full_name": "x"}, headers=dept_admin), 403
    )
    key = client.post(f"{API}/api-keys", json={"name": "k"}, headers=dept_admin)
    assert_problem(key, 403)
    scoped_key = client.post(
        f"{API}/api-keys", json={"name": "k", "department_code": DEPT_A}, headers=dept_admin
    )
    assert scoped_key.status_code == 201


def test_scoped_audit_reader_sees_only_its_units(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
) -> None:
    make_user("unit_officer", unit_code=UNIT_A, username="in-scope")
    make_user("unit_officer", unit_code=UNIT_B, username="out-of-scope")
    headers = login_as("leader", unit_code=UNIT_A)
    items = client.get(f"{API}/audit", headers=headers).json()["items"]
    assert items
    assert {i["unit_code"] for i in items} == {UNIT_A}
