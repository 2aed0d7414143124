"""A day given as a filter is moved to local midnight, then to UTC: days far outside any data
(0001-01-01, 9999-12-31) cannot make that move, and are refused with a 422 naming the
parameter instead of failing on the server (the API fuzz test found the dossier list's)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ..conftest import UserFactory


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/egov/dossiers", "received_from"),
        ("/api/v1/egov/dossiers", "received_to"),
        ("/api/v1/incidents/sla-report", "from"),
        ("/api/v1/incidents/sla-report", "to"),
    ],
)
@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1899-12-31"])
def test_a_day_outside_the_supported_range_is_refused(
    client: TestClient, login_as: UserFactory, path: str, name: str, day: str
) -> None:
    admin = login_as("admin")
    response = client.get(path, params={name: day}, headers=admin)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["field"], e["in"]) for e in errors] == [(name, "query")]
    # A day in range is served.
    assert client.get(path, params={name: "2026-11-01"}, headers=admin).status_code == 200
