"""No input reaches a 500: odd bodies, control characters, oversized values, forged ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .helpers import API, assert_problem

TOKEN = f"{API}/auth/token"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"files": {"f": ("a.txt", b"x")}, "data": {"username": "a", "password": "b"}}, 400),
        ({"content": b"", "headers": {"content-type": "multipart/form-data"}}, 400),
        (
            {
                "content": b"username=%ff%fe&password=x",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            401,
        ),
        ({"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 422),
        ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 422),
        (
            {
                "content": b"{" + b" " * 70_000 + b"}",
                "headers": {"content-type": "application/json"},
            },
            422,
        ),
        ({"json": {"username": None, "password": None}}, 422),
        ({"json": {"username": "a\x00b", "password": "x"}}, 422),
        ({"json": {"username": "ab", "password": "x\x00"}}, 401),
    ],
)
def test_odd_login_bodies_are_client_errors(
    client: TestClient, kwargs: dict[str, Any], status: int
) -> None:
    assert_problem(client.post(TOKEN, **kwargs), status)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/users?q=%00", 422),
        ("/users?unit=%00", 422),
        ("/users?q=" + "x" * 1000, 422),
        ("/users?offset=99999999999", 422),
        ("/audit?actor=%00", 422),
        ("/audit?since=9999-12-31T23:59:59Z", 200),
        ("/audit?resource_id=" + "9" * 100, 422),
    ],
)
def test_odd_query_parameters(
    client: TestClient, login_as: Callable[..., dict[str, str]], path: str, status: int
) -> None:
    response = client.get(f"{API}{path}", headers=login_as("admin"))
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "abc\x00"},
        {"full_name": "a\x00"},
        {"unit_code": "\x00"},
        {"email": "a\x00@b.vn"},
        {"full_name": "a\nb"},
    ],
)
def test_control_characters_in_users_are_422(
    client: TestClient, login_as: Callable[..., dict[str, str]], fields: dict[str, str]
) -> None:
    body = {"username": "abcd", "password": "Bien-Hoa-2027", "full_name": "a", "role": "viewer"}
    response = client.post(f"{API}/users", json={**body, **fields}, headers=login_as("admin"))
    assert_problem(response, 422)


def test_deeply_nested_json_to_users_is_not_a_500(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    response = client.post(
        f"{API}/users",
        content=b"[" * 100_000,
        headers={**login_as("admin"), "content-type": "application/json"},
    )
    assert response.status_code < 500


@pytest.mark.parametrize("refresh_token", ["a\x00.b", "a%.b", "../../etc.x"])
def test_refresh_tokens_with_odd_ids(client: TestClient, refresh_token: str) -> None:
    response = client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code in (401, 422)


@pytest.mark.parametrize("cookie", ["a%00b.c", "x" * 5000, ".", "abc.", "a b.c"])
def test_odd_cookies_are_anonymous(client: TestClient, cookie: str) -> None:
    client.cookies.set("cityops_session", cookie)
    assert_problem(client.get(f"{API}/auth/me"), 401)


def test_api_key_with_non_hex_prefix_is_401(client: TestClient) -> None:
    response = client.get(f"{API}/auth/me", headers={"X-API-Key": "cok_zzzzzzzzzzzz_abc"})
    assert_problem(response, 401)
