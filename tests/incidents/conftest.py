"""Fixtures of the incidents tests: people of each role and scope, incidents opened through the
API, and a recorder of the events the context publishes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL

API = "/api/v1"
INCIDENTS = f"{API}/incidents"
PASSWORD = "Dong-Nai-2026!"
# Seeded Đồng Nai codes: two wards of the former Biên Hòa city, one of Long Khánh.
WARD = "26041"  # Phường Trấn Biên
OTHER_WARD = "26017"  # Phường Tam Hiệp
FAR_WARD = "26080"  # Phường Long Khánh
AREA = "bien-hoa-cu"
ENV = "SNNMT"  # environment
HEALTH = "SYT"
CONSTRUCTION = "SXD"
# A point inside Phường Trấn Biên (its seeded centroid).
TRAN_BIEN = {"lat": 10.938, "lon": 106.835}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with access tokens lasting a day: these tests move the clock."""
    return settings.model_copy(update={"access_token_minutes": 24 * 60})


def login(client: TestClient, username: str) -> dict[str, str]:
    """Log a user in; return bearer headers."""
    response = client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@dataclass(frozen=True)
class Person:
    """A user who can call the API."""

    id: int
    username: str
    role: str
    headers: dict[str, str]


PersonFactory = Callable[..., Person]


@pytest.fixture
def person(client: TestClient, runtime: Runtime) -> PersonFactory:
    """Create a user of a role and scope (unit_code, department_code, area_code) and log in."""

    def factory(role: str, **scope: str | None) -> Person:
        username = f"{role.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            user = auth_service.create_user(
                session=session,
                user_in=UserCreate(
                    username=username,
                    password=PASSWORD,
                    full_name=f"Cán bộ {role}",
                    role=role,
                    **scope,
                ),
                clock=runtime.clock,
                settings=runtime.settings,
            )
            user_id = user.id
        return Person(id=user_id, username=username, role=role, headers=login(client, username))

    return factory


@pytest.fixture
def operator(person: PersonFactory) -> Person:
    """A province-wide IOC operator."""
    return person("operator")


@pytest.fixture
def admin(person: PersonFactory) -> Person:
    """A province-wide administrator."""
    return person("admin")


IncidentFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def open_incident(client: TestClient, operator: Person) -> IncidentFactory:
    """Open an incident through the API (air pollution in Phường Trấn Biên by default)."""

    def factory(*, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
        body = {
            "title": "Bụi mịn PM2.5 vượt ngưỡng tại Trấn Biên",
            "category_code": "air_pollution",
            "unit_code": WARD,
            **fields,
        }
        response = client.post(INCIDENTS, json=body, headers=headers or operator.headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return factory


def move(
    client: TestClient, incident_id: int, headers: dict[str, str], to: str, note: str | None = None
) -> Any:
    """Ask for a workflow transition; return the response."""
    body: dict[str, Any] = {"to": to}
    if note is not None:
        body["note"] = note
    return client.post(f"{INCIDENTS}/{incident_id}/transition", json=body, headers=headers)


class Recorder:
    """Collects the events published after commit."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, event_type: str) -> list[Event]:
        """The events of one type, in order."""
        return [e for e in self.events if e.type == event_type]

    def types(self) -> list[str]:
        """The types of every event, in order."""
        return [e.type for e in self.events]


@pytest.fixture
def events(runtime: Runtime) -> Recorder:
    """Every incidents event published (after commit) during the test."""
    recorder = Recorder()
    runtime.bus.subscribe("*", lambda e: recorder(e) if e.type.startswith("incidents.") else None)
    return recorder
