"""Fixtures of the KPI tests: a small October 2026 worked out by hand in three units.

Units: Phường Trấn Biên 26041 (pilot area bien-hoa-cu), Phường Long Khánh 26080 (pilot area
long-khanh-cu), Phường Bình Phước 25195 (control). Their 2026 population is set to 200,000,
100,000 and 50,000. In October 2026 (local time):

- air station A in 26041: PM2.5 40 and 70 on 10-05 (day mean 55 > 50), 30 on 10-06; VN_AQI 120
  on 10-05, 60 on 10-06. Station B in 25195: PM2.5 20 and VN_AQI 40 on 10-05.
  In September: A reads PM2.5 500 / VN_AQI 500 on 09-30 23:00, B reads 30 / 50 on 09-15.
- traffic segment in 26041: travel-time index 1.2 and 1.6. Noise sensor in 25195: LAeq 60, 70.
- hospital in 26080: 200 beds, 150 then 170 occupied (mean 160). School in 26080: attendance
  90 % and 96 %.
- streetlights in 26041: one "ok", one "defectiveLamp".
- incidents: two floodings in 26041 opened 10-10 09:00, one resolved after 2 h (on time), the
  other after 12 h (past its 8 h deadline: breached); one waste overflow in 26080, open.
- no sector statistics (the seeded demo estimates removed): the statistics indicators have no
  data (test_statistics.py imports some).
- dossiers (fixtures/dossiers.csv, the seeded demo dossiers removed): 26041 one on time and one
  late and rated unsatisfied (completed 11-03, after October), 26080 one on time online, 25195
  one late; handling days 19.083333 (KPI-001), 5 (KPI-003), 9 (KPI-004).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from cityops.context import flows as context_flows
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.egov.models import Dossier, DossierImport
from cityops.incidents import jobs as incident_jobs
from cityops.kpi import service
from cityops.kpi.models import KpiStatistic

API = "/api/v1/kpi"
FIXTURES = Path(__file__).parent / "fixtures"
PILOT_BH, PILOT_LK, CONTROL = "26041", "26080", "25195"
POINTS = {PILOT_BH: (106.835, 10.938), PILOT_LK: (107.288, 10.922), CONTROL: (106.899, 11.521)}
POPULATION = {PILOT_BH: 200_000, PILOT_LK: 100_000, CONTROL: 50_000}


def local(text: str) -> str:
    """An ISO instant in Vietnam time (UTC+7)."""
    return f"{text}+07:00"


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a global administrator."""
    return login_as("admin")


def _write(runtime: Runtime, entities: list[dict[str, Any]]) -> None:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        outcome = context_flows.write_entities(
            runtime=runtime, session=session, tenant="default", entities=entities
        )
        assert not outcome.errors, outcome.errors


def _at(unit: str, dx: float = 0.0) -> dict[str, Any]:
    lon, lat = POINTS[unit]
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon + dx, lat]}}


def _prop(value: Any, at: str | None = None) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "Property", "value": value}
    if at:
        prop["observedAt"] = local(at)
    return prop


