"""End to end: observations arriving through the NGSI-LD API and the simulator raise alerts in
Biên Hòa that resolve by themselves when the air clears."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.alerts import flows
from cityops.core.clock import FrozenClock
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.simulate import anomalies
from cityops.simulate import commands as simulate_commands
from cityops.simulate import flows as simulate_flows
from cityops.simulate.catalog import build_catalog, by_slug

from .conftest import API, TRAN_BIEN, alerts_of, iso

NGSI = "/ngsi-ld/v1"
STATION = "urn:ngsi-ld:AirQualityObserved:dn-aq-bien-hoa-e2e"


def test_an_ngsi_ld_patch_raises_an_alert_that_clears_by_itself(
    client: TestClient,
    admin: dict[str, str],
    login_as: Callable[..., dict[str, str]],
    engine: flows.Engine,
    clock: FrozenClock,
    alert_events: list[Event],
) -> None:
    writer = {**admin, "Content-Type": "application/json"}
    t = clock.now()
    station: dict[str, Any] = {
        "id": STATION,
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [TRAN_BIEN[1], TRAN_BIEN[0]]},
        },
        "dateObserved": {"type": "Property", "value": iso(t)},
        "airQualityIndex": {"type": "Property", "value": 85, "observedAt": iso(t)},
    }
    assert client.post(f"{NGSI}/entities", json=station, headers=writer).status_code == 201
    engine.process_pending()
    assert alerts_of(client, admin, entity=STATION) == []

    spike = {
        "airQualityIndex": {
            "type": "Property",
            "value": 176,
            "observedAt": iso(t + timedelta(hours=1)),
        }
    }
    patched = client.patch(f"{NGSI}/entities/{STATION}/attrs", json=spike, headers=writer)
    assert patched.status_code == 204, patched.text
    engine.process_pending()
    alerts = {a["rule_code"]: a for a in alerts_of(client, admin, entity=STATION)}
    assert set(alerts) == {"aqi-poor", "aqi-bad"}
    bad = alerts["aqi-bad"]
    assert (bad["status"], bad["severity"], bad["unit_code"]) == ("open", "medium", "26041")
    assert bad["policy"] == {
        "incident": {"category": "air_pollution", "department_code": "SNNMT"},
        "notify": ["ioc"],
    }
    assert bad["title_vi"] == "VN_AQI trên 150 (Xấu) — dn-aq-bien-hoa-e2e"
    opened = [e for e in alert_events if e.data["rule_code"] == "aqi-bad"]
    assert [e.type for e in opened] == ["alerts.alert_opened"]
    assert opened[0].data["alert_id"] == bad["id"]
    assert opened[0].data["value"] == 176
    # The ward's officer sees it; Long Khánh's does not.
    assert len(alerts_of(client, login_as("unit_officer", unit_code="26041"))) == 2
    assert alerts_of(client, login_as("unit_officer", unit_code="26080")) == []

    # The air clears (batch upsert this time): both alerts resolve by themselves.
    clean = {
        "id": STATION,
        "type": "AirQualityObserved",
        "airQualityIndex": {
            "type": "Property",
            "value": 62,
            "observedAt": iso(t + timedelta(hours=3)),
        },
    }
    upserted = client.post(f"{NGSI}/entityOperations/upsert", json=[clean], headers=writer)
    assert upserted.status_code in (201, 204), upserted.text
    engine.process_pending()
    after = alerts_of(client, admin, entity=STATION)
    assert {(a["rule_code"], a["status"], a["resolution"]) for a in after} == {
        ("aqi-poor", "resolved", "auto"),
        ("aqi-bad", "resolved", "auto"),
    }
    assert [e.type for e in alert_events if e.data["rule_code"] == "aqi-bad"] == [
        "alerts.alert_opened",
        "alerts.alert_resolved",
    ]


def test_a_simulated_pollution_spike_in_bien_hoa(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    engine: flows.Engine,
    clock: FrozenClock,
) -> None:
    seed = 42
    now = clock.now()
    spikes = [
        a
        for a in anomalies.schedule(seed, now - timedelta(days=30), now)
        if a.kind == anomalies.PM25_SPIKE
    ]
    assert spikes, "the simulator schedules PM2.5 spikes in a month"
    spike = spikes[-1]
    asset = by_slug(build_catalog())[spike.slug]
    # As `cityops demo` back-fills: no evaluator thread, the engine drains as events come.
    with engine.draining(every=50):
        simulate_flows.backfill(
            runtime=runtime,
            assets=[asset],
            seed=seed,
            start=spike.start - timedelta(hours=6),
            end=spike.end + timedelta(hours=24),
        )
    assert engine.pending == 0
    bad = alerts_of(client, admin, entity=asset.entity_id, rule="aqi-bad")
    during = [a for a in bad if spike.start <= _at(a["opened_at"]) <= spike.end]
    assert len(during) == 1, bad
    alert = during[0]
    assert alert["unit_code"] == asset.unit_code
    assert asset.unit_code in _area_units(client, admin, "bien-hoa-cu")
    # The plume passes, the hourly index falls back under 140: resolved by itself.
    assert alert["status"] == "resolved"
    assert alert["resolution"] == "auto"
    assert _at(alert["resolved_at"]) > spike.end


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def _area_units(client: TestClient, headers: dict[str, str], code: str) -> set[str]:
    body = client.get(f"{API}/areas/{code}", headers=headers).json()
    return set(body["unit_codes"])


@pytest.fixture
def storyline() -> Iterator[None]:
    """Forget the demo's storyline after the test (it is process-wide, as in the simulator)."""
    yield
    anomalies.script(())


