"""The incident workflow: each step with the permission it needs, refused moves, the timeline,
the audit log and the events of every change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.auth.models import AuditLog
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

from .conftest import (
    CONSTRUCTION,
    ENV,
    FAR_WARD,
    HEALTH,
    INCIDENTS,
    WARD,
    IncidentFactory,
    Person,
    PersonFactory,
    Recorder,
    login,
    move,
)


def _assign(client: TestClient, incident_id: int, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"{INCIDENTS}/{incident_id}/assign", json=body, headers=headers)


def _get(client: TestClient, incident_id: int, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"{INCIDENTS}/{incident_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_incident_goes_through_its_whole_life(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
    events: Recorder,
) -> None:
    officer = person("department_officer", department_code=ENV)
    created = open_incident()
    assert created["code"] == "SC-2026-000001"
    assert created["status"] == "new"
    # The category's defaults: the environment department, its sector and severity.
    assert created["department_code"] == ENV
    assert created["sector"] == "environment"
    assert created["severity"] == "medium"
    assert created["unit_code"] == WARD
    assert created["source"] == "manual"
    assert created["created_by"] == operator.id
    assert created["allowed_transitions"] == ["assigned"]
    incident_id = created["id"]

    clock.advance(timedelta(minutes=5))
    assigned = _assign(
        client,
        incident_id,
        operator.headers,
        department_code=ENV,
        supporting_department_codes=[HEALTH],
        assignee_id=officer.id,
        note="Phối hợp Sở Y tế cảnh báo người dân",
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["status"] == "assigned"
    assert assigned.json()["supporting_department_codes"] == [HEALTH]
    assert assigned.json()["assignee_id"] == officer.id

    clock.advance(timedelta(minutes=10))
    started = move(client, incident_id, officer.headers, "in_progress")
    assert started.status_code == 200, started.text
    assert started.json()["acknowledged_at"] == (clock.now()).isoformat().replace("+00:00", "Z")

    clock.advance(timedelta(hours=2))
    resolved = move(client, incident_id, officer.headers, "resolved", "Đã xử lý nguồn đốt rác")
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_at"] is not None

    closed = move(client, incident_id, operator.headers, "closed")
    assert closed.status_code == 200, closed.text
    assert closed.json()["allowed_transitions"] == ["in_progress"]

    reopened = move(client, incident_id, operator.headers, "in_progress", "Người dân phản ánh lại")
    assert reopened.status_code == 200, reopened.text
    body = reopened.json()
    assert body["status"] == "in_progress"
    assert body["resolved_at"] is None
    assert body["closed_at"] is None

    timeline = [
        (e["kind"], e["from_status"], e["to_status"], e["actor_name"], e["note"])
        for e in body["timeline"]
    ]
    assert timeline == [
        ("created", None, "new", operator.username, None),
        ("assigned", "new", "assigned", operator.username, "Phối hợp Sở Y tế cảnh báo người dân"),
        ("started", "assigned", "in_progress", officer.username, None),
        ("resolved", "in_progress", "resolved", officer.username, "Đã xử lý nguồn đốt rác"),
        ("closed", "resolved", "closed", operator.username, None),
        ("reopened", "closed", "in_progress", operator.username, "Người dân phản ánh lại"),
    ]
    assert body["timeline"][1]["data"]["supporting_department_codes"] == [HEALTH]

    assert events.types() == ["incidents.incident_created"] + ["incidents.incident_changed"] * 5
    changes = [
        (e.data["change"], e.data["previous_status"], e.data["status"]) for e in events.events
    ]
    assert changes[1:] == [
        ("assigned", "new", "assigned"),
        ("started", "assigned", "in_progress"),
        ("resolved", "in_progress", "resolved"),
        ("closed", "resolved", "closed"),
        ("reopened", "closed", "in_progress"),
    ]
    last = events.events[-1].data
    assert last["department_code"] == ENV
    assert last["department_codes"] == [ENV, HEALTH]
    assert last["actor_id"] == operator.id
    assert last["note"] == "Người dân phản ánh lại"
    assert last["code"] == "SC-2026-000001"
    assert last["unit_code"] == WARD

    # Every status the incident went through is in the audit log, with who did it.
    with unit_of_work(runtime.session_factory) as session:
        rows = session.scalars(
            select(AuditLog)
            .where(AuditLog.resource_type == "incident", AuditLog.resource_id == str(incident_id))
            .order_by(AuditLog.id)
        ).all()
        statuses = [
            (row.action, (row.before or {}).get("status"), (row.after or {}).get("status"))
            for row in rows
            if row.action == "create" or "status" in (row.after or {})
        ]
        actors = {row.actor_name for row in rows}
        units = {row.unit_code for row in rows}
    assert statuses == [
        ("create", None, "new"),
        ("update", "new", "assigned"),
        ("update", "assigned", "in_progress"),
        ("update", "in_progress", "resolved"),
        ("update", "resolved", "closed"),
        ("update", "closed", "in_progress"),
    ]
    assert actors == {operator.username, officer.username}
    assert units == {WARD}


def test_each_step_needs_its_permission(
    client: TestClient,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
) -> None:
    viewer = person("viewer")
    leader = person("leader")
    env_officer = person("department_officer", department_code=ENV)
    ward_officer = person("unit_officer", unit_code=WARD)
    incident_id = open_incident()["id"]

    # Reading is for everyone who may read incidents; creating is for operators.
    for reader in (viewer, leader, env_officer, ward_officer):
        assert client.get(f"{INCIDENTS}/{incident_id}", headers=reader.headers).status_code == 200
    refused = client.post(
        INCIDENTS,
        json={"title": "Thử", "category_code": "flooding", "unit_code": WARD},
        headers=env_officer.headers,
    )
    assert refused.status_code == 403

    # Assigning: only incident:assign (operators), not the people doing the work.
    for someone in (viewer, leader, env_officer, ward_officer):
        response = _assign(client, incident_id, someone.headers, department_code=ENV)
        assert response.status_code == 403, (someone.role, response.text)
    assert _assign(client, incident_id, operator.headers, department_code=ENV).status_code == 200

    # Starting work: incident:work, for the responsible department or the unit's officers.
    for someone in (viewer, leader):
        assert move(client, incident_id, someone.headers, "in_progress").status_code == 403
    started = move(client, incident_id, ward_officer.headers, "in_progress")
    assert started.status_code == 200
    # Whoever starts it takes it when no one was named.
    assert started.json()["assignee_id"] == ward_officer.id

    for someone in (viewer, leader):
        assert move(client, incident_id, someone.headers, "resolved", "x").status_code == 403
    assert move(client, incident_id, env_officer.headers, "resolved", "Đã xử lý").status_code == 200

    # Closing and reopening: incident:assign again.
    for someone in (viewer, leader, env_officer, ward_officer):
        assert move(client, incident_id, someone.headers, "closed").status_code == 403
    assert move(client, incident_id, operator.headers, "closed").status_code == 200
    for someone in (env_officer, ward_officer):
        response = move(client, incident_id, someone.headers, "in_progress", "Chưa xong")
        assert response.status_code == 403
    reopened = move(client, incident_id, operator.headers, "in_progress", "Chưa xong")
    assert reopened.status_code == 200


def test_a_move_the_workflow_does_not_allow_is_refused_naming_the_allowed_ones(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    incident_id = open_incident()["id"]
    response = move(client, incident_id, operator.headers, "resolved", "Xong")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert "new" in body["detail"]
    assert "assigned" in body["detail"]
    assert body["errors"][0]["field"] == "to"
    assert body["errors"][0]["current_status"] == "new"
    assert body["errors"][0]["allowed"] == ["assigned"]

    english = client.post(
        f"{INCIDENTS}/{incident_id}/transition",
        json={"to": "closed"},
        headers={**operator.headers, "Accept-Language": "en"},
    )
    assert english.status_code == 409
    assert english.json()["detail"] == (
        "Incident SC-2026-000001 cannot move from status new to closed. Allowed next: assigned."
    )
    # Nothing changed.
    detail = client.get(f"{INCIDENTS}/{incident_id}", headers=operator.headers).json()
    assert detail["status"] == "new"
    assert [e["kind"] for e in detail["timeline"]] == ["created"]
    assert move(client, incident_id, operator.headers, "bogus").status_code == 422


def test_resolving_needs_a_note_and_reopening_a_reason(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    incident_id = open_incident()["id"]
    # Moving to "assigned" through the workflow assigns to the category's department.
    assigned = move(client, incident_id, operator.headers, "assigned")
    assert assigned.status_code == 200
    assert assigned.json()["department_code"] == ENV
    assert move(client, incident_id, operator.headers, "in_progress").status_code == 200
    for note in (None, "   "):
        response = move(client, incident_id, operator.headers, "resolved", note)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "note"
    assert move(client, incident_id, operator.headers, "resolved", "Đã xử lý").status_code == 200
    response = move(client, incident_id, operator.headers, "in_progress")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "note"
    assert "lý do" in response.json()["errors"][0]["message"]
    assert _get(client, incident_id, operator.headers)["status"] == "resolved"


def test_assignment_checks_departments_and_the_assignee(
    client: TestClient,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
    events: Recorder,
) -> None:
    incident_id = open_incident()["id"]
    health_officer = person("department_officer", department_code=HEALTH)
    far_officer = person("unit_officer", unit_code=FAR_WARD)
    ward_officer = person("unit_officer", unit_code=WARD)
    viewer = person("viewer")

    unknown = _assign(
        client, incident_id, operator.headers, department_code="XYZ",
        supporting_department_codes=[CONSTRUCTION, "NOPE"],
    )  # fmt: skip
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == [
        "department_code",
        "supporting_department_codes[1]",
    ]
    # Someone of another department, or of another ward, cannot be the assignee.
    for outsider in (health_officer, far_officer):
        response = _assign(
            client, incident_id, operator.headers, department_code=ENV, assignee_id=outsider.id
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "assignee_id"
    # Nor someone who may not work on incidents.
    response = _assign(
        client, incident_id, operator.headers, department_code=ENV, assignee_id=viewer.id
    )
    assert response.status_code == 422
    assert _get(client, incident_id, operator.headers)["status"] == "new"
    # Once the health department supports, its officer may be named; so may the ward's officer.
    ok = _assign(
        client,
        incident_id,
        operator.headers,
        department_code=ENV,
        supporting_department_codes=[HEALTH],
        assignee_id=health_officer.id,
    )
    assert ok.status_code == 200, ok.text
    assert move(client, incident_id, health_officer.headers, "in_progress").status_code == 200
    again = _assign(
        client, incident_id, operator.headers, department_code=ENV, assignee_id=ward_officer.id
    )
    assert again.status_code == 200, again.text
    body = again.json()
    # Reassignment keeps the status and is its own timeline entry.
    assert body["status"] == "in_progress"
    assert body["supporting_department_codes"] == []
    assert body["timeline"][-1]["kind"] == "reassigned"
    assert body["timeline"][-1]["data"]["previous"]["assignee_id"] == health_officer.id
    assert events.of("incidents.incident_changed")[-1].data["change"] == "reassigned"
    # The health department no longer takes part: its officer loses sight of the incident.
    assert (
        client.get(f"{INCIDENTS}/{incident_id}", headers=health_officer.headers).status_code == 404
    )

    assert move(client, incident_id, operator.headers, "resolved", "Xong").status_code == 200
    closed = _assign(client, incident_id, operator.headers, department_code=ENV)
    assert closed.status_code == 409


def test_editing_an_open_incident(
    client: TestClient,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
    events: Recorder,
) -> None:
    officer = person("department_officer", department_code=ENV)
    created = open_incident()
    incident_id = created["id"]
    url = f"{INCIDENTS}/{incident_id}"
    edited = client.patch(url, json={"description": "Khói từ bãi rác"}, headers=officer.headers)
    assert edited.status_code == 200
    assert edited.json()["description"] == "Khói từ bãi rác"
    # Severity and category change the SLA: only dispatchers may change them.
    assert client.patch(url, json={"severity": "high"}, headers=officer.headers).status_code == 403
    raised = client.patch(url, json={"severity": "critical"}, headers=operator.headers)
    assert raised.status_code == 200
    body = raised.json()
    assert body["severity"] == "critical"
    # The critical default policy: 15 minutes to start, 4 hours to resolve, around the clock.
    assert body["due_ack_at"] == "2026-11-20T03:15:00Z"
    assert body["due_resolve_at"] == "2026-11-20T07:00:00Z"
    assert body["timeline"][-1]["kind"] == "updated"
    assert body["timeline"][-1]["data"]["changes"]["severity"] == ["medium", "critical"]
    assert events.of("incidents.incident_changed")[-1].data["change"] == "updated"
    recategorised = client.patch(
        url, json={"category_code": "hospital_overload"}, headers=operator.headers
    )
    assert recategorised.json()["sector"] == "health"
    # Hospital overload at critical severity has its own, shorter policy.
    assert recategorised.json()["due_resolve_at"] == "2026-11-20T05:00:00Z"
    assert client.patch(url, json={"title": None}, headers=operator.headers).status_code == 422
    retired = client.patch(url, json={"category_code": "nope"}, headers=operator.headers)
    assert retired.status_code == 422

    assert move(client, incident_id, operator.headers, "assigned").status_code == 200
    assert move(client, incident_id, operator.headers, "in_progress").status_code == 200
    assert move(client, incident_id, operator.headers, "resolved", "Xong").status_code == 200
    assert client.patch(url, json={"title": "Mới"}, headers=operator.headers).status_code == 409


def test_comments_are_in_the_timeline_and_announced(
    client: TestClient,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
    events: Recorder,
) -> None:
    officer = person("department_officer", department_code=ENV)
    viewer = person("viewer")
    incident_id = open_incident()["id"]
    url = f"{INCIDENTS}/{incident_id}/comments"
    response = client.post(
        url, json={"body": "Đoàn kiểm tra đã đến hiện trường.\nĐang lấy mẫu.", "public": True},
        headers=officer.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    comment = response.json()
    assert comment["author_id"] == officer.id
    assert comment["public"] is True
    assert client.post(url, json={"body": "x"}, headers=viewer.headers).status_code == 403
    assert client.post(url, json={"body": ""}, headers=officer.headers).status_code == 422
    assert client.post(url, json={"body": "a\x00b"}, headers=officer.headers).status_code == 422
    detail = client.get(f"{INCIDENTS}/{incident_id}", headers=viewer.headers).json()
    assert [c["id"] for c in detail["comments"]] == [comment["id"]]
    entry = detail["timeline"][-1]
    assert entry["kind"] == "commented"
    assert entry["data"] == {"comment_id": comment["id"], "public": True}
    announced = events.of("incidents.comment_added")
    assert len(announced) == 1
    assert announced[0].data["note"].startswith("Đoàn kiểm tra")
    assert announced[0].data["public"] is True
    assert announced[0].data["actor_id"] == officer.id


def test_codes_count_per_year_in_local_time(
    client: TestClient, clock: FrozenClock, operator: Person, open_incident: IncidentFactory
) -> None:
    assert open_incident()["code"] == "SC-2026-000001"
    assert open_incident()["code"] == "SC-2026-000002"
    # 31 December 2026, 17:30 UTC is already 1 January 2027 in Đồng Nai.
    clock.set(clock.now().replace(year=2026, month=12, day=31, hour=17, minute=30))
    headers = login(client, operator.username)
    assert open_incident(headers=headers)["code"] == "SC-2027-000001"
    clock.set(clock.now().replace(hour=16, minute=59))
    assert open_incident(headers=headers)["code"] == "SC-2026-000003"
