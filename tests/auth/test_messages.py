"""Every message key the auth context raises exists in Vietnamese and English; the API documents."""

from __future__ import annotations

import re
from importlib import resources

from fastapi.testclient import TestClient

from cityops.core.runtime import Runtime

KEY = re.compile(r"""["'](auth\.[a-z_]+(?:\.[a-z_]+)*)["']""")


def _raised_keys() -> set[str]:
    package = resources.files("cityops.auth")
    keys: set[str] = set()
    for name in ("service.py", "flows.py", "api.py"):
        keys |= set(KEY.findall((package / name).read_text(encoding="utf-8")))
    # Cache keys in runtime.caches share the prefix but are not messages.
    return keys - {"auth.dummy_hash", "auth.api_key_principals", "auth.credentials_changed"}


def test_every_message_key_is_translated(runtime: Runtime) -> None:
    keys = _raised_keys()
    assert len(keys) > 30
    missing = sorted(k for k in keys if not runtime.translate.has(k))
    assert missing == []


def test_catalogues_hold_the_same_keys(runtime: Runtime) -> None:
    vi = {k for k in runtime.translate.keys("vi") if k.startswith("auth.")}
    en = {k for k in runtime.translate.keys("en") if k.startswith("auth.")}
    assert vi == en


def test_openapi_documents_the_auth_routes(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    for path in (
        "/api/v1/auth/token",
        "/api/v1/auth/login",
        "/api/v1/users/{user_id}",
        "/api/v1/api-keys",
        "/api/v1/audit",
    ):
        assert path in paths
    token_body = paths["/api/v1/auth/token"]["post"]["requestBody"]["content"]
    assert set(token_body) == {"application/x-www-form-urlencoded", "application/json"}
