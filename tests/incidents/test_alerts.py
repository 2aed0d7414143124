"""Alerts open incidents when their rule says so, in the alert's own transaction, once per alert;
a cleared alert is noted in its incident's timeline."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.incidents import service
from cityops.incidents.models import Incident

from .conftest import CONSTRUCTION, ENV, INCIDENTS, TRAN_BIEN, WARD, Person, Recorder


def alert_data(alert_id: int = 41, **overrides: Any) -> dict[str, Any]:
    """The payload of an `alerts.alert_opened` event (the operations event contract)."""
    data: dict[str, Any] = {
        "alert_id": alert_id,
        "rule_id": 7,
        "rule_code": "aqi-pm25-unhealthy",
        "kind": "threshold",
        "severity": "high",
        "status": "open",
        "tenant": "default",
        "entity_id": "urn:ngsi-ld:AirQualityObserved:dongnai-tran-bien",
        "entity_type": "AirQualityObserved",
        "attribute": "pm25",
        "value": 87.5,
        "unit_code": WARD,
        "lat": TRAN_BIEN["lat"],
        "lon": TRAN_BIEN["lon"],
        "sector": "environment",
        "title_vi": "PM2.5 ở mức có hại cho sức khỏe tại Trấn Biên",
        "title_en": "PM2.5 unhealthy in Trấn Biên",
        "opened_at": "2026-11-20T03:00:00+00:00",
        "resolved_at": None,
        "actor_id": None,
        "policy": {
            "incident": {"category": "air_pollution", "department_code": None},
            "notify": [],
        },
    }
    data.update(overrides)
    return data


def publish(runtime: Runtime, event_type: str, data: dict[str, Any], *, fail: bool = False) -> str:
    """Publish an alerts event in its own transaction (rolled back if `fail`); return its id."""
    event = Event(type=event_type, data=data, at=runtime.clock.now(), correlation_id="obs-123")
    expect_failure = pytest.raises(RuntimeError) if fail else nullcontext()
    with expect_failure, unit_of_work(runtime.session_factory) as session:
        runtime.bus.publish_after_commit(session, event)
        # Inside the alert's transaction the incident already exists.
        incident = service.get_by_alert_id(session=session, alert_id=data["alert_id"])
        if event_type == "alerts.alert_opened" and data["policy"]["incident"] is not None:
            assert incident is not None
        if fail:
            raise RuntimeError("the alert's transaction fails")
    return event.correlation_id


def _count(runtime: Runtime) -> int:
    with unit_of_work(runtime.session_factory) as session:
        return int(session.scalar(select(func.count()).select_from(Incident)) or 0)


def test_an_alert_opens_an_incident_assigned_to_the_department_and_the_ward(
    client: TestClient, runtime: Runtime, operator: Person, events: Recorder
) -> None:
    publish(runtime, "alerts.alert_opened", alert_data())
    listed = client.get(INCIDENTS, params={"source": "alert"}, headers=operator.headers).json()
    assert listed["total"] == 1
    incident = client.get(f"{INCIDENTS}/{listed['items'][0]['id']}", headers=operator.headers)
    body = incident.json()
    assert body["status"] == "assigned"
    assert body["department_code"] == ENV
    assert body["unit_code"] == WARD
    assert body["severity"] == "high"
    assert body["category_code"] == "air_pollution"
    assert body["alert_id"] == 41
    assert body["title"] == "PM2.5 ở mức có hại cho sức khỏe tại Trấn Biên"
    assert "aqi-pm25-unhealthy" in body["description"]
    assert body["due_ack_at"] == "2026-11-20T03:30:00Z"
    assert [(e["kind"], e["actor_name"]) for e in body["timeline"]] == [
        ("created", "rule:aqi-pm25-unhealthy"),
        ("assigned", "rule:aqi-pm25-unhealthy"),
    ]
    assert body["timeline"][1]["data"]["assigned_by_rule"] == "aqi-pm25-unhealthy"
    assert body["timeline"][0]["data"]["value"] == 87.5
    # Announced after commit, traceable to the observation that raised the alert.
    created = events.of("incidents.incident_created")
    assert len(created) == 1
    assert created[0].correlation_id == "obs-123"
    assert created[0].data["status"] == "assigned"
    assert created[0].data["department_codes"] == [ENV]
    assert created[0].data["alert_id"] == 41


def test_one_incident_per_alert_and_none_if_the_alert_rolls_back(
    client: TestClient, runtime: Runtime, operator: Person, events: Recorder
) -> None:
    publish(runtime, "alerts.alert_opened", alert_data(alert_id=5), fail=True)
    assert _count(runtime) == 0
    assert events.events == []
    publish(runtime, "alerts.alert_opened", alert_data(alert_id=5))
    publish(runtime, "alerts.alert_opened", alert_data(alert_id=5))
    assert _count(runtime) == 1
    assert len(events.of("incidents.incident_created")) == 1
    # An operator cannot open a second incident for the same alert either.
    again = client.post(
        INCIDENTS,
        json={"title": "Trùng", "category_code": "air_pollution", "unit_code": WARD, "alert_id": 5},
        headers=operator.headers,
    )
    assert again.status_code == 409
    assert "SC-2026-000001" in again.json()["detail"]


def test_rules_choose_the_department_and_unknown_values_fall_back(
    client: TestClient, runtime: Runtime, operator: Person
) -> None:
    # The rule names the department; no unit code: the ward comes from the point.
    publish(
        runtime,
        "alerts.alert_opened",
        alert_data(
            alert_id=1,
            unit_code=None,
            policy={"incident": {"category": "flooding", "department_code": CONSTRUCTION}},
        ),
    )
    # An unknown category and department, a bad severity and a broken point still open one.
    publish(
        runtime,
        "alerts.alert_opened",
        alert_data(
            alert_id=2,
            unit_code="nowhere",
            lat=float("nan"),
            severity="apocalyptic",
            title_vi=None,
            title_en=None,
            policy={"incident": {"category": "martian_landing", "department_code": "NASA"}},
        ),
    )
    # No incident policy: nothing.
    publish(runtime, "alerts.alert_opened", alert_data(alert_id=3, policy={"incident": None}))
    items = client.get(INCIDENTS, params={"sort": "created_at"}, headers=operator.headers).json()
    flooding, other = items["items"]
    assert items["total"] == 2
    assert (flooding["category_code"], flooding["department_code"]) == ("flooding", CONSTRUCTION)
    assert flooding["unit_code"] == WARD
    assert (other["category_code"], other["department_code"]) == ("other", "VPUBND")
    assert other["severity"] == "medium"
    assert other["unit_code"] is None
    assert other["lat"] is None
    assert other["title"] == "Sự cố khác"


def test_a_cleared_alert_is_noted_but_does_not_close_the_incident(
    client: TestClient, runtime: Runtime, clock: FrozenClock, operator: Person
) -> None:
    publish(runtime, "alerts.alert_opened", alert_data(alert_id=9))
    cleared = alert_data(alert_id=9, status="resolved", resolved_at="2026-11-20T04:00:00+00:00")
    publish(runtime, "alerts.alert_resolved", cleared)
    publish(runtime, "alerts.alert_resolved", alert_data(alert_id=10, status="resolved"))
    item = client.get(INCIDENTS, headers=operator.headers).json()["items"][0]
    body = client.get(f"{INCIDENTS}/{item['id']}", headers=operator.headers).json()
    assert body["status"] == "assigned"
    assert body["timeline"][-1]["kind"] == "alert_cleared"
    assert body["timeline"][-1]["data"]["resolved_at"] == "2026-11-20T04:00:00+00:00"


def test_an_operator_opens_an_incident_for_an_alert_by_hand(
    client: TestClient, operator: Person, events: Recorder
) -> None:
    response = client.post(
        INCIDENTS,
        json={
            "title": "Mực nước hồ Trị An vượt báo động 2",
            "category_code": "reservoir_level",
            "severity": "critical",
            "alert_id": 77,
            "source_ref": "rule:tri-an-level",
            **TRAN_BIEN,
        },
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source"] == "alert"
    assert body["alert_id"] == 77
    assert body["unit_code"] == WARD
    assert body["status"] == "new"
    # reservoir_level at critical has its own policy: 10 minutes, then 3 hours.
    assert body["due_ack_at"] == "2026-11-20T03:10:00Z"
    assert events.of("incidents.incident_created")[0].data["alert_id"] == 77
