"""Fixtures of the notify tests: a real SMTP sink, settings pointing e-mail at it and the SMS and
Zalo gateways at the local HTTP receiver, people with preferences, and synthetic operations
events published the way alerts and incidents publish them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core import outbox
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.notify import flows
from cityops.notify import service as notify_service
from cityops.notify.schemas import PreferenceUpdate

from ..conftest import TEST_PASSWORD
from ..receiver import Receiver
from ..smtp_sink import SmtpSink

API = "/api/v1"
FIXTURES = Path(__file__).parent / "fixtures"
GATEWAY_KEY = "gw-key-6f1d0c"
SMTP_PASSWORD = "smtp-pass-93a7e2"


def load_fixture(name: str) -> dict[str, Any]:
    """Read an event payload from tests/notify/fixtures (its alert opens no incident by itself)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on a free local port."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def settings(settings: Settings, smtp_sink: SmtpSink, http_receiver: Receiver) -> Settings:
    """The test settings with e-mail to the sink and both gateways to the HTTP receiver."""
    return settings.model_copy(
        update={
            "public_url": "https://ioc.dongnai.gov.vn",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_sink.port,
            "smtp_security": "none",
            # No username: the sink does not authenticate; the password must still never leak.
            "smtp_password": SMTP_PASSWORD,
            "smtp_from": "Trung tâm IOC Đồng Nai <ioc@dongnai.gov.vn>",
            "sms_gateway_url": f"{http_receiver.url}/sms",
            "sms_gateway_headers": {"X-Api-Key": GATEWAY_KEY},
            "zalo_gateway_url": f"{http_receiver.url}/zalo",
            "zalo_gateway_headers": {"access_token": GATEWAY_KEY},
        }
    )


PersonFactory = Callable[..., int]


@pytest.fixture
def person(runtime: Runtime) -> PersonFactory:
    """Create an active user with an e-mail address (and preferences); return their id."""

    def factory(
        role: str,
        *,
        email: str | None = "",
        language: str = "vi",
        unit_code: str | None = None,
        department_code: str | None = None,
        area_code: str | None = None,
        prefs: dict[str, Any] | None = None,
        username: str | None = None,
    ) -> int:
        username = username or f"{role}-{uuid.uuid4().hex[:8]}"
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            user = auth_service.create_user(
                session=session,
                user_in=UserCreate(
                    username=username,
                    password=TEST_PASSWORD,
                    full_name=f"Nguyễn Văn {role.title()}",
                    role=role,
                    unit_code=unit_code,
                    department_code=department_code,
                    area_code=area_code,
                    email=f"{username}@dongnai.gov.vn" if email == "" else email,
                    language=language,
                ),
                clock=runtime.clock,
                settings=runtime.settings,
            )
            if prefs is not None:
                notify_service.set_preference(
                    session=session,
                    user_id=user.id,
                    user_email=user.email,
                    preference_in=PreferenceUpdate(**prefs),
                    available=flows.available_channels(runtime.settings),
                    clock=runtime.clock,
                )
            return user.id

    return factory


def email_of(runtime: Runtime, user_id: int) -> str:
    """The e-mail address of a user."""
    with runtime.session_factory() as session:
        user = auth_service.get(session=session, user_id=user_id)
        assert user is not None
        assert user.email is not None
        return user.email


Publisher = Callable[..., None]


@pytest.fixture
def publish(runtime: Runtime) -> Publisher:
    """Publish an operations event in a committed transaction, as alerts and incidents do."""

    def publisher(event_type: str, payload: str | dict[str, Any], **overrides: Any) -> None:
        data = load_fixture(payload) if isinstance(payload, str) else dict(payload)
        data.update(overrides)
        with unit_of_work(runtime.session_factory) as session:
            runtime.bus.publish_after_commit(
                session, Event(type=event_type, data=data, at=runtime.clock.now())
            )

    return publisher


def deliver(runtime: Runtime) -> int:
    """Run the outbox until nothing due is left; return how many messages went out."""
    assert runtime.outbox is not None
    return runtime.outbox.drain()


def messages(runtime: Runtime, **where: Any) -> list[outbox.OutboxMessage]:
    """Outbox rows (the delivery log), oldest first, filtered by column values."""
    query = select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id)
    for column, value in where.items():
        query = query.where(getattr(outbox.OutboxMessage, column) == value)
    with runtime.session_factory() as session:
        return list(session.scalars(query).all())


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a province-wide administrator (it has no e-mail: it gets no mail)."""
    return login_as("admin")


def login(client: TestClient, username: str) -> dict[str, str]:
    """Bearer headers of an existing user."""
    response = client.post(
        f"{API}/auth/token", data={"username": username, "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
