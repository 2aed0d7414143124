"""Problem+json rendering: domain errors, field errors given by message key, languages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cityops.core.errors import (
    Conflict,
    Invalid,
    TooManyRequests,
    install_error_handlers,
    translate_error,
)
from cityops.core.i18n import Translator
from cityops.core.metrics import Metrics, RequestContextMiddleware

CATALOGS = {
    "vi": {
        "error.validation": "Dữ liệu gửi lên không hợp lệ",
        "error.conflict": "Xung đột",
        "error.too_many_requests": "Quá nhiều yêu cầu",
        "demo.too_short": "Cần ít nhất {min} ký tự.",
        "demo.taken": "Tên {name} đã được dùng.",
    },
    "en": {
        "error.validation": "The data sent is not valid",
        "error.conflict": "Conflict",
        "error.too_many_requests": "Too many requests",
        "demo.too_short": "At least {min} characters.",
        "demo.taken": "The name {name} is taken.",
    },
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A tiny app raising domain errors, with CityOps' handlers and middleware."""
    translate = Translator(CATALOGS, "vi")
    app = FastAPI()
    install_error_handlers(app, translate)
    app.add_middleware(RequestContextMiddleware, metrics=Metrics(), negotiate=translate.negotiate)

    @app.get("/invalid")
    def invalid() -> None:
        raise Invalid(
            errors=[
                {"field": "password", "in": "body", "key": "demo.too_short", "params": {"min": 10}},
                {"field": "name", "message": "already rendered"},
            ]
        )

    @app.get("/conflict")
    def conflict() -> None:
        raise Conflict("demo.taken", name="hoa")

    @app.get("/slow-down")
    def slow_down() -> None:
        raise TooManyRequests(headers={"Retry-After": "60"})

    with TestClient(app) as test_client:
        yield test_client


def test_field_errors_given_by_key_are_translated(client: TestClient) -> None:
    vi = client.get("/invalid").json()["errors"]
    assert vi[0] == {
        "field": "password",
        "in": "body",
        "message": "Cần ít nhất 10 ký tự.",
        "type": "demo.too_short",
    }
    assert vi[1] == {"field": "name", "message": "already rendered"}
    en = client.get("/invalid?lang=en").json()["errors"]
    assert en[0]["message"] == "At least 10 characters."


def test_domain_errors_are_problem_json_with_parameters(client: TestClient) -> None:
    response = client.get("/conflict?lang=en")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:cityops:problem:conflict"
    assert body["title"] == "Conflict"
    assert body["detail"] == "The name hoa is taken."
    assert body["request_id"]


def test_error_headers_are_sent(client: TestClient) -> None:
    response = client.get("/slow-down")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"
    assert response.json()["title"] == "Quá nhiều yêu cầu"


def test_translate_error_leaves_plain_errors_alone() -> None:
    translate = Translator(CATALOGS, "vi")
    plain = {"field": "x", "message": "m"}
    assert translate_error(plain, translate, "en") is plain
    keyed = translate_error(
        {"field": "x", "key": "demo.taken", "params": {"name": "a"}}, translate, "en"
    )
    assert keyed == {"field": "x", "message": "The name a is taken.", "type": "demo.taken"}
