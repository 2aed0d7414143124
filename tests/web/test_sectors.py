"""The entity detail, sector centre and wall pages, as the server renders them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.alerts import flows as alerts_flows
from cityops.context import flows as context_flows
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.web.sectors import SECTORS

# Points inside wards (lat, lon): Trấn Biên (former Biên Hòa city) and Long Khánh.
TRAN_BIEN = (10.936, 106.838)
LONG_KHANH = (10.922, 107.288)
AIR = "urn:ngsi-ld:AirQualityObserved:web-sector-air"
HOSPITAL = "urn:ngsi-ld:PointOfInterest:web-sector-hospital"
SCHOOL = "urn:ngsi-ld:PointOfInterest:web-sector-school"

Write = Callable[..., None]


def iso(at: datetime) -> str:
    """Format an instant as NGSI-LD does."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def write(runtime: Runtime) -> Write:
    """Write one entity through the context store's write pipeline."""

    def run(
        entity_id: str, entity_type: str, at: datetime, point: tuple[float, float], **attrs: Any
    ) -> None:
        entity: dict[str, Any] = {
            "id": entity_id,
            "type": entity_type,
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [point[1], point[0]]},
            },
        }
        if entity_type == "AirQualityObserved":
            entity["dateObserved"] = {"type": "Property", "value": iso(at)}
        for name, value in attrs.items():
            prop: dict[str, Any] = {"type": "Property", "value": value}
            if name not in ("name", "category", "capacity"):
                prop["observedAt"] = iso(at)
            if name == "pm25":
                prop["unitCode"] = "GQ"
            entity[name] = prop
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            outcome = context_flows.write_entities(
                runtime=runtime, session=session, tenant="default", entities=[entity]
            )
        assert not outcome.errors, outcome.errors

    return run


def _config(page: str, element: str) -> dict[str, Any]:
    found = re.search(rf'<script type="application/json" id="{element}">(.*?)</script>', page, re.S)
    assert found, f"no #{element} in the page"
    config: dict[str, Any] = json.loads(found.group(1))
    return config


