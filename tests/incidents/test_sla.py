"""SLA deadlines from the policies and the calendar, breaches found by the job, escalation to
the superior level and the department head."""

from __future__ import annotations

import itertools
from datetime import timedelta

from fastapi.testclient import TestClient

from cityops.auth import service as auth_service
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.incidents import jobs

from .conftest import (
    AREA,
    ENV,
    FAR_WARD,
    HEALTH,
    INCIDENTS,
    WARD,
    IncidentFactory,
    Person,
    PersonFactory,
    Recorder,
    move,
)

_ticks = itertools.count(1)


def _run_jobs(runtime: Runtime) -> None:
    # Each call is a moment far enough after the previous one for every job to be due.
    runtime.jobs.run_due(now=next(_ticks) * 1_000_000.0)


def test_deadlines_follow_the_policy_and_the_working_calendar(
    client: TestClient, admin: Person, open_incident: IncidentFactory
) -> None:
    # T0 is Friday 20 November 2026, 10:00 in Đồng Nai. Medium severity: two working hours to
    # start, sixteen to resolve, in office hours (07:30-11:30, 13:00-17:00, Monday to Friday).
    medium = open_incident()
    assert medium["due_ack_at"] == "2026-11-20T06:30:00Z"  # Friday 13:30
    assert medium["due_resolve_at"] == "2026-11-24T03:00:00Z"  # Tuesday 24, 10:00
    # A day off added to the calendar moves the deadlines of incidents opened afterwards.
    holiday = client.post(
        f"{INCIDENTS}/holidays",
        json={"day": "2026-11-24", "name": "Ngày Văn hóa Việt Nam", "name_en": "Culture Day"},
        headers=admin.headers,
    )
    assert holiday.status_code == 201, holiday.text
    later = open_incident()
    assert later["due_resolve_at"] == "2026-11-25T03:00:00Z"  # Wednesday 25, 10:00
    # High and critical severities run around the clock.
    high = open_incident(severity="high")
    assert high["due_ack_at"] == "2026-11-20T03:30:00Z"
    assert high["due_resolve_at"] == "2026-11-20T11:00:00Z"
    # A category may have its own policy (hospital overload at critical severity).
    critical = open_incident(category_code="hospital_overload", severity="critical")
    assert critical["due_ack_at"] == "2026-11-20T03:10:00Z"
    assert critical["due_resolve_at"] == "2026-11-20T05:00:00Z"
    # Without any policy for the severity, the incident has no deadline.
    policies = client.get(
        f"{INCIDENTS}/sla-policies", params={"limit": 500}, headers=admin.headers
    ).json()["items"]
    for policy in policies:
        if policy["severity"] == "low":
            deleted = client.delete(
                f"{INCIDENTS}/sla-policies/{policy['id']}", headers=admin.headers
            )
            assert deleted.status_code == 204
    none = open_incident(severity="low")
    assert none["due_ack_at"] is None
    assert none["due_resolve_at"] is None


def test_a_breached_deadline_escalates_to_the_superior_level_and_the_department_head(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
    events: Recorder,
) -> None:
    area_operator = person("operator", area_code=AREA)
    ward_leader = person("leader", unit_code=WARD)
    head = person("leader", department_code=ENV)
    expected = sorted([operator.id, area_operator.id, ward_leader.id, head.id])
    # Not escalation targets: another ward's leader, another department's head, officers,
    # viewers, and accounts that were deactivated.
    person("leader", unit_code=FAR_WARD)
    person("leader", department_code=HEALTH)
    person("department_officer", department_code=ENV)
    person("viewer")
    gone = person("operator")
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        user = auth_service.get(session=session, user_id=gone.id)
        assert user is not None
        user.is_active = False

    assert "incidents.check_sla" in runtime.jobs.jobs
    incident = open_incident(severity="high")  # 30 minutes to start, 8 hours to resolve
    quiet = open_incident(severity="high")
    incident_id = incident["id"]
    assert move(client, quiet["id"], operator.headers, "assigned").status_code == 200
    assert move(client, quiet["id"], operator.headers, "in_progress").status_code == 200
    assert move(client, quiet["id"], operator.headers, "resolved", "Xong").status_code == 200
    events.events.clear()

    clock.advance(timedelta(minutes=29))
    _run_jobs(runtime)
    assert events.events == []
    clock.advance(timedelta(minutes=2))
    _run_jobs(runtime)
    assert events.types() == ["incidents.sla_breached", "incidents.incident_escalated"]
    breached, escalated = events.events
    assert breached.data["incident_id"] == incident_id
    assert breached.data["breach"] == "ack"
    assert escalated.data["escalation_level"] == 1
    assert escalated.data["notify_user_ids"] == expected
    assert escalated.data["department_code"] == ENV
    assert breached.correlation_id == escalated.correlation_id
    detail = client.get(f"{INCIDENTS}/{incident_id}", headers=operator.headers).json()
    assert detail["ack_breached"] is True
    assert detail["resolve_breached"] is False
    assert detail["escalation_level"] == 1
    assert detail["overdue"] is True
    assert [e["kind"] for e in detail["timeline"]][-2:] == ["sla_breached", "escalated"]
    assert detail["timeline"][-1]["data"]["notify_user_ids"] == expected
    assert detail["timeline"][-1]["actor_kind"] == "system"

    # A breach is reported once.
    _run_jobs(runtime)
    assert len(events.events) == 2
    # Work starts late; the resolution deadline passes too: level 2.
    assert move(client, incident_id, operator.headers, "assigned").status_code == 200
    assert move(client, incident_id, operator.headers, "in_progress").status_code == 200
    events.events.clear()
    clock.advance(timedelta(hours=8))
    assert jobs.check_sla(runtime) == 1
    assert events.types() == ["incidents.sla_breached", "incidents.incident_escalated"]
    assert events.events[0].data["breach"] == "resolve"
    assert events.events[1].data["escalation_level"] == 2
    assert events.events[1].data["notify_user_ids"] == expected
    detail = client.get(f"{INCIDENTS}/{incident_id}", headers=operator.headers).json()
    assert detail["resolve_breached"] is True
    assert detail["escalation_level"] == 2
    # The incident resolved in time never breached.
    resolved = client.get(f"{INCIDENTS}/{quiet['id']}", headers=operator.headers).json()
    assert resolved["ack_breached"] is False
    assert resolved["resolve_breached"] is False
    assert resolved["escalation_level"] == 0


def test_overdue_incidents_can_be_listed(
    client: TestClient,
    clock: FrozenClock,
    operator: Person,
    open_incident: IncidentFactory,
) -> None:
    late = open_incident(severity="critical")  # 15 minutes to start
    started = open_incident(severity="critical")
    calm = open_incident(severity="low")
    assert move(client, started["id"], operator.headers, "assigned").status_code == 200
    assert move(client, started["id"], operator.headers, "in_progress").status_code == 200
    clock.advance(timedelta(minutes=20))

    def ids(**params: object) -> list[int]:
        response = client.get(INCIDENTS, params=params, headers=operator.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    # No job has run yet: "overdue" is judged against the clock, not the breach flags.
    assert ids(overdue=True) == [late["id"]]
    assert set(ids(overdue=False)) == {started["id"], calm["id"]}
    listed = client.get(INCIDENTS, headers=operator.headers).json()["items"]
    assert {item["id"]: item["overdue"] for item in listed} == {
        late["id"]: True,
        started["id"]: False,
        calm["id"]: False,
    }
