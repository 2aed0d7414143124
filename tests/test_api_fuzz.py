"""Every operation of the platform API, fed generated input: no request may cause a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from cityops.app import create_app
from cityops.core.config import Settings
from cityops.core.runtime import Runtime

# The OpenAPI document of the app as built; the requests go to each test's own app and database.
_DOCUMENT: dict[str, Any] = create_app(
    Settings(database_url="sqlite://", secret_key="openapi-only-" + "x" * 32)
).openapi()
# A valid request to the live stream never ends, and the in-process client reads a response to
# its end: tests/web/test_stream.py fuzzes the stream against a real server instead.
schema = schemathesis.openapi.from_dict(_DOCUMENT).exclude(path="/api/v1/stream")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_causes_a_server_error(
    case: schemathesis.Case,
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    runtime: Runtime,
) -> None:
    admin = _admin_headers(login_as, runtime)
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    client.cookies.clear()
    for name, value in (kwargs.get("cookies") or {}).items():
        client.cookies.set(name, value)
    for extra in ({}, admin):
        headers = {**(kwargs.get("headers") or {}), **extra}
        response = client.request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=headers,
            **_body(kwargs),
        )
        assert response.status_code < 500, (case.as_curl_command(), response.text)


def _body(kwargs: dict[str, Any]) -> dict[str, Any]:
    # schemathesis hands raw bodies over as `data`; httpx wants bytes as `content`.
    if "json" in kwargs:
        return {"json": kwargs["json"]}
    data = kwargs.get("data", kwargs.get("content"))
    if data is None:
        return {}
    if isinstance(data, (bytes, str)):
        return {"content": data}
    return {"data": data}


def _admin_headers(login_as: Callable[..., dict[str, str]], runtime: Runtime) -> dict[str, str]:
    # One admin per operation, reused across its generated examples.
    cached = runtime.caches.get("fuzz-admin")
    if cached is None:
        cached = login_as("admin")
        runtime.caches["fuzz-admin"] = cached
    return dict(cached)