def test_pages_need_a_login(client: TestClient) -> None:
    for path in ("/sectors/health", "/wall", f"/entities/{AIR}", "/sectors"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")


def test_entity_page_shows_current_values_alerts_and_incident(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    runtime: Runtime,
    clock: FrozenClock,
    write: Write,
) -> None:
    t0 = clock.now()
    write(
        AIR,
        "AirQualityObserved",
        t0 - timedelta(hours=2),
        TRAN_BIEN,
        name="Trạm Trấn Biên",
        airQualityIndex=80,
        pm25=30.5,
    )
    write(AIR, "AirQualityObserved", t0, TRAN_BIEN, airQualityIndex=182, pm25=95.25)
    alerts_flows.engine_of(runtime).process_pending()
    headers = login_as("operator")

    page = client.get(f"/entities/{AIR}", headers=headers)

    assert page.status_code == 200
    text = page.text
    assert "Trạm Trấn Biên" in text
    assert "Giá trị hiện tại" in text
    # Vietnamese number format: a decimal comma.
    assert "95,25" in text
    # Units as symbols, not UN/CEFACT codes.
    assert "<td>µg/m³</td>" in text
    assert "<td>GQ</td>" not in text
    # The observation time in Asia/Ho_Chi_Minh (T0 = 03:00Z → 10:00).
    assert "20/11/2026 10:00" in text
    # VN_AQI 182 is "Xấu": the poor and bad rules open alerts, the bad one an incident too.
    alerts = re.search(r'<ul class="list" id="alerts">(.*?)</ul>', text, re.S)
    assert alerts
    assert alerts.group(1).count("<li") >= 2
    incidents = re.search(r'<ul class="list" id="incidents">(.*?)</ul>', text, re.S)
    assert incidents
    assert incidents.group(1).count("<li") == 1
    config = _config(text, "entity-config")
    assert config["entityId"] == AIR
    assert config["attributes"][0] == "airQualityIndex"
    assert "pm25" in config["attributes"]
    assert config["now"].startswith("2026-11-20T03:00")


def test_entity_page_in_english_and_unknown_entity(
    client: TestClient, login_as: Callable[..., dict[str, str]], clock: FrozenClock, write: Write
) -> None:
    write(AIR, "AirQualityObserved", clock.now(), TRAN_BIEN, pm25=12.5)
    headers = login_as("viewer")
    english = client.get(f"/entities/{AIR}?lang=en", headers=headers)
    assert "Current values" in english.text
    assert "12.5" in english.text
    missing = client.get("/entities/urn:ngsi-ld:Thing:nothing?lang=en", headers=headers)
    assert missing.status_code == 404
    assert "Entity not found" in missing.text


def test_entity_outside_a_users_scope_is_not_shown(
    client: TestClient, login_as: Callable[..., dict[str, str]], clock: FrozenClock, write: Write
) -> None:
    write(AIR, "AirQualityObserved", clock.now(), LONG_KHANH, pm25=12.5)
    headers = login_as("unit_officer", unit_code="26041")
    assert client.get(f"/entities/{AIR}", headers=headers).status_code == 404


@pytest.mark.parametrize("sector", sorted(SECTORS))
def test_every_sector_page_renders(
    client: TestClient, login_as: Callable[..., dict[str, str]], sector: str
) -> None:
    page = client.get(f"/sectors/{sector}", headers=login_as("leader"))
    assert page.status_code == 200
    assert 'aria-current="page"' in page.text
    config = _config(page.text, "sector-config")
    assert config["sector"] == sector
    # The area selector holds the pilot areas and the 95 communes and wards.
    assert {a["code"] for a in config["selector"]["areas"]} >= {"bien-hoa-cu", "long-khanh-cu"}
    assert len(config["selector"]["units"]) == 95
    # Every page has its programme items (the seeded Đồng Nai programme covers each sector).
    assert 'id="programme"' in page.text


def test_health_centre_lists_hospitals_and_follows_the_area(
    client: TestClient, login_as: Callable[..., dict[str, str]], clock: FrozenClock, write: Write
) -> None:
    write(
        HOSPITAL,
        "PointOfInterest",
        clock.now(),
        TRAN_BIEN,
        name="Bệnh viện Đa khoa Đồng Nai",
        category=["hospital"],
        capacity=1400,
        bedOccupancy=92.5,
    )
    write(
        SCHOOL,
        "PointOfInterest",
        clock.now(),
        LONG_KHANH,
        name="THPT Long Khánh",
        category=["school"],
        capacity=1200,
        attendanceRate=97,
    )
    headers = login_as("leader")

    health = client.get("/sectors/health", headers=headers)
    assert "Bệnh viện Đa khoa Đồng Nai" in health.text
    assert "THPT Long Khánh" not in health.text
    assert f'href="/entities/{HOSPITAL}"' in health.text
    assert "92,5" in health.text
    # Its ward by name, not by code.
    assert "<td>Phường Trấn Biên</td>" in health.text
    view = _config(health.text, "sector-config")["views"][0]
    assert view["series"] == [["Bệnh viện Đa khoa Đồng Nai", 92.5]]

    education = client.get("/sectors/education", headers=headers)
    assert "THPT Long Khánh" in education.text
    # Long Khánh is not in the Biên Hòa pilot area: filtered out there, shown in its own.
    bien_hoa = client.get("/sectors/education?area=bien-hoa-cu", headers=headers)
    assert "THPT Long Khánh" not in bien_hoa.text
    assert '<option value="bien-hoa-cu" selected>' in bien_hoa.text
    long_khanh = client.get("/sectors/education?area=long-khanh-cu", headers=headers)
    assert "THPT Long Khánh" in long_khanh.text


def test_environment_centre_counts_open_alerts_and_incidents(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    runtime: Runtime,
    clock: FrozenClock,
    write: Write,
) -> None:
    headers = login_as("leader")

    def figure(page: str, key: str) -> str:
        found = re.search(rf'data-figure="{key}"><span class="figure">([^<]*)</span>', page)
        assert found, key
        return found.group(1)

    before = client.get("/sectors/environment", headers=headers).text
    assert figure(before, "alerts") == "0"
    write(
        AIR,
        "AirQualityObserved",
        clock.now(),
        TRAN_BIEN,
        name="Trạm Trấn Biên",
        airQualityIndex=182,
    )
    alerts_flows.engine_of(runtime).process_pending()
    after = client.get("/sectors/environment", headers=headers).text
    assert int(figure(after, "alerts")) >= 2
    assert int(figure(after, "incidents")) >= 1
    assert figure(after, "air") == "1"
    assert "Trạm Trấn Biên" in after
    # The alerts are not in Long Khánh.
    elsewhere = client.get("/sectors/environment?area=long-khanh-cu", headers=headers).text
    assert figure(elsewhere, "alerts") == "0"
    assert "Trạm Trấn Biên" not in elsewhere
    # Nor in the health centre.
    assert figure(client.get("/sectors/health", headers=headers).text, "alerts") == "0"


def test_unknown_sector_is_404_and_bad_input_is_422(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    headers = login_as("viewer")
    assert client.get("/sectors/finance", headers=headers).status_code == 404
    assert client.get("/sectors/health?area=%3Cx%3E", headers=headers).status_code == 422
    assert client.get("/wall?interval=1", headers=headers).status_code == 422
    # An unknown area is ignored (the whole province), not an error.
    assert client.get("/sectors/health?area=nowhere", headers=headers).status_code == 200


def test_wall_lists_every_sector_with_the_interval(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    page = client.get("/wall?interval=45&area=bien-hoa-cu", headers=login_as("operator"))
    assert page.status_code == 200
    config = _config(page.text, "wall-config")
    assert [s["code"] for s in config["sectors"]] == list(SECTORS)
    assert config["interval"] == 45
    assert config["area"] == "bien-hoa-cu"
    assert config["sectors"][0]["name"] == "Y tế"
    # Changing the interval keeps the area.
    assert '<input type="hidden" name="area" value="bien-hoa-cu">' in page.text
