"""Scope on every route: a ward's people see their ward's incidents only, an area's people their
area's, a department's people the incidents their department leads or supports."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

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
)
from .test_attachments import JPEG


def _codes(client: TestClient, headers: dict[str, str], **params: Any) -> set[str]:
    response = client.get(INCIDENTS, params={"limit": 100, **params}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return {item["unit_code"] + "/" + item["department_code"] for item in body["items"]}


def test_every_route_keeps_to_the_caller_s_scope(
    client: TestClient,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
) -> None:
    here = open_incident(unit_code=WARD, department_code=ENV)
    next_door = open_incident(
        unit_code=OTHER_WARD,
        category_code="hospital_overload",
        supporting_department_codes=[ENV],
    )
    far = open_incident(unit_code=FAR_WARD, category_code="streetlight_fault")
    assert (next_door["department_code"], far["department_code"]) == (HEALTH, CONSTRUCTION)
    attachment = client.post(
        f"{INCIDENTS}/{next_door['id']}/attachments",
        files={"file": ("a.jpg", JPEG, "image/jpeg")},
        headers=operator.headers,
    ).json()
    everything = {f"{WARD}/{ENV}", f"{OTHER_WARD}/{HEALTH}", f"{FAR_WARD}/{CONSTRUCTION}"}
    assert _codes(client, operator.headers) == everything

    ward_officer = person("unit_officer", unit_code=WARD)
    ward_leader = person("leader", unit_code=WARD)
    area_operator = person("operator", area_code=AREA)
    env_officer = person("department_officer", department_code=ENV)
    health_officer = person("department_officer", department_code=HEALTH)

    assert _codes(client, ward_officer.headers) == {f"{WARD}/{ENV}"}
    assert _codes(client, ward_leader.headers) == {f"{WARD}/{ENV}"}
    assert _codes(client, area_operator.headers) == {f"{WARD}/{ENV}", f"{OTHER_WARD}/{HEALTH}"}
    # A supporting department sees the incident as well as the main one.
    assert _codes(client, env_officer.headers) == {f"{WARD}/{ENV}", f"{OTHER_WARD}/{HEALTH}"}
    assert _codes(client, health_officer.headers) == {f"{OTHER_WARD}/{HEALTH}"}
    # Filters never widen the scope.
    assert _codes(client, ward_officer.headers, unit_code=OTHER_WARD) == set()
    assert _codes(client, ward_officer.headers, area_code=AREA) == {f"{WARD}/{ENV}"}
    assert _codes(client, health_officer.headers, department_code=ENV) == {f"{OTHER_WARD}/{HEALTH}"}
    assert _codes(client, ward_officer.headers, q=next_door["code"]) == set()

    # Every route of an incident out of scope answers as if it did not exist.
    base = f"{INCIDENTS}/{next_door['id']}"
    h = ward_officer.headers
    answers = [
        client.get(base, headers=h),
        client.patch(base, json={"title": "Đổi tên"}, headers=h),
        client.post(f"{base}/assign", json={"department_code": ENV}, headers=h),
        client.post(f"{base}/transition", json={"to": "assigned"}, headers=h),
        client.post(f"{base}/comments", json={"body": "Xin chào"}, headers=h),
        client.post(
            f"{base}/attachments", files={"file": ("b.jpg", JPEG, "image/jpeg")}, headers=h
        ),
        client.get(f"{base}/attachments/{attachment['id']}", headers=h),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all("SC-" not in a.text for a in answers)
    for outsider in (health_officer, area_operator):
        far_url = f"{INCIDENTS}/{far['id']}"
        assert client.get(far_url, headers=outsider.headers).status_code == 404
    assert (
        client.get(f"{INCIDENTS}/{here['id']}", headers=health_officer.headers).status_code == 404
    )

    # The SLA report counts only what the caller sees.
    for who, expected in ((ward_officer, 1), (area_operator, 2), (env_officer, 2), (operator, 3)):
        report = client.get(f"{INCIDENTS}/sla-report", headers=who.headers).json()
        assert report["overall"]["total"] == expected, who.role
    by_unit = client.get(
        f"{INCIDENTS}/sla-report", params={"group_by": "unit"}, headers=ward_officer.headers
    ).json()
    assert [row["key"] for row in by_unit["rows"]] == [WARD]


def test_nobody_opens_an_incident_outside_their_scope(
    client: TestClient, person: PersonFactory
) -> None:
    area_operator = person("operator", area_code=AREA)
    inside = client.post(
        INCIDENTS,
        json={"title": "Ngập cục bộ", "category_code": "flooding", "unit_code": OTHER_WARD},
        headers=area_operator.headers,
    )
    assert inside.status_code == 201
    outside = client.post(
        INCIDENTS,
        json={"title": "Ngập cục bộ", "category_code": "flooding", "unit_code": FAR_WARD},
        headers=area_operator.headers,
    )
    assert outside.status_code == 422
    assert outside.json()["errors"][0]["field"] == "unit_code"
    # Nothing was written by the refused request.
    listed = client.get(INCIDENTS, headers=area_operator.headers).json()
    assert listed["total"] == 1
    assert listed["items"][0]["code"] == "SC-2026-000001"


def test_anonymous_callers_and_viewers(
    client: TestClient, person: PersonFactory, open_incident: IncidentFactory
) -> None:
    incident_id = open_incident()["id"]
    for url in (INCIDENTS, f"{INCIDENTS}/{incident_id}", f"{INCIDENTS}/sla-report"):
        assert client.get(url).status_code == 401
    viewer = person("viewer")
    assert client.get(INCIDENTS, headers=viewer.headers).json()["total"] == 1
