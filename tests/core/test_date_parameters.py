"""Days and date-times at the ends of the calendar: a day given as a filter is moved to local
midnight, then to UTC, and a date-time with a zone is moved to UTC to be stored or compared.
0001-01-01T00:00+07:00 and 9999-12-31T23:00-05:00 have no UTC equivalent: every API refuses
them with its own 4xx naming the field, instead of failing on the server (the API fuzz test
found the dossier list's)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from cityops.context.normalize import parse_datetime
from cityops.core.errors import DomainError
from cityops.egov import imports as egov_imports
from cityops.ingest.readings import parse_time

from ..conftest import UserFactory

EARLY = "0001-01-01T00:00:00+07:00"
LATE = "9999-12-31T23:00:00-05:00"


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


@pytest.mark.parametrize("moment", [EARLY, LATE])
@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/api/v1/alerts", {"since": "{}"}, 422, "since"),
        ("/api/v1/alerts", {"until": "{}"}, 422, "until"),
        ("/api/v1/audit", {"since": "{}"}, 422, "since"),
        ("/api/v1/incidents", {"created_from": "{}"}, 422, "created_from"),
        ("/open311/v2/requests.json", {"start_date": "{}"}, 400, "start_date"),
        ("/open311/v2/requests.json", {"end_date": "{}"}, 400, "end_date"),
        (
            "/ngsi-ld/v1/temporal/entities",
            {"type": "AirQualityObserved", "timerel": "after", "timeAt": "{}"},
            400,
            "timeAt",
        ),
    ],
)
def test_a_date_time_without_a_utc_equivalent_is_refused_in_a_query(
    client: TestClient,
    login_as: UserFactory,
    moment: str,
    path: str,
    params: dict[str, str],
    status: int,
    field: str,
) -> None:
    query = {name: value.format(moment) for name, value in params.items()}
    response = client.get(path, params=query, headers=login_as("admin"))
    assert response.status_code == status, response.text
    assert field in response.text


@pytest.mark.parametrize("moment", [EARLY, LATE])
def test_a_date_time_without_a_utc_equivalent_is_refused_in_a_body(
    client: TestClient, login_as: UserFactory, moment: str
) -> None:
    admin = login_as("admin")
    entity = {
        "id": "urn:ngsi-ld:AirQualityObserved:calendar-end",
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.84, 10.95]},
        },
        "pm25": {"type": "Property", "value": 3, "observedAt": moment},
    }
    created = client.post("/ngsi-ld/v1/entities", json=entity, headers=admin)
    assert created.status_code == 400, created.text
    assert created.json()["type"].endswith("BadRequestData")
    assert "observedAt" in created.json()["detail"]
    assert client.get(f"/ngsi-ld/v1/entities/{entity['id']}", headers=admin).status_code == 404
    key: dict[str, Any] = {
        "name": "calendar",
        "permissions": ["context:read"],
        "expires_at": moment,
    }
    refused = client.post("/api/v1/api-keys", json=key, headers=admin)
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["expires_at"]


@pytest.mark.parametrize("moment", [EARLY, LATE])
def test_readings_and_imports_refuse_a_time_without_a_utc_equivalent(moment: str) -> None:
    assert parse_time(moment) is None  # a device reading's time: the reading is refused
    with pytest.raises(DomainError):
        parse_datetime(moment)
    with pytest.raises(egov_imports._Refused):
        egov_imports.parse_time(moment, ZoneInfo("Asia/Ho_Chi_Minh"))
    with pytest.raises(egov_imports._Refused):
        egov_imports.parse_time("01/01/0001", ZoneInfo("Asia/Ho_Chi_Minh"))