@pytest.mark.usefixtures("storyline")
def test_the_demo_opens_with_a_past_episode_and_plays_a_live_spike_minutes_after_it_starts(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    engine: flows.Engine,
    clock: FrozenClock,
) -> None:
    story = clock.now()
    catalog = by_slug(build_catalog())
    # What `cityops demo` does on an empty store: provision, back-fill three days, evaluated.
    with engine.draining():
        simulate_commands.demo_prepare(runtime, lambda _line: None, story)
    assert engine.pending == 0
    past = catalog[anomalies.STORY_PAST_SPIKE]
    (episode,) = alerts_of(client, admin, entity=past.entity_id, rule="aqi-bad")
    assert story - timedelta(hours=31) <= _at(episode["opened_at"]) <= story - timedelta(hours=26)
    assert (episode["status"], episode["resolution"]) == ("resolved", "auto")
    incidents = client.get(
        f"{API}/incidents", params={"category_code": "air_pollution"}, headers=admin
    ).json()["items"]
    assert [i["unit_code"] for i in incidents] == [past.unit_code]

    # The live simulator (started with the same anchor) sends the spike two minutes later.
    live = catalog[anomalies.STORY_LIVE_SPIKE]
    assert not alerts_of(client, admin, entity=live.entity_id, rule="aqi-bad")
    clock.advance(timedelta(minutes=5))
    simulate_flows.backfill(
        runtime=runtime,
        assets=[live],
        seed=simulate_commands.DEMO_SEED,
        start=story + timedelta(minutes=4),
        end=clock.now(),
        step=timedelta(minutes=1),
    )
    engine.process_pending()
    (opened,) = alerts_of(client, admin, entity=live.entity_id, rule="aqi-bad")
    assert opened["status"] == "open"
    assert opened["unit_code"] == live.unit_code
    assert live.unit_code in _area_units(client, admin, "bien-hoa-cu")
    incidents = client.get(
        f"{API}/incidents",
        params={"category_code": "air_pollution", "status": "assigned"},
        headers=admin,
    ).json()["items"]
    # Newest first: the live spike's incident, above the past episode's (still open: a person
    # closes an incident, the air clearing only notes it in the timeline).
    assert [(i["unit_code"], i["department_code"]) for i in incidents] == [
        (live.unit_code, "SNNMT"),
        (past.unit_code, "SNNMT"),
    ]
