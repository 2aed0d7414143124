"""Fixtures of the citizen tests: an Open311 client key, staff of each role, and helpers that
send reports the way an Open311 client does (form-encoded POST)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.core.config import Settings

from ..receiver import Receiver
from ..smtp_sink import SmtpSink

API = "/api/v1"
OPEN311 = "/open311/v2"
WARD = "26041"  # Phường Trấn Biên
TAM_HIEP = "26017"  # Phường Tam Hiệp
# Seeded centroids of the two wards.
TRAN_BIEN = {"lat": "10.938", "long": "106.835"}
TAM_HIEP_POINT = {"lat": "10.954", "long": "106.859"}
REPORTER = {
    "first_name": "Thị Hồng",
    "last_name": "Nguyễn",
    "email": "hong.nguyen.reporter@example.vn",
    "phone": "0912345678",
}
# What must never appear in a public response (the phone in both forms).
SECRETS = ("Thị Hồng", "Nguyễn", "hong.nguyen.reporter@example.vn", "0912345678", "912345678")


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on a free local port."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def settings(settings: Settings, smtp_sink: SmtpSink, http_receiver: Receiver) -> Settings:
    """Shared settings with e-mail to the sink and SMS to the receiver; tokens last a day
    because these tests move the clock."""
    return settings.model_copy(
        update={
            "access_token_minutes": 24 * 60,
            "public_url": "https://ioc.dongnai.gov.vn",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_sink.port,
            "smtp_security": "none",
            "smtp_from": "Trung tâm IOC Đồng Nai <ioc@dongnai.gov.vn>",
            "sms_gateway_url": f"{http_receiver.url}/sms",
        }
    )


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of an administrator."""
    return login_as("admin")


@pytest.fixture
def api_key(client: TestClient, admin: dict[str, str]) -> str:
    """An Open311 client key (permission citizen:submit)."""
    response = client.post(
        f"{API}/api-keys",
        json={"name": "open311-app", "permissions": ["citizen:submit"]},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


Submit = Callable[..., Any]


@pytest.fixture
def submit(client: TestClient, api_key: str) -> Submit:
    """POST requests.{fmt} as an Open311 client; return the response."""

    def send(fmt: str = "json", *, key: str | None = None, **fields: Any) -> Any:
        body = {"api_key": api_key if key is None else key, **fields}
        return client.post(f"{OPEN311}/requests.{fmt}", data=body)

    return send


def report_id(response: Any) -> str:
    """The service_request_id a successful JSON POST returned."""
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body, list)
    assert len(body) == 1
    code: str = body[0]["service_request_id"]
    return code
