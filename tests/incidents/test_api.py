"""The incident list (filters, search, sorting, paging), the SLA report, and the reference data
behind SLAs: categories, policies and holidays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock

from .conftest import (
    AREA,
    CONSTRUCTION,
    ENV,
    FAR_WARD,
    HEALTH,
    INCIDENTS,
    OTHER_WARD,
    WARD,
    IncidentFactory,
    Person,
    PersonFactory,
    move,
)


def _list(client: TestClient, person: Person, **params: Any) -> dict[str, Any]:
    response = client.get(INCIDENTS, params=params, headers=person.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _titles(client: TestClient, person: Person, **params: Any) -> list[str]:
    return [item["title"] for item in _list(client, person, limit=100, **params)["items"]]


def test_filters_search_sorting_and_paging(
    client: TestClient, clock: FrozenClock, operator: Person, open_incident: IncidentFactory
) -> None:
    # Five incidents an hour apart (T0 is 10:00 in Đồng Nai).
    specs = [
        ("Ngập sâu đường Võ Thị Sáu", "flooding", WARD, "high", []),
        ("Quá tải cấp cứu Bệnh viện Đồng Nai", "hospital_overload", OTHER_WARD, "critical", [ENV]),
        ("Đèn đường hỏng", "streetlight_fault", FAR_WARD, "low", []),
        ("Rác tồn đọng chợ Tân Hiệp", "waste_overflow", OTHER_WARD, "low", []),
        ("Khói bụi khu công nghiệp", "air_pollution", WARD, "medium", [HEALTH]),
    ]
    created = []
    for title, category, unit, severity, support in specs:
        created.append(
            open_incident(
                title=title,
                category_code=category,
                unit_code=unit,
                severity=severity,
                supporting_department_codes=support,
            )
        )
        clock.advance(timedelta(hours=1))
    flood, hospital, light, waste, smoke = (c["title"] for c in created)
    assert move(client, created[0]["id"], operator.headers, "assigned").status_code == 200

    # Newest first by default.
    assert _titles(client, operator) == [smoke, waste, light, hospital, flood]
    assert _titles(client, operator, status="assigned") == [flood]
    assert _titles(client, operator, status=["new", "assigned"]) == [
        smoke, waste, light, hospital, flood,
    ]  # fmt: skip
    assert _titles(client, operator, status="closed") == []
    assert _titles(client, operator, unit_code=WARD) == [smoke, flood]
    # A unit's subtree: the province holds every ward.
    assert len(_titles(client, operator, unit_code="75")) == 5
    assert _titles(client, operator, area_code=AREA) == [smoke, waste, hospital, flood]
    # Main or supporting department.
    assert _titles(client, operator, department_code=ENV) == [smoke, waste, hospital, flood]
    assert _titles(client, operator, department_code=HEALTH) == [smoke, hospital]
    assert _titles(client, operator, department_code=CONSTRUCTION) == [light]
    assert _titles(client, operator, sector="health") == [hospital]
    assert _titles(client, operator, severity=["low", "critical"]) == [waste, light, hospital]
    assert _titles(client, operator, category_code="flooding") == [flood]
    assert _titles(client, operator, source="manual", status="new", sector="environment") == [
        smoke, waste,
    ]  # fmt: skip
    # A period: 11:00 to 13:00 local (a time without a zone is Đồng Nai time), end exclusive.
    assert _titles(
        client, operator, created_from="2026-11-20T11:00:00", created_to="2026-11-20T13:00:00"
    ) == [light, hospital]
    assert _titles(client, operator, created_from="2026-11-20T05:00:00Z") == [smoke, waste, light]
    # Words without diacritics, or the public code.
    assert _titles(client, operator, q="ngap") == [flood]
    assert _titles(client, operator, q="BENH VIEN") == [hospital]
    assert _titles(client, operator, q=created[2]["code"].lower()) == [light]
    assert _titles(client, operator, q="100%_") == []

    assert _titles(client, operator, sort="created_at") == [flood, hospital, light, waste, smoke]
    assert _titles(client, operator, sort="-severity")[:2] == [hospital, flood]
    assert _titles(client, operator, sort="code") == [flood, hospital, light, waste, smoke]

    pages = [_list(client, operator, limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    assert [p["total"] for p in pages] == [5, 5, 5, 5]
    assert [[i["title"] for i in p["items"]] for p in pages] == [
        [smoke, waste], [light, hospital], [flood], [],
    ]  # fmt: skip
    assert (pages[1]["limit"], pages[1]["offset"]) == (2, 2)
    summary = pages[0]["items"][0]
    assert summary["supporting_department_codes"] == [HEALTH]
    assert "timeline" not in summary
    assert "description" not in summary


def test_bad_list_parameters_name_the_field(client: TestClient, operator: Person) -> None:
    cases = [
        ({"unit_code": "99999"}, "unit_code"),
        ({"area_code": "khong-co"}, "area_code"),
        ({"department_code": "XYZ"}, "department_code"),
        ({"status": "lost"}, "status"),
        ({"severity": "extreme"}, "severity"),
        ({"sort": "title"}, "sort"),
        ({"created_from": "hôm qua"}, "created_from"),
        ({"created_from": "1800-01-01T00:00:00"}, "created_from"),
        ({"limit": 0}, "limit"),
    ]
    for params, field in cases:
        response = client.get(INCIDENTS, params=params, headers=operator.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["errors"][0]["field"].startswith(field)


def test_creation_checks_its_input(client: TestClient, operator: Person) -> None:
    def create(**body: Any) -> Any:
        base = {"title": "Sự cố", "category_code": "flooding", "unit_code": WARD}
        return client.post(INCIDENTS, json={**base, **body}, headers=operator.headers)

    cases = [
        ({"category_code": "volcano"}, "category_code"),
        ({"unit_code": "00000"}, "unit_code"),
        ({"department_code": "XYZ"}, "department_code"),
        ({"supporting_department_codes": ["SYT", "NOPE"]}, "supporting_department_codes[1]"),
        ({"lat": 10.9}, "body"),
        ({"title": "Hai\ndòng"}, "title"),
        ({"title": ""}, "title"),
        ({"severity": "extreme"}, "severity"),
        ({"unexpected": 1}, "unexpected"),
    ]
    for body, field in cases:
        response = create(**body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["field"] == field, response.json()
    # A point outside the province opens a province-level incident with no unit.
    offshore = create(unit_code=None, lat=9.0, lon=105.0)
    assert offshore.status_code == 201
    assert offshore.json()["unit_code"] is None
    assert offshore.headers["location"].endswith(f"/incidents/{offshore.json()['id']}")
    assert client.get(f"{INCIDENTS}/999999", headers=operator.headers).status_code == 404


def test_sla_report_on_a_known_day(
    client: TestClient, clock: FrozenClock, operator: Person, open_incident: IncidentFactory
) -> None:
    # Opened at T0 (Friday 10:00): two environment incidents in the ward (high: 30 minutes to
    # start, 8 hours to resolve), a hospital overload next door (critical: 10 minutes, 2 hours)
    # and a streetlight far away (low, working hours: not due yet at the end of the day).
    on_time = open_incident(severity="high")["id"]
    late = open_incident(severity="high")["id"]
    open_incident(category_code="hospital_overload", severity="critical", unit_code=OTHER_WARD)
    open_incident(category_code="streetlight_fault", unit_code=FAR_WARD)
    for incident_id in (on_time, late):
        assert move(client, incident_id, operator.headers, "assigned").status_code == 200
    clock.advance(timedelta(minutes=10))
    assert move(client, on_time, operator.headers, "in_progress").status_code == 200
    clock.advance(timedelta(minutes=30))
    assert move(client, late, operator.headers, "in_progress").status_code == 200
    clock.advance(timedelta(minutes=80))  # two hours after opening
    assert move(client, on_time, operator.headers, "resolved", "Xong").status_code == 200
    clock.advance(timedelta(hours=7))  # nine hours after opening
    assert move(client, late, operator.headers, "resolved", "Xong").status_code == 200
    clock.advance(timedelta(hours=1))

    def report(**params: Any) -> dict[str, Any]:
        response = client.get(f"{INCIDENTS}/sla-report", params=params, headers=operator.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    by_department = report(**{"from": "2026-11-20", "to": "2026-11-20"})
    rows = {row["key"]: row for row in by_department["rows"]}
    assert list(rows) == [ENV, CONSTRUCTION, HEALTH]  # by code: SNNMT, SXD, SYT
    env = rows[ENV]
    assert env["name"] == "Sở Nông nghiệp và Môi trường"
    assert (env["total"], env["acknowledged"], env["ack_on_time"]) == (2, 2, 1)
    assert (env["resolved"], env["resolved_on_time"], env["overdue_open"]) == (2, 1, 0)
    assert (env["on_time_rate"], env["ack_on_time_rate"]) == (0.5, 0.5)
    assert env["median_minutes_to_resolve"] == 330.0  # 120 and 540 minutes
    health = rows[HEALTH]
    assert (health["total"], health["resolved"], health["overdue_open"]) == (1, 0, 1)
    assert (health["on_time_rate"], health["ack_on_time_rate"]) == (0.0, 0.0)
    assert health["median_minutes_to_resolve"] is None
    # Deadlines still running count neither way.
    light = rows[CONSTRUCTION]
    assert light["total"] == 1
    assert (light["on_time_rate"], light["ack_on_time_rate"]) == (None, None)
    overall = by_department["overall"]
    assert (overall["total"], overall["resolved"], overall["resolved_on_time"]) == (4, 2, 1)
    assert overall["on_time_rate"] == round(1 / 3, 4)
    assert overall["ack_on_time_rate"] == round(1 / 3, 4)

    by_unit = report(group_by="unit")
    assert by_unit["from_date"] == "2026-10-22"
    assert by_unit["to_date"] == "2026-11-20"
    units = {row["key"]: row for row in by_unit["rows"]}
    assert units[WARD]["name"] == "Phường Trấn Biên"
    assert units[WARD]["on_time_rate"] == 0.5
    assert units[OTHER_WARD]["overdue_open"] == 1
    # Another period holds nothing.
    empty = report(**{"from": "2026-11-21", "to": "2026-11-30"})
    assert empty["rows"] == []
    assert empty["overall"]["total"] == 0
    for params in ({"from": "2026-11-21", "to": "2026-11-20"}, {"from": "1999-01-01"}):
        response = client.get(f"{INCIDENTS}/sla-report", params=params, headers=operator.headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "from"


def test_categories_are_managed_by_incident_administrators(
    client: TestClient, admin: Person, operator: Person, open_incident: IncidentFactory
) -> None:
    url = f"{INCIDENTS}/categories"
    listed = client.get(url, headers=operator.headers).json()
    codes = [c["code"] for c in listed["items"]]
    assert codes == sorted(
        [
            "air_pollution", "water_pollution", "flooding", "reservoir_level",
            "traffic_congestion", "hospital_overload", "waste_overflow", "streetlight_fault",
            "device_fault", "other",
        ]
    )  # fmt: skip
    air = client.get(f"{url}/air_pollution", headers=operator.headers).json()
    assert (air["department_code"], air["sector"], air["name"]) == (
        ENV,
        "environment",
        "Ô nhiễm không khí",
    )
    new = {"code": "noise", "name": "Tiếng ồn", "sector": "environment", "department_code": ENV}
    assert client.post(url, json=new, headers=operator.headers).status_code == 403
    created = client.post(url, json=new, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert created.json()["default_severity"] == "medium"
    assert client.post(url, json=new, headers=admin.headers).status_code == 409
    bad = client.post(
        url, json={**new, "code": "x1", "department_code": "XYZ"}, headers=admin.headers
    )
    assert bad.status_code == 422
    renamed = client.patch(
        f"{url}/noise", json={"name_en": "Noise", "default_severity": "low"}, headers=admin.headers
    )
    assert renamed.json()["name_en"] == "Noise"
    assert open_incident(category_code="noise")["severity"] == "low"
    # Used: it cannot be deleted, only retired; retired, it takes no new incident.
    assert client.delete(f"{url}/noise", headers=admin.headers).status_code == 409
    retired = client.patch(f"{url}/noise", json={"is_active": False}, headers=admin.headers)
    assert retired.json()["is_active"] is False
    refused = client.post(
        INCIDENTS,
        json={"title": "Ồn", "category_code": "noise", "unit_code": WARD},
        headers=operator.headers,
    )
    assert refused.status_code == 422
    assert client.get(url, params={"active": False}, headers=admin.headers).json()["total"] == 1
    unused = client.post(url, json={**new, "code": "spare"}, headers=admin.headers)
    assert unused.status_code == 201
    assert client.delete(f"{url}/spare", headers=admin.headers).status_code == 204
    assert client.get(f"{url}/spare", headers=admin.headers).status_code == 404


def test_sla_policies_are_managed_by_incident_administrators(
    client: TestClient, admin: Person, operator: Person, open_incident: IncidentFactory
) -> None:
    url = f"{INCIDENTS}/sla-policies"
    listed = client.get(url, params={"limit": 100}, headers=operator.headers).json()
    defaults = [(p["severity"], p["business_hours"]) for p in listed["items"][:4]]
    assert defaults == [("low", True), ("medium", True), ("high", False), ("critical", False)]
    assert all(p["category_code"] is None for p in listed["items"][:4])
    body = {"category_code": "waste_overflow", "severity": "low", "ack_minutes": 60,
            "resolve_minutes": 120}  # fmt: skip
    assert client.post(url, json=body, headers=operator.headers).status_code == 403
    created = client.post(url, json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert client.post(url, json=body, headers=admin.headers).status_code == 409
    reversed_ = client.post(
        url, json={**body, "severity": "high", "ack_minutes": 200}, headers=admin.headers
    )
    assert reversed_.status_code == 422
    unknown = client.post(url, json={**body, "category_code": "volcano"}, headers=admin.headers)
    assert unknown.status_code == 422
    # Around the clock: two hours from T0.
    assert open_incident(category_code="waste_overflow")["due_resolve_at"] == "2026-11-20T05:00:00Z"
    policy_url = f"{url}/{created.json()['id']}"
    changed = client.patch(policy_url, json={"resolve_minutes": 30}, headers=admin.headers)
    assert changed.status_code == 422
    changed = client.patch(policy_url, json={"resolve_minutes": 180}, headers=admin.headers)
    assert changed.json()["resolve_minutes"] == 180
    assert open_incident(category_code="waste_overflow")["due_resolve_at"] == "2026-11-20T06:00:00Z"
    assert client.delete(policy_url, headers=admin.headers).status_code == 204
    assert client.get(policy_url, headers=admin.headers).status_code == 404


def test_holidays_are_managed_by_incident_administrators(
    client: TestClient, admin: Person, person: PersonFactory
) -> None:
    url = f"{INCIDENTS}/holidays"
    viewer = person("viewer")
    year = client.get(url, params={"year": 2026}, headers=viewer.headers).json()
    days = {h["day"]: h for h in year["items"]}
    # Tết Bính Ngọ, Hùng Kings (Sunday, so Monday off), 30/4-1/5, National Day with its swap.
    for day in ("2026-01-01", "2026-02-17", "2026-04-27", "2026-04-30", "2026-05-01",
                "2026-09-01", "2026-09-02"):  # fmt: skip
        assert days[day]["kind"] == "day_off", day
    assert days["2026-08-22"]["kind"] == "working_day"
    assert days["2026-02-17"]["name"].startswith("Tết Nguyên đán")
    assert client.get(url, params={"year": 2027}, headers=viewer.headers).json()["total"] >= 10
    holiday = {"day": "2026-11-24", "name": "Ngày Văn hóa Việt Nam"}
    assert client.post(url, json=holiday, headers=viewer.headers).status_code == 403
    assert client.post(url, json=holiday, headers=admin.headers).status_code == 201
    assert client.post(url, json=holiday, headers=admin.headers).status_code == 409
    renamed = client.patch(
        f"{url}/2026-11-24", json={"name_en": "Vietnamese Culture Day"}, headers=admin.headers
    )
    assert renamed.json() == {
        "day": "2026-11-24",
        "kind": "day_off",
        "name": "Ngày Văn hóa Việt Nam",
        "name_en": "Vietnamese Culture Day",
    }
    assert client.get(f"{url}/2026-11-24", headers=viewer.headers).status_code == 200
    assert client.delete(f"{url}/2026-11-24", headers=admin.headers).status_code == 204
    assert client.get(f"{url}/2026-11-24", headers=viewer.headers).status_code == 404
    assert client.get(f"{url}/not-a-day", headers=viewer.headers).status_code == 422
    far = client.post(url, json={**holiday, "day": "1900-01-01"}, headers=admin.headers)
    assert far.status_code == 422
