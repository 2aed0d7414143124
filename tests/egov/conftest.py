"""Fixtures of the egov tests: an empty dossier table, the hand-computed fixture imported,
administrator headers, and a ranking threshold small enough for the fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.egov import flows
from cityops.egov.models import Dossier, DossierImport

API = "/api/v1"
FIXTURES = Path(__file__).parent / "fixtures"
DOSSIERS_CSV = FIXTURES / "dossiers.csv"


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a global administrator."""
    return login_as("admin")


@pytest.fixture
def no_dossiers(runtime: Runtime) -> None:
    """Remove the seeded demo dossiers, so a test counts only what it imports."""
    with unit_of_work(runtime.session_factory) as session:
        session.execute(delete(Dossier))
        session.execute(delete(DossierImport))


@pytest.fixture
def count_dossiers(runtime: Runtime) -> Callable[[], int]:
    """How many dossiers are stored."""

    def counter() -> int:
        with unit_of_work(runtime.session_factory) as session:
            return int(session.scalar(select(func.count()).select_from(Dossier)) or 0)

    return counter


@pytest.fixture
def upload(client: TestClient) -> Callable[..., Any]:
    """POST a file to the import route."""

    def post(
        headers: dict[str, str],
        content: bytes,
        name: str = "dossiers.csv",
        content_type: str = "text/csv",
        **params: Any,
    ) -> Any:
        return client.post(
            f"{API}/egov/dossiers/import",
            files={"file": (name, content, content_type)},
            params=params,
            headers=headers,
        )

    return post


@pytest.fixture
def fixture_imported(
    no_dossiers: None, admin: dict[str, str], upload: Callable[..., Any]
) -> dict[str, Any]:
    """The hand-computed fixture (tests/egov/fixtures/dossiers.csv) imported by an admin."""
    response = upload(admin, DOSSIERS_CSV.read_bytes())
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


@pytest.fixture
def rank_from_three(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    """Rank agencies from three dossiers (the profile says 30; the fixture is small)."""
    config = flows.config_of(runtime).model_copy(update={"min_dossiers_for_rank": 3})
    monkeypatch.setattr(flows, "config_of", lambda _runtime: config)


@pytest.fixture
def events(runtime: Runtime) -> Iterator[list[Event]]:
    """Every egov event published (after commit) while the test runs."""
    seen: list[Event] = []

    def keep(event: Event) -> None:
        if event.type.startswith("egov."):
            seen.append(event)

    unsubscribe = runtime.bus.subscribe("*", keep)
    yield seen
    unsubscribe()
