"""Fixtures and helpers of the auth tests: seeded codes, row counts, audit reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cityops.auth.models import AuditLog, User
from cityops.core.db import Base, unit_of_work
from cityops.core.runtime import Runtime

from .helpers import API, PASSWORD


@pytest.fixture
def count(runtime: Runtime) -> Callable[..., int]:
    """Count the rows of a table, optionally filtered by column values."""

    def counter(model: type[Base], **where: Any) -> int:
        with unit_of_work(runtime.session_factory) as session:
            statement = select(func.count()).select_from(model)
            for column, value in where.items():
                statement = statement.where(getattr(model, column) == value)
            return session.scalar(statement) or 0

    return counter


@pytest.fixture
def audit_rows(runtime: Runtime) -> Callable[..., list[AuditLog]]:
    """Read audit rows straight from the database, oldest first."""

    def reader(**where: Any) -> list[AuditLog]:
        with unit_of_work(runtime.session_factory) as session:
            statement = select(AuditLog).order_by(AuditLog.id)
            for column, value in where.items():
                statement = statement.where(getattr(AuditLog, column) == value)
            return list(session.scalars(statement))

    return reader


@pytest.fixture
def user_id(runtime: Runtime) -> Callable[[str], int]:
    """Look up a user's id by username."""

    def lookup(username: str) -> int:
        with unit_of_work(runtime.session_factory) as session:
            found = session.scalar(select(User.id).where(User.username == username))
            assert found is not None
            return found

    return lookup


@pytest.fixture
def token_for(client: TestClient) -> Callable[..., dict[str, Any]]:
    """Log a user in through the token endpoint; return the token response."""

    def login(username: str, password: str = PASSWORD) -> dict[str, Any]:
        response = client.post(
            f"{API}/auth/token", data={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return login