@pytest.fixture
def october(
    runtime: Runtime, client: TestClient, admin: dict[str, str], clock: FrozenClock
) -> dict[str, Any]:
    """The hand-computed October 2026 (see the module docstring)."""
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        session.execute(delete(Dossier))
        session.execute(delete(DossierImport))
        session.execute(delete(KpiStatistic))
        service.upsert_population(
            session=session,
            rows=[(code, 2026, n) for code, n in POPULATION.items()],
            clock=runtime.clock,
        )
    # Context: static entities, then readings one instant at a time.
    _write(
        runtime,
        [
            {"id": "urn:ngsi-ld:AirQualityObserved:A", "type": "AirQualityObserved",
             "location": _at(PILOT_BH)},
            {"id": "urn:ngsi-ld:AirQualityObserved:B", "type": "AirQualityObserved",
             "location": _at(CONTROL)},
            {"id": "urn:ngsi-ld:TrafficFlowObserved:T", "type": "TrafficFlowObserved",
             "location": _at(PILOT_BH, 0.001)},
            {"id": "urn:ngsi-ld:NoiseLevelObserved:N", "type": "NoiseLevelObserved",
             "location": _at(CONTROL, 0.001)},
            {"id": "urn:ngsi-ld:PointOfInterest:H", "type": "PointOfInterest",
             "location": _at(PILOT_LK), "category": _prop(["hospital"]),
             "capacity": _prop(200)},
            {"id": "urn:ngsi-ld:PointOfInterest:S", "type": "PointOfInterest",
             "location": _at(PILOT_LK, 0.001), "category": _prop(["school"]),
             "capacity": _prop(900)},
            {"id": "urn:ngsi-ld:Streetlight:L1", "type": "Streetlight",
             "location": _at(PILOT_BH, 0.002), "status": _prop("ok")},
            {"id": "urn:ngsi-ld:Streetlight:L2", "type": "Streetlight",
             "location": _at(PILOT_BH, 0.003), "status": _prop("defectiveLamp")},
        ],
    )  # fmt: skip
    AQ_A, AQ_B = "urn:ngsi-ld:AirQualityObserved:A", "urn:ngsi-ld:AirQualityObserved:B"  # noqa: N806
    readings: list[tuple[str, str, dict[str, Any]]] = [
        (AQ_A, "2026-10-05T10:00:00", {"pm25": 40, "airQualityIndex": 120}),
        (AQ_A, "2026-10-05T14:00:00", {"pm25": 70, "airQualityIndex": 90}),
        (AQ_A, "2026-10-06T10:00:00", {"pm25": 30, "airQualityIndex": 60}),
        (AQ_B, "2026-10-05T10:00:00", {"pm25": 20, "airQualityIndex": 40}),
        ("urn:ngsi-ld:TrafficFlowObserved:T", "2026-10-07T08:00:00", {"travelTimeIndex": 1.2}),
        ("urn:ngsi-ld:TrafficFlowObserved:T", "2026-10-07T18:00:00", {"travelTimeIndex": 1.6}),
        ("urn:ngsi-ld:NoiseLevelObserved:N", "2026-10-08T08:00:00", {"LAeq": 60}),
        ("urn:ngsi-ld:NoiseLevelObserved:N", "2026-10-08T09:00:00", {"LAeq": 70}),
        ("urn:ngsi-ld:PointOfInterest:H", "2026-10-09T08:00:00", {"occupancy": 150}),
        ("urn:ngsi-ld:PointOfInterest:H", "2026-10-19T08:00:00", {"occupancy": 170}),
        ("urn:ngsi-ld:PointOfInterest:S", "2026-10-09T08:00:00", {"attendanceRate": 90}),
        ("urn:ngsi-ld:PointOfInterest:S", "2026-10-10T08:00:00", {"attendanceRate": 96}),
        # Before October (the pilot evaluation's "before"): counts nowhere in October.
        (AQ_B, "2026-09-15T10:00:00", {"pm25": 30, "airQualityIndex": 50}),
        (AQ_A, "2026-09-30T23:00:00", {"pm25": 500, "airQualityIndex": 500}),
    ]  # fmt: skip
    for entity_id, at, values in readings:
        kind = entity_id.split(":")[2]
        _write(
            runtime,
            [{"id": entity_id, "type": kind, **{k: _prop(v, at) for k, v in values.items()}}],
        )
    # Incidents, opened and worked at October times.
    clock.set(datetime(2026, 10, 10, 2, 0, tzinfo=UTC))
    ids = []
    for category, unit in (
        ("flooding", PILOT_BH),
        ("flooding", PILOT_BH),
        ("waste_overflow", PILOT_LK),
    ):
        response = client.post(
            "/api/v1/incidents",
            json={"title": f"Sự cố {category}", "category_code": category, "unit_code": unit},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    def resolve(incident_id: int) -> None:
        for to in ("assigned", "in_progress", "resolved"):
            body: dict[str, Any] = {"to": to}
            if to == "resolved":
                body["note"] = "Đã xử lý xong"
            r = client.post(f"/api/v1/incidents/{incident_id}/transition", json=body, headers=admin)
            assert r.status_code == 200, r.text

    clock.advance(timedelta(hours=2))
    resolve(ids[0])
    clock.advance(timedelta(hours=10))
    incident_jobs.check_sla(runtime)
    resolve(ids[1])
    clock.set(datetime(2026, 11, 20, 3, 0, tzinfo=UTC))
    # Dossiers through the egov import.
    response = client.post(
        "/api/v1/egov/dossiers/import",
        files={"file": ("dossiers.csv", (FIXTURES / "dossiers.csv").read_bytes(), "text/csv")},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    return {"incidents": ids}
