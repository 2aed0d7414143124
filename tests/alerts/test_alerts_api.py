"""The alerts API: filters, history with links to the observations, actions, and scope: a user
scoped to one ward never sees another ward's alert, on any route."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.alerts import flows
from cityops.core.clock import FrozenClock

from .conftest import API, LONG_KHANH, TAM_HIEP, TRAN_BIEN, Observe, alerts_of

BH = "urn:ngsi-ld:AirQualityObserved:dn-aq-test-bien-hoa"
TH = "urn:ngsi-ld:AirQualityObserved:dn-aq-test-tam-hiep"
LK = "urn:ngsi-ld:AirQualityObserved:dn-aq-test-long-khanh"


@pytest.fixture
def spread(observe: Observe, engine: flows.Engine, clock: FrozenClock) -> dict[str, int]:
    """A VN_AQI of 170 at stations in Trấn Biên, Tam Hiệp and Long Khánh: two alerts each
    (poor and bad). Return the station → number of alerts."""
    t = clock.now()
    for entity, point in ((BH, TRAN_BIEN), (TH, TAM_HIEP), (LK, LONG_KHANH)):
        observe(entity, "AirQualityObserved", t, point=point, airQualityIndex=60)
        observe(entity, "AirQualityObserved", t + timedelta(minutes=5), airQualityIndex=170)
    engine.process_pending()
    return {BH: 2, TH: 2, LK: 2}


def test_filters(client: TestClient, admin: dict[str, str], spread: dict[str, int]) -> None:
    everything = alerts_of(client, admin)
    assert len(everything) == 6
    assert {a["unit_code"] for a in everything} == {"26041", "26017", "26080"}
    assert len(alerts_of(client, admin, unit="26041")) == 2
    # A unit reaches its descendants (the province: every ward) and its successors (the
    # former Biên Hòa city: today's wards formed from it).
    assert len(alerts_of(client, admin, unit="75")) == 6
    assert {a["unit_code"] for a in alerts_of(client, admin, unit="731")} == {"26041", "26017"}
    assert len(alerts_of(client, admin, area="bien-hoa-cu")) == 4
    assert len(alerts_of(client, admin, area="bien-hoa-cu", unit="26017")) == 2
    assert {a["rule_code"] for a in alerts_of(client, admin, severity="medium")} == {"aqi-bad"}
    assert len(alerts_of(client, admin, rule="aqi-poor")) == 3
    assert len(alerts_of(client, admin, entity=LK)) == 2
    assert len(alerts_of(client, admin, sector="environment", status="open")) == 6
    assert alerts_of(client, admin, status="resolved") == []
    assert alerts_of(client, admin, since="2026-11-21T00:00:00Z") == []
    assert len(alerts_of(client, admin, until="2026-11-21T00:00:00+07:00")) == 6
    page = client.get(f"{API}/alerts", params={"limit": 4, "offset": 4}, headers=admin).json()
    assert (page["total"], len(page["items"])) == (6, 2)


def test_history_links_to_the_observations_that_raised_and_cleared_it(
    client: TestClient,
    admin: dict[str, str],
    observe: Observe,
    engine: flows.Engine,
    clock: FrozenClock,
    spread: dict[str, int],
) -> None:
    observe(BH, "AirQualityObserved", clock.now() + timedelta(minutes=10), airQualityIndex=40)
    engine.process_pending()
    (bad,) = alerts_of(client, admin, entity=BH, rule="aqi-bad")
    detail = client.get(f"{API}/alerts/{bad['id']}", headers=admin).json()
    assert detail["status"] == "resolved"
    assert detail["resolution"] == "auto"
    opened, resolved = detail["history"]
    assert (opened["kind"], opened["value"], resolved["kind"], resolved["value"]) == (
        "opened",
        170,
        "resolved",
        40,
    )
    for entry, value in ((opened, 170), (resolved, 40)):
        assert entry["correlation_id"]
        link = entry["observation"]
        assert link.startswith("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:")
        found = client.get(link, headers={**admin, "Accept": "application/json"})
        assert found.status_code == 200, found.text
        assert [i["value"] for i in found.json()["airQualityIndex"]] == [value]


def _actions(client: TestClient, headers: dict[str, str], alert_id: int) -> list[int]:
    base = f"{API}/alerts/{alert_id}"
    return [
        client.get(base, headers=headers).status_code,
        client.post(f"{base}/acknowledge", headers=headers).status_code,
        client.post(f"{base}/snooze", json={"minutes": 10}, headers=headers).status_code,
        client.post(f"{base}/resolve", json={"note": "x"}, headers=headers).status_code,
    ]


def test_a_ward_scoped_user_never_sees_another_wards_alert(
    client: TestClient,
    admin: dict[str, str],
    login_as: Callable[..., dict[str, str]],
    spread: dict[str, int],
) -> None:
    ward = login_as("operator", unit_code="26041")
    mine = alerts_of(client, ward)
    assert {a["unit_code"] for a in mine} == {"26041"}
    assert len(mine) == 2
    # Filters cannot widen the scope.
    assert alerts_of(client, ward, unit="26080") == []
    assert {a["unit_code"] for a in alerts_of(client, ward, area="bien-hoa-cu")} == {"26041"}
    assert alerts_of(client, ward, entity=LK) == []
    others = [a for a in alerts_of(client, admin) if a["unit_code"] != "26041"]
    for alert in others:
        assert _actions(client, ward, alert["id"]) == [404, 404, 404, 404]
    # Nothing changed on the other wards' alerts.
    assert (
        {a["status"] for a in others}
        == {a["status"] for a in alerts_of(client, admin) if a["unit_code"] != "26041"}
        == {"open"}
    )
    assert _actions(client, ward, mine[0]["id"]) == [200, 200, 200, 200]
    # Missing alerts look the same as other wards' alerts.
    assert _actions(client, ward, 999_999) == [404, 404, 404, 404]


def test_department_scope_and_permissions(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    spread: dict[str, int],
) -> None:
    environment = login_as("department_officer", department_code="SNNMT")
    assert len(alerts_of(client, environment)) == 6
    health = login_as("department_officer", department_code="SYT")
    assert alerts_of(client, health) == []
    viewer = login_as("viewer")
    some = alerts_of(client, viewer)[0]
    assert _actions(client, viewer, some["id"]) == [200, 403, 403, 403]
    assert client.get(f"{API}/alerts").status_code == 401


def test_lifecycle_rules(client: TestClient, admin: dict[str, str], spread: dict[str, int]) -> None:
    alert = alerts_of(client, admin, entity=BH, rule="aqi-bad")[0]
    base = f"{API}/alerts/{alert['id']}"
    en = {**admin, "Accept-Language": "en"}
    acked = client.post(f"{base}/acknowledge", json={"note": "đang kiểm tra"}, headers=admin)
    assert acked.json()["acknowledged_by"] is not None
    assert client.post(f"{base}/acknowledge", headers=en).status_code == 409
    past = client.post(f"{base}/snooze", json={"until": "2026-01-01T00:00:00Z"}, headers=en)
    assert past.status_code == 422
    assert "future" in past.json()["detail"]
    both = client.post(
        f"{base}/snooze", json={"minutes": 5, "until": "2026-12-01T00:00:00Z"}, headers=en
    )
    assert both.status_code == 422
    until = client.post(f"{base}/snooze", json={"until": "2026-11-20T05:00:00Z"}, headers=admin)
    assert until.json()["snoozed_until"].startswith("2026-11-20T05:00:00")
    done = client.post(f"{base}/resolve", json={"note": "đã xử lý"}, headers=admin).json()
    assert done["status"] == "resolved"
    assert done["resolved_by"] is not None
    assert [h["kind"] for h in done["history"]] == ["opened", "acknowledged", "snoozed", "resolved"]
    assert done["history"][-1]["note"] == "đã xử lý"
    assert client.post(f"{base}/resolve", headers=en).status_code == 409
    assert client.post(f"{base}/snooze", json={"minutes": 5}, headers=en).status_code == 409


def test_event_payloads_follow_the_contract(
    observe: Observe,
    engine: flows.Engine,
    clock: FrozenClock,
    alert_events: list[Any],
) -> None:
    t = clock.now()
    observe(BH, "AirQualityObserved", t, point=TRAN_BIEN, airQualityIndex=210)
    engine.process_pending()
    keys = {
        "alert_id",
        "rule_id",
        "rule_code",
        "kind",
        "severity",
        "status",
        "tenant",
        "entity_id",
        "entity_type",
        "attribute",
        "value",
        "unit_code",
        "lat",
        "lon",
        "sector",
        "title_vi",
        "title_en",
        "opened_at",
        "resolved_at",
        "actor_id",
        "policy",
    }
    assert {e.data["rule_code"] for e in alert_events} == {"aqi-poor", "aqi-bad", "aqi-very-bad"}
    for event in alert_events:
        assert keys <= set(event.data)
        assert event.type == "alerts.alert_opened"
        assert isinstance(event.data["alert_id"], int)
        assert (event.data["lat"], event.data["lon"]) == TRAN_BIEN
        assert set(event.data["policy"]) == {"incident", "notify"}
    assert len({e.correlation_id for e in alert_events}) == 1
