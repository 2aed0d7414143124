"""NGSI-LD subscriptions: the routes, matching, notification content and durable delivery."""

from __future__ import annotations

import json
import queue
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from cityops.app import build_runtime
from cityops.context import flows, subscriptions
from cityops.context.models import Entity
from cityops.core import outbox, outbox_mqtt
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import Principal

from ..broker import Broker
from ..receiver import Receiver
from .conftest import BASE, FIXTURES

BH = "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1"
LK = "urn:ngsi-ld:AirQualityObserved:dn-long-khanh-1"
TRI_AN = "urn:ngsi-ld:WaterObserved:tri-an-reservoir"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
SUBS = f"{BASE}/subscriptions"


def _template(name: str = "subscription_air.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def _body(receiver: str, **changes: Any) -> dict[str, Any]:
    """The air-quality subscription pointed at a receiver, with members replaced or removed."""
    body = _template()
    body["notification"]["endpoint"]["uri"] = f"{receiver}/notify"
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        elif key == "notification":
            merged = {**body["notification"], **value}
            body["notification"] = {k: v for k, v in merged.items() if v is not None}
        else:
            body[key] = value
    return body


@pytest.fixture
def loaded(client: TestClient, admin: dict[str, str], entities: list[dict[str, Any]]) -> None:
    """The Đồng Nai entities in the default tenant."""
    response = client.post(f"{BASE}/entityOperations/upsert", json=entities, headers=admin)
    assert response.status_code == 204, response.text


@pytest.fixture
def subscribe(
    client: TestClient, admin: dict[str, str], http_receiver: Receiver
) -> Callable[..., str]:
    """Create a subscription (the air-quality template with changes); return its id."""

    def create(headers: dict[str, str] | None = None, **changes: Any) -> str:
        response = client.post(
            SUBS, json=_body(http_receiver.url, **changes), headers=headers or admin
        )
        assert response.status_code == 201, response.text
        return response.headers["location"].rsplit("/", 1)[1]

    return create


def _patch(client: TestClient, headers: dict[str, str], entity_id: str, **attrs: Any) -> None:
    body = {name: {"type": "Property", "value": value} for name, value in attrs.items()}
    response = client.patch(f"{BASE}/entities/{entity_id}/attrs", json=body, headers=headers)
    assert response.status_code == 204, response.text


def _deliver(runtime: Runtime) -> int:
    assert runtime.outbox is not None
    return runtime.outbox.drain()


def _notifications(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    bodies = [r.json() for r in receiver.wait_for(count)]
    assert len(bodies) == count, bodies
    return bodies


def _status(client: TestClient, headers: dict[str, str], subscription_id: str) -> dict[str, Any]:
    response = client.get(f"{SUBS}/{subscription_id}", headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# --- routes ----------------------------------------------------------------------------------


def test_create_read_list_update_and_delete(
    client: TestClient, admin: dict[str, str], http_receiver: Receiver
) -> None:
    body = _body(http_receiver.url, id="urn:ngsi-ld:Subscription:pm25-bien-hoa")
    created = client.post(SUBS, json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{SUBS}/urn:ngsi-ld:Subscription:pm25-bien-hoa"
    again = client.post(SUBS, json=body, headers=admin)
    assert again.status_code == 409
    assert again.json()["type"] == ERR + "AlreadyExists"

    got = _status(client, admin, "urn:ngsi-ld:Subscription:pm25-bien-hoa")
    assert got["subscriptionName"] == "Bụi mịn PM2.5 – trạm quan trắc Đồng Nai"
    assert got["entities"] == [{"type": "AirQualityObserved"}]
    assert got["watchedAttributes"] == ["pm25"]
    assert got["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert got["isActive"] is True
    assert got["status"] == "active"
    assert got["notification"]["attributes"] == ["pm25"]
    assert got["notification"]["endpoint"] == {
        "uri": f"{http_receiver.url}/notify",
        "accept": "application/json",
    }
    assert got["notification"]["timesSent"] == 0

    # A generated id, then the list: pages of one, with Link to the next and previous pages.
    generated = client.post(SUBS, json=_body(http_receiver.url), headers=admin)
    assert generated.headers["location"].startswith(f"{SUBS}/urn:ngsi-ld:Subscription:")
    first = client.get(SUBS, params={"limit": 1, "count": "true"}, headers=admin)
    assert first.status_code == 200
    assert first.headers["ngsild-results-count"] == "2"
    assert [s["id"] for s in first.json()] == ["urn:ngsi-ld:Subscription:pm25-bien-hoa"]
    assert f'<{SUBS}?limit=1&offset=1>; rel="next"' in first.headers["link"]
    second = client.get(SUBS, params={"limit": 1, "offset": 1}, headers=admin)
    assert len(second.json()) == 1
    assert 'rel="next"' not in second.headers["link"]
    assert f'<{SUBS}?limit=1&offset=0>; rel="prev"' in second.headers["link"]
    only_count = client.get(SUBS, params={"limit": 0, "count": "true"}, headers=admin)
    assert only_count.json() == []
    assert only_count.headers["ngsild-results-count"] == "2"
    assert client.get(SUBS, params={"limit": 5000}, headers=admin).status_code == 400
    assert client.get(SUBS, params={"colour": "x"}, headers=admin).status_code == 400

    # PATCH merges: notification members replace one by one, the endpoint stays.
    patched = client.patch(
        f"{SUBS}/urn:ngsi-ld:Subscription:pm25-bien-hoa",
        json={"notification": {"format": "keyValues"}, "isActive": False, "q": "pm25>50"},
        headers=admin,
    )
    assert patched.status_code == 204, patched.text
    got = _status(client, admin, "urn:ngsi-ld:Subscription:pm25-bien-hoa")
    assert got["notification"]["format"] == "keyValues"
    assert got["notification"]["endpoint"]["uri"] == f"{http_receiver.url}/notify"
    assert got["isActive"] is False
    assert got["status"] == "paused"
    assert got["q"] == "pm25>50"
    # null removes an optional member.
    client.patch(f"{SUBS}/urn:ngsi-ld:Subscription:pm25-bien-hoa", json={"q": None}, headers=admin)
    assert "q" not in _status(client, admin, "urn:ngsi-ld:Subscription:pm25-bien-hoa")

    deleted = client.delete(f"{SUBS}/urn:ngsi-ld:Subscription:pm25-bien-hoa", headers=admin)
    assert deleted.status_code == 204
    for call in (
        client.get(f"{SUBS}/urn:ngsi-ld:Subscription:pm25-bien-hoa", headers=admin),
        client.delete(f"{SUBS}/urn:ngsi-ld:Subscription:pm25-bien-hoa", headers=admin),
        client.patch(
            f"{SUBS}/urn:ngsi-ld:Subscription:pm25-bien-hoa", json={"isActive": True}, headers=admin
        ),
    ):
        assert call.status_code == 404
        assert call.json()["type"] == ERR + "ResourceNotFound"


def test_get_compacts_with_the_callers_context(
    client: TestClient, admin: dict[str, str], http_receiver: Receiver
) -> None:
    ld = {**admin, "Content-Type": "application/ld+json"}
    body = _body(
        http_receiver.url,
        **{"@context": [{"aq": "https://smartdatamodels.org/dataModel.Environment/"}]},
        entities=[{"type": "aq:AirQualityObserved"}],
        watchedAttributes=["aq:pm25"],
    )
    created = client.post(SUBS, json=body, headers=ld)
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    core = client.get(location, headers=admin).json()
    assert core["entities"] == [
        {"type": "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"}
    ]
    with_ld = client.get(location, headers={**admin, "Accept": "application/ld+json"})
    assert with_ld.headers["content-type"].startswith("application/ld+json")
    assert "@context" in with_ld.json()


def test_a_bad_subscription_names_every_bad_member_and_changes_nothing(
    client: TestClient, admin: dict[str, str], http_receiver: Receiver
) -> None:
    response = client.post(SUBS, json=_template("subscription_bad.json"), headers=admin)
    assert response.status_code == 400
    problem = response.json()
    assert problem["type"] == ERR + "BadRequestData"
    named = {error["member"] for error in problem["errors"]}
    assert {
        "id",
        "entities[0].type",
        "watchedAttributes",
        "notificationTrigger",
        "q",
        "geoQ",
        "throttling",
        "expiresAt",
        "timeInterval",
        "colour",
        "notification.format",
        "notification.endpoint.uri",
        "notification.endpoint.accept",
        "notification.endpoint.receiverInfo",
        "notification.endpoint.notifierInfo",
    } <= named
    for member in ("q", "geoQ", "timeInterval", "notification.endpoint.uri"):
        assert member in problem["detail"]
    assert all(error["message"] for error in problem["errors"])
    # Vietnamese by default, English on request.
    vi = client.post(SUBS, json={"type": "Subscription"}, headers=admin).json()["detail"]
    en = client.post(
        SUBS, json={"type": "Subscription"}, headers={**admin, "Accept-Language": "en"}
    ).json()["detail"]
    assert vi.startswith("Đăng ký theo dõi không hợp lệ")
    assert en.startswith("The subscription")
    # Neither entities nor watchedAttributes; a bad q alone; a non-object.
    no_selector = client.post(
        SUBS, json=_body(http_receiver.url, entities=None, watchedAttributes=None), headers=admin
    )
    assert no_selector.status_code == 400
    assert no_selector.json()["errors"][0]["member"] == "entities"
    bad_q = client.post(SUBS, json=_body(http_receiver.url, q="pm25==1..'x'"), headers=admin)
    assert bad_q.status_code == 400
    assert bad_q.json()["errors"][0]["member"] == "q"
    assert client.post(SUBS, json=[1], headers=admin).status_code == 400
    assert client.get(SUBS, params={"count": "true"}, headers=admin).json() == []

    # A bad PATCH changes nothing either.
    subscription_id = (
        client.post(SUBS, json=_body(http_receiver.url), headers=admin)
        .headers["location"]
        .rsplit("/", 1)[1]
    )
    before = _status(client, admin, subscription_id)
    bad_patch = client.patch(
        f"{SUBS}/{subscription_id}",
        json={"isActive": False, "notification": {"endpoint": {"uri": "gopher://x"}}},
        headers=admin,
    )
    assert bad_patch.status_code == 400
    assert bad_patch.json()["errors"][0]["member"] == "notification.endpoint.uri"
    emptied = client.patch(
        f"{SUBS}/{subscription_id}",
        json={"entities": None, "watchedAttributes": None},
        headers=admin,
    )
    assert emptied.status_code == 400
    assert _status(client, admin, subscription_id) == before


# --- notifications ---------------------------------------------------------------------------


def test_a_patch_notifies_the_receiver_with_the_entity_read_from_the_store(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    subscription_id = subscribe()
    # Two attributes of one entity in one request: one notification.
    _patch(client, admin, BH, pm25=48.5, pm10=70.0)
    assert _deliver(runtime) == 1
    (notification,) = _notifications(http_receiver, 1)
    received = http_receiver.requests[0]
    assert received.path == "/notify"
    assert received.headers["Content-Type"] == "application/json"
    assert "ngsi-ld-core-context" in received.headers["Link"]
    assert notification["type"] == "Notification"
    assert notification["id"].startswith("urn:ngsi-ld:Notification:")
    assert notification["subscriptionId"] == subscription_id
    assert notification["notifiedAt"] == "2026-11-20T03:00:00.000Z"
    assert notification["triggerReason"] == "attributeUpdated"
    assert notification["data"] == [
        {"id": BH, "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 48.5}}
    ]
    status = _status(client, admin, subscription_id)["notification"]
    assert status["timesSent"] == 1
    assert status["timesFailed"] == 0
    assert status["status"] == "ok"
    assert status["lastSuccess"] == status["lastNotification"] == "2026-11-20T03:00:00.000Z"
    assert "lastFailure" not in status
    # Nothing more was queued.
    assert _deliver(runtime) == 0


def test_a_rolled_back_change_notifies_nothing_and_a_committed_one_always_does(
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    subscribe()
    change = {"id": BH, "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 90}}
    session = runtime.session_factory()
    flows.write_entities(runtime=runtime, session=session, tenant="default", entities=[change])
    session.rollback()
    session.close()
    assert _deliver(runtime) == 0
    with unit_of_work(runtime.session_factory) as session:
        flows.write_entities(runtime=runtime, session=session, tenant="default", entities=[change])
        # The notification is in the outbox before anyone delivers anything.
    with runtime.session_factory() as session:
        messages, total = outbox.get_all(session=session, source=subscriptions.SOURCE)
    assert total == 1
    assert messages[0].owner.startswith("ngsild:default:urn:ngsi-ld:Subscription:")
    assert _deliver(runtime) == 1
    assert _notifications(http_receiver, 1)[0]["data"][0]["pm25"]["value"] == 90


def test_only_matching_changes_notify(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    # watchedAttributes pm25 + q on pm25 + entities restricted by idPattern.
    subscribe(q="pm25>50", entities=[{"type": "AirQualityObserved", "idPattern": "dn-bien-hoa"}])
    # geoQ: within 5 km of the Long Khánh station.
    subscribe(
        geoQ={
            "geometry": "Point",
            "coordinates": [107.245, 10.935],
            "georel": "near;maxDistance==5000",
        }
    )
    _patch(client, admin, BH, pm10=99.0)  # not watched
    _patch(client, admin, BH, pm25=40.0)  # q fails, geoQ fails
    _patch(client, admin, LK, pm25=60.0)  # idPattern fails; geoQ matches
    appended = client.post(  # another type
        f"{BASE}/entities/{TRI_AN}/attrs",
        json={"pm25": {"type": "Property", "value": 80.0}},
        headers=admin,
    )
    assert appended.status_code == 204
    assert _deliver(runtime) == 1
    (notification,) = _notifications(http_receiver, 1)
    assert [e["id"] for e in notification["data"]] == [LK]
    _patch(client, admin, BH, pm25=55.0)  # q and idPattern now hold
    assert _deliver(runtime) == 1
    assert [e["id"] for e in _notifications(http_receiver, 2)[1]["data"]] == [BH]


def test_a_q_the_database_refuses_never_blocks_the_write_or_other_subscriptions(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    # Python accepts named groups; PostgreSQL's regular expressions do not.
    subscribe(q='name~="(?P<city>Biên) Hòa"')
    plain = subscribe()
    _patch(client, admin, BH, pm25=66.0)
    delivered = _deliver(runtime)
    assert delivered >= 1
    notified = {n["subscriptionId"] for n in _notifications(http_receiver, delivered)}
    assert plain in notified
    got = client.get(f"{BASE}/entities/{BH}", headers=admin).json()
    assert got["pm25"]["value"] == 66.0


def test_notification_triggers(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    subscribe(notificationTrigger=["entityCreated", "entityDeleted"], watchedAttributes=None)
    subscribe(notificationTrigger=["attributeDeleted"], notification={"attributes": None})
    _patch(client, admin, BH, pm25=12.0)  # neither trigger
    assert _deliver(runtime) == 0
    new_station = {
        "id": "urn:ngsi-ld:AirQualityObserved:dn-trang-bom-1",
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [107.0, 10.95]},
        },
        "dateObserved": {"type": "Property", "value": "2026-11-20T02:55:00Z"},
        "pm25": {"type": "Property", "value": 20},
    }
    assert client.post(f"{BASE}/entities", json=new_station, headers=admin).status_code == 201
    assert _deliver(runtime) == 1
    created = _notifications(http_receiver, 1)[0]
    assert created["triggerReason"] == "entityCreated"
    assert created["data"][0]["id"] == new_station["id"]
    deleted_attr = client.delete(f"{BASE}/entities/{BH}/attrs/pm25", headers=admin)
    assert deleted_attr.status_code == 204
    assert _deliver(runtime) == 1
    attr_gone = _notifications(http_receiver, 2)[1]
    assert attr_gone["triggerReason"] == "attributeDeleted"
    assert attr_gone["data"][0]["pm25"] == {
        "type": "Property",
        "value": "urn:ngsi-ld:null",
        "deletedAt": "2026-11-20T03:00:00.000Z",
    }
    assert client.delete(f"{BASE}/entities/{new_station['id']}", headers=admin).status_code == 204
    assert _deliver(runtime) == 1
    gone = _notifications(http_receiver, 3)[2]
    assert gone["triggerReason"] == "entityDeleted"
    assert gone["data"] == [
        {
            "id": new_station["id"],
            "type": "AirQualityObserved",
            "deletedAt": "2026-11-20T03:00:00.000Z",
        }
    ]


def test_formats_accept_receiver_info_and_changes(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    endpoint = {
        "uri": f"{http_receiver.url}/kv",
        "accept": "application/ld+json",
        "receiverInfo": [{"key": "X-Api-Token", "value": "ioc-dong-nai"}],
    }
    subscribe(
        notification={
            "format": "keyValues",
            "attributes": ["pm25", "name"],
            "endpoint": endpoint,
        }
    )
    subscribe(
        notification={
            "format": "concise",
            "showChanges": True,
            "attributes": None,
            "endpoint": {"uri": f"{http_receiver.url}/concise"},
        }
    )
    _patch(client, admin, BH, pm25=44.0)
    assert _deliver(runtime) == 2
    by_path = {r.path: r for r in http_receiver.wait_for(2)}
    key_values = by_path["/kv"]
    assert key_values.headers["Content-Type"] == "application/ld+json"
    assert key_values.headers["X-Api-Token"] == "ioc-dong-nai"
    assert "Link" not in key_values.headers
    body = key_values.json()
    assert "ngsi-ld-core-context" in json.dumps(body["@context"])
    assert body["data"] == [
        {
            "id": BH,
            "type": "AirQualityObserved",
            "name": "Trạm quan trắc Biên Hòa 1",
            "pm25": 44.0,
        }
    ]
    concise = by_path["/concise"].json()["data"][0]
    assert concise["pm25"] == {"value": 44.0, "previousValue": 35.2}
    assert concise["pm10"] == {
        "value": 61.0,
        "unitCode": "GQ",
        "observedAt": "2026-11-20T03:00:00.000Z",
    }


def test_throttling_spaces_notifications(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
    clock: FrozenClock,
) -> None:
    subscribe(throttling=60)
    _patch(client, admin, BH, pm25=1.0)
    _patch(client, admin, BH, pm25=2.0)
    assert _deliver(runtime) == 1
    assert _notifications(http_receiver, 1)[0]["data"][0]["pm25"]["value"] == 1.0
    clock.advance(timedelta(seconds=30))
    assert _deliver(runtime) == 0
    clock.advance(timedelta(seconds=30))
    assert _deliver(runtime) == 1
    assert _notifications(http_receiver, 2)[1]["data"][0]["pm25"]["value"] == 2.0


def test_expired_and_paused_subscriptions_do_not_notify(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
    clock: FrozenClock,
) -> None:
    expiring = subscribe(expiresAt="2026-11-20T03:10:00Z")
    paused = subscribe(isActive=False)
    _patch(client, admin, BH, pm25=10.0)
    assert _deliver(runtime) == 1
    (notification,) = _notifications(http_receiver, 1)
    assert notification["subscriptionId"] == expiring
    clock.advance(timedelta(minutes=11))  # past expiresAt, within the access token's life
    assert _status(client, admin, expiring)["status"] == "expired"
    _patch(client, admin, BH, pm25=11.0)
    assert _deliver(runtime) == 0
    # Resumed: notified again.
    assert (
        client.patch(f"{SUBS}/{paused}", json={"isActive": True}, headers=admin).status_code == 204
    )
    _patch(client, admin, BH, pm25=12.0)
    assert _deliver(runtime) == 1
    assert _notifications(http_receiver, 2)[1]["subscriptionId"] == paused


def test_periodic_subscriptions_report_the_state_every_interval(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
    clock: FrozenClock,
) -> None:
    refused = client.post(SUBS, json=_body(http_receiver.url, timeInterval=60), headers=admin)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["member"] == "timeInterval"
    assert "watchedAttributes" in refused.json()["errors"][0]["message"]
    subscription_id = subscribe(timeInterval=60, watchedAttributes=None, q="pm25>30")
    assert _status(client, admin, subscription_id)["timeInterval"] == 60
    # Changes do not notify a periodic subscription.
    _patch(client, admin, LK, pm25=31.0)
    assert _deliver(runtime) == 0
    assert subscriptions.PERIODIC_JOB in runtime.jobs.jobs
    runtime.jobs.run_due()  # the periodic job queues, the outbox job delivers
    first = _notifications(http_receiver, 1)[0]
    assert "triggerReason" not in first
    assert [(e["id"], e["pm25"]["value"]) for e in first["data"]] == [
        (BH, 35.2),
        (LK, 31.0),
        ("urn:ngsi-ld:AirQualityObserved:ha-noi-1", 80.1),
    ]
    assert subscriptions.notify_periodic(runtime) == 0
    clock.advance(timedelta(seconds=30))
    assert subscriptions.notify_periodic(runtime) == 0
    clock.advance(timedelta(seconds=30))
    _patch(client, admin, LK, pm25=12.0)
    assert subscriptions.notify_periodic(runtime) == 1
    assert _deliver(runtime) == 1
    second = _notifications(http_receiver, 2)[1]
    assert [e["id"] for e in second["data"]] == [BH, "urn:ngsi-ld:AirQualityObserved:ha-noi-1"]


def test_a_receiver_that_is_down_gets_the_notification_when_it_is_back(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
    clock: FrozenClock,
) -> None:
    subscription_id = subscribe()
    http_receiver.stop()
    _patch(client, admin, BH, pm25=70.0)
    assert _deliver(runtime) == 0
    status = _status(client, admin, subscription_id)["notification"]
    assert status["timesSent"] == 1
    assert status["timesFailed"] == 1
    assert status["status"] == "failed"
    assert status["lastFailure"] == "2026-11-20T03:00:00.000Z"
    assert "lastSuccess" not in status
    http_receiver.start()
    clock.advance(timedelta(minutes=1))
    assert _deliver(runtime) == 1
    assert _notifications(http_receiver, 1)[0]["data"][0]["pm25"]["value"] == 70.0
    status = _status(client, admin, subscription_id)["notification"]
    assert status["timesSent"] == 2
    assert status["timesFailed"] == 1
    assert status["status"] == "ok"
    assert status["lastSuccess"] == "2026-11-20T03:01:00.000Z"
    assert status["lastFailure"] == "2026-11-20T03:00:00.000Z"


def test_a_queued_notification_survives_a_restart(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    http_receiver: Receiver,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    subscription_id = subscribe()
    _patch(client, admin, BH, pm25=33.0)
    # Not delivered by this process: a freshly built one on the same database does it.
    fresh = build_runtime(settings, clock=clock)
    try:
        assert _deliver(fresh) == 1
    finally:
        fresh.engine.dispose()
    assert _notifications(http_receiver, 1)[0]["data"][0]["pm25"]["value"] == 33.0
    assert _status(client, admin, subscription_id)["notification"]["timesSent"] == 1


def test_another_workers_subscription_is_seen_within_seconds(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    runtime: Runtime,
    http_receiver: Receiver,
    settings: Settings,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(subscriptions, "RECHECK_SECONDS", 0.2)
    _patch(client, admin, BH, pm25=1.0)  # this process now knows: no subscriptions
    other = build_runtime(settings, clock=clock)
    try:
        with unit_of_work(other.session_factory) as session:
            ctx = flows.resolve_context(runtime=other, session=session, value=None)
            document = subscriptions.parse(_body(http_receiver.url), ctx=ctx, now=clock.now())
            subscriptions.create(
                session=session,
                tenant="default",
                document=document,
                context=None,
                owner=_admin_principal(),
                now=clock.now(),
            )
    finally:
        other.engine.dispose()
    time.sleep(0.3)
    _patch(client, admin, BH, pm25=2.0)
    assert _deliver(runtime) == 1
    assert _notifications(http_receiver, 1)[0]["data"][0]["pm25"]["value"] == 2.0


def _admin_principal() -> Principal:
    return Principal(kind="user", id=1, name="admin", role="admin", permissions=frozenset())


# --- MQTT ------------------------------------------------------------------------------------


@pytest.fixture
def mqtt_listener(mqtt_broker: Broker) -> Iterator[queue.Queue[tuple[str, bytes]]]:
    """A real MQTT client subscribed to cityops/notify/# on the test broker."""
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    listener = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="listener")
    subscribed = queue.Queue[bool]()
    listener.on_message = lambda _c, _u, message: received.put((message.topic, message.payload))
    listener.on_subscribe = lambda *_args: subscribed.put(True)
    listener.connect("127.0.0.1", mqtt_broker.port)
    listener.loop_start()
    listener.subscribe("cityops/notify/#", qos=1)
    assert subscribed.get(timeout=10)
    yield received
    listener.loop_stop()
    listener.disconnect()


@pytest.mark.parametrize("qos", ["0", "1"])
def test_an_mqtt_subscriber_receives_the_notification(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    mqtt_broker: Broker,
    mqtt_listener: queue.Queue[tuple[str, bytes]],
    qos: str,
) -> None:
    subscription_id = subscribe(
        notification={
            "endpoint": {
                "uri": f"mqtt://127.0.0.1:{mqtt_broker.port}/cityops/notify/air",
                "accept": "application/json",
                "receiverInfo": [{"key": "X-Ioc", "value": "dong-nai"}],
                "notifierInfo": [
                    {"key": "MQTT-QoS", "value": qos},
                    {"key": "MQTT-Version", "value": "mqtt5.0"},
                ],
            }
        }
    )
    _patch(client, admin, BH, pm25=58.0)
    assert _deliver(runtime) == 1
    topic, payload = mqtt_listener.get(timeout=10)
    assert topic == "cityops/notify/air"
    message = json.loads(payload)
    assert message["metadata"]["Content-Type"] == "application/json"
    assert message["metadata"]["X-Ioc"] == "dong-nai"
    assert "ngsi-ld-core-context" in message["metadata"]["Link"]
    assert message["body"]["subscriptionId"] == subscription_id
    assert message["body"]["data"][0]["pm25"]["value"] == 58.0
    # The client is kept: a second notification goes over the same connection.
    _patch(client, admin, BH, pm25=59.0)
    assert _deliver(runtime) == 1
    assert json.loads(mqtt_listener.get(timeout=10)[1])["body"]["data"][0]["pm25"]["value"] == 59


def test_an_mqtt_broker_that_is_down_is_retried(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    mqtt_broker: Broker,
    clock: FrozenClock,
) -> None:
    subscription_id = subscribe(
        notification={
            "endpoint": {
                "uri": f"mqtt://127.0.0.1:{mqtt_broker.port}/cityops/notify/air",
                "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
            }
        }
    )
    mqtt_broker.stop()
    _patch(client, admin, BH, pm25=58.0)
    assert _deliver(runtime) == 0
    assert _status(client, admin, subscription_id)["notification"]["status"] == "failed"
    mqtt_broker.start()
    clock.advance(timedelta(minutes=1))
    assert _deliver(runtime) == 1
    assert _status(client, admin, subscription_id)["notification"]["status"] == "ok"


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    """A real Mosquitto speaking MQTT over TLS, with a certificate from a test CA."""
    folder = tmp_path / "tls"
    folder.mkdir()
    _openssl(
        folder,
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key"),
        *("-out", "ca.crt", "-days", "2", "-subj", "/CN=CityOps test CA"),
    )
    _openssl(
        folder,
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key"),
        *("-out", "server.csr", "-subj", "/CN=127.0.0.1"),
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        folder,
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext"),
    )
    broker = Broker(folder / "mosquitto")
    # The broker's only listener becomes a TLS one.
    broker.config.write_text(
        broker.config.read_text()
        + f"cafile {folder / 'ca.crt'}\ncertfile {folder / 'server.crt'}\n"
        + f"keyfile {folder / 'server.key'}\n"
    )
    broker.start()
    yield broker, folder / "ca.crt"
    broker.stop()


def test_an_mqtts_subscriber_receives_the_notification(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    subscribe: Callable[..., str],
    runtime: Runtime,
    tls_broker: tuple[Broker, Path],
) -> None:
    broker, ca = tls_broker
    assert runtime.outbox is not None
    # The test CA is not in the system store: the sender is told to trust it.
    runtime.outbox.register_sender("mqtt", outbox_mqtt.mqtt_sender(ca_file=str(ca)))
    received: queue.Queue[bytes] = queue.Queue()
    listener = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="tls")
    listener.tls_set(ca_certs=str(ca))
    subscribed = queue.Queue[bool]()
    listener.on_message = lambda _c, _u, message: received.put(message.payload)
    listener.on_subscribe = lambda *_args: subscribed.put(True)
    listener.connect("127.0.0.1", broker.port)
    listener.loop_start()
    try:
        listener.subscribe("cityops/notify/secure", qos=1)
        assert subscribed.get(timeout=10)
        subscribe(
            notification={
                "endpoint": {
                    "uri": f"mqtts://127.0.0.1:{broker.port}/cityops/notify/secure",
                    "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                }
            }
        )
        _patch(client, admin, BH, pm25=61.0)
        assert _deliver(runtime) == 1
        message = json.loads(received.get(timeout=10))
        assert message["body"]["data"][0]["pm25"]["value"] == 61.0
    finally:
        listener.loop_stop()
        listener.disconnect()


# --- tenants and scope -----------------------------------------------------------------------


def _key(client: TestClient, admin: dict[str, str], tenant: str) -> dict[str, str]:
    response = client.post(
        "/api/v1/api-keys",
        json={"name": f"gateway {tenant}", "permissions": ["context:read"], "tenant": tenant},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return {"X-API-Key": response.json()["key"], "Content-Type": "application/json"}


def test_tenants_are_isolated(
    client: TestClient,
    admin: dict[str, str],
    entities: list[dict[str, Any]],
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    a = {**admin, "NGSILD-Tenant": "bien-hoa"}
    b = {**admin, "NGSILD-Tenant": "long-khanh"}
    for headers in (a, b):
        response = client.post(f"{BASE}/entityOperations/upsert", json=entities, headers=headers)
        assert response.status_code == 204
    subscription_id = subscribe(headers=a)
    # Tenant B's writes never reach tenant A's subscription.
    _patch(client, b, BH, pm25=99.0)
    assert _deliver(runtime) == 0
    _patch(client, a, BH, pm25=98.0)
    assert _deliver(runtime) == 1
    received = http_receiver.wait_for(1)[0]
    assert received.headers["NGSILD-Tenant"] == "bien-hoa"
    assert received.json()["data"][0]["pm25"]["value"] == 98.0
    # Tenant B cannot read, change or list tenant A's subscription.
    assert client.get(f"{SUBS}/{subscription_id}", headers=b).status_code == 404
    assert client.delete(f"{SUBS}/{subscription_id}", headers=b).status_code == 404
    assert client.get(SUBS, headers=b).json() == []
    assert client.get(f"{SUBS}/{subscription_id}", headers=a).status_code == 200
    assert client.get(SUBS, headers={**admin, "NGSILD-Tenant": "nowhere"}).status_code == 404
    # An API key bound to tenant B may not touch tenant A, and subscribes in its own tenant.
    key = _key(client, admin, "long-khanh")
    refused = client.get(f"{SUBS}/{subscription_id}", headers={**key, "NGSILD-Tenant": "bien-hoa"})
    assert refused.status_code == 403
    own = client.post(SUBS, json=_body(http_receiver.url), headers=key)
    assert own.status_code == 201
    assert [s["id"] for s in client.get(SUBS, headers=b).json()] == [
        own.headers["location"].rsplit("/", 1)[1]
    ]


def test_a_unit_scoped_subscriber_is_not_notified_of_other_units(
    client: TestClient,
    admin: dict[str, str],
    loaded: None,
    login_as: Callable[..., dict[str, str]],
    subscribe: Callable[..., str],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    with runtime.session_factory() as session:
        units = dict(session.execute(select(Entity.entity_id, Entity.unit_code)).all())
    assert units[BH]
    assert units[LK]
    assert units[BH] != units[LK]
    officer = {
        **login_as("unit_officer", unit_code=units[BH]),
        "Content-Type": "application/json",
    }
    subscription_id = subscribe(headers=officer)
    _patch(client, admin, LK, pm25=77.0)
    assert _deliver(runtime) == 0
    _patch(client, admin, BH, pm25=76.0)
    assert _deliver(runtime) == 1
    assert [e["id"] for e in _notifications(http_receiver, 1)[0]["data"]] == [BH]
    # The officer sees their subscription; an officer of another unit does not.
    assert client.get(f"{SUBS}/{subscription_id}", headers=officer).status_code == 200
    other = login_as("unit_officer", unit_code=units[LK])
    assert client.get(f"{SUBS}/{subscription_id}", headers=other).status_code == 404
    assert client.get(SUBS, headers=other).json() == []
    # A subscription needs context:read at least, and credentials.
    assert client.get(SUBS).status_code == 401
