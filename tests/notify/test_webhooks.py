"""Webhooks: signed JSON events to a real local receiver, filters, outages, the secret's life."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.auth.models import AuditLog
from cityops.core import outbox
from cityops.core.clock import FrozenClock
from cityops.core.runtime import Runtime

from ..receiver import Receiver
from .conftest import API, Publisher, deliver, messages


def _create(
    client: TestClient, headers: dict[str, str], receiver: Receiver, **fields: Any
) -> dict[str, Any]:
    body = {
        "name": "Hệ thống 113 Công an tỉnh",
        "url": f"{receiver.url}/cityops",
        "event_types": ["alerts.*", "incidents.incident_created"],
        **fields,
    }
    response = client.post(f"{API}/notifications/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _signature(secret: str, timestamp: str, body: bytes) -> str:
    # What a receiver computes, written here independently of the code under test.
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def test_a_webhook_receives_the_event_signed_with_its_secret(
    runtime: Runtime,
    client: TestClient,
    admin: dict[str, str],
    http_receiver: Receiver,
    publish: Publisher,
) -> None:
    hook = _create(client, admin, http_receiver)
    assert hook["secret"].startswith("whsec_")
    publish("alerts.alert_opened", "alert_opened")
    assert deliver(runtime) == 1
    (request,) = http_receiver.wait_for(1)
    assert request.path == "/cityops"
    document = request.json()
    assert set(document) == {"id", "type", "at", "data"}
    assert document["type"] == "alerts.alert_opened"
    assert document["at"] == "2026-11-20T03:00:00+00:00"
    assert document["data"]["title_vi"] == "Chất lượng không khí rất xấu (VN_AQI 212)"
    assert document["data"]["policy"]["notify"] == []
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["x-cityops-event"] == "alerts.alert_opened"
    timestamp = headers["x-cityops-timestamp"]
    assert timestamp == str(int(runtime.clock.now().timestamp()))
    assert headers["x-cityops-signature"] == _signature(hook["secret"], timestamp, request.body)
    # Someone without the secret cannot produce it, and a changed body does not verify.
    assert headers["x-cityops-signature"] != _signature("whsec_wrong", timestamp, request.body)
    tampered = request.body.replace(b"212", b"12")
    assert headers["x-cityops-signature"] != _signature(hook["secret"], timestamp, tampered)


def test_an_alert_that_opens_an_incident_reaches_the_webhook_before_the_incident(
    runtime: Runtime,
    client: TestClient,
    admin: dict[str, str],
    http_receiver: Receiver,
    publish: Publisher,
) -> None:
    _create(client, admin, http_receiver)
    policy = {"incident": {"category": "air_pollution", "department_code": "SNNMT"}, "notify": []}
    publish("alerts.alert_opened", "alert_opened", policy=policy)
    assert deliver(runtime) == 2
    alert, incident = (request.json() for request in http_receiver.wait_for(2))
    assert alert["type"] == "alerts.alert_opened"
    assert incident["type"] == "incidents.incident_created"
    assert incident["data"]["alert_id"] == alert["data"]["alert_id"] == 41
    assert incident["data"]["department_code"] == "SNNMT"


def test_event_types_and_unit_and_department_filters_choose_the_events(
    runtime: Runtime,
    client: TestClient,
    admin: dict[str, str],
    http_receiver: Receiver,
    publish: Publisher,
) -> None:
    _create(
        client,
        admin,
        http_receiver,
        url=f"{http_receiver.url}/incidents",
        event_types=["incidents.*"],
    )
    # Former Biên Hòa wards only: Trấn Biên is one; Long Khánh is not.
    _create(
        client,
        admin,
        http_receiver,
        url=f"{http_receiver.url}/ward",
        event_types=["alerts.alert_opened"],
        unit_code="26041",
    )
    _create(
        client,
        admin,
        http_receiver,
        url=f"{http_receiver.url}/health",
        event_types=["incidents.*", "alerts.*"],
        department_code="SYT",
    )
    publish("alerts.alert_opened", "alert_opened", alert_id=1, unit_code="26080")
    publish("alerts.alert_opened", "alert_opened", alert_id=2, unit_code="26041")
    publish("alerts.alert_resolved", "alert_opened", alert_id=3, unit_code="26041")
    publish("incidents.incident_created", "incident_created")  # SYT, Tam Hiệp
    publish(
        "incidents.comment_added",
        "incident_created",
        department_codes=["SXD"],
        department_code="SXD",
    )
    assert deliver(runtime) == 4
    got = sorted(
        (
            r.path,
            r.json()["type"],
            str(r.json()["data"].get("alert_id") or r.json()["data"]["code"]),
        )
        for r in http_receiver.wait_for(4)
    )
    assert got == [
        ("/health", "incidents.incident_created", "SC-2026-000007"),
        ("/incidents", "incidents.comment_added", "SC-2026-000007"),
        ("/incidents", "incidents.incident_created", "SC-2026-000007"),
        ("/ward", "alerts.alert_opened", "2"),
    ]


def test_a_receiver_that_is_down_gets_the_event_after_the_backoff(
    runtime: Runtime,
    clock: FrozenClock,
    client: TestClient,
    admin: dict[str, str],
    http_receiver: Receiver,
    publish: Publisher,
) -> None:
    hook = _create(client, admin, http_receiver)
    http_receiver.stop()
    publish("alerts.alert_opened", "alert_opened", alert_id=1)
    publish("alerts.alert_opened", "alert_opened", alert_id=2)
    assert deliver(runtime) == 0
    log = client.get(
        f"{API}/notifications/deliveries", params={"channel": "http"}, headers=admin
    ).json()
    assert [item["status"] for item in log["items"]] == ["pending", "pending"]
    second, first = log["items"]
    assert first["attempts"] == 1
    assert first["last_error"].startswith("ConnectError")
    assert second["attempts"] == 0  # waits behind the first: one webhook's events stay in order
    state = client.get(f"{API}/notifications/webhooks/{hook['id']}", headers=admin).json()
    assert state["last_failure_at"] == "2026-11-20T03:00:00Z"
    assert state["last_success_at"] is None

    http_receiver.start()
    assert deliver(runtime) == 0  # the backoff has not passed yet
    clock.advance(timedelta(seconds=3))
    assert deliver(runtime) == 2
    assert [r.json()["data"]["alert_id"] for r in http_receiver.wait_for(2)] == [1, 2]
    log = client.get(
        f"{API}/notifications/deliveries", params={"channel": "http"}, headers=admin
    ).json()
    assert [(i["status"], i["attempts"]) for i in log["items"]] == [
        ("delivered", 1),
        ("delivered", 2),
    ]
    assert log["items"][1]["last_status"] == 200
    state = client.get(f"{API}/notifications/webhooks/{hook['id']}", headers=admin).json()
    assert state["last_success_at"] == "2026-11-20T03:00:03Z"


def test_the_secret_is_shown_once_and_kept_out_of_the_audit_log_and_delivery_log(
    runtime: Runtime,
    client: TestClient,
    admin: dict[str, str],
    http_receiver: Receiver,
    publish: Publisher,
) -> None:
    hook = _create(client, admin, http_receiver)
    secret = hook["secret"]
    listed = client.get(f"{API}/notifications/webhooks", headers=admin)
    read = client.get(f"{API}/notifications/webhooks/{hook['id']}", headers=admin)
    assert listed.json()["total"] == 1
    assert "secret" not in read.json()
    assert secret not in listed.text + read.text
    publish("alerts.alert_opened", "alert_opened")
    deliver(runtime)
    log = client.get(f"{API}/notifications/deliveries", headers=admin)
    assert log.json()["total"] == 1
    assert secret not in log.text
    with runtime.session_factory() as session:
        entries = session.scalars(
            select(AuditLog).where(AuditLog.resource_type == "notify_webhook")
        ).all()
    assert [entry.action for entry in entries] == ["create"]
    assert secret not in json.dumps([entry.after for entry in entries])

    rotated = client.post(
        f"{API}/notifications/webhooks/{hook['id']}/rotate-secret", headers=admin
    ).json()
    assert rotated["secret"] != secret
    publish("alerts.alert_opened", "alert_opened", alert_id=99)
    deliver(runtime)
    request = http_receiver.wait_for(2)[1]
    timestamp = request.headers["X-CityOps-Timestamp"]
    assert request.headers["X-CityOps-Signature"] == _signature(
        rotated["secret"], timestamp, request.body
    )


def test_a_test_event_reaches_the_webhook_signed(
    runtime: Runtime, client: TestClient, admin: dict[str, str], http_receiver: Receiver
) -> None:
    hook = _create(client, admin, http_receiver)
    response = client.post(f"{API}/notifications/webhooks/{hook['id']}/test", headers=admin)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    deliver(runtime)
    (request,) = http_receiver.wait_for(1)
    assert request.json()["type"] == "notify.test"
    assert request.headers["X-CityOps-Signature"] == _signature(
        hook["secret"], request.headers["X-CityOps-Timestamp"], request.body
    )


def test_deleting_a_webhook_gives_up_what_was_queued_for_it(
    runtime: Runtime,
    client: TestClient,
    admin: dict[str, str],
    http_receiver: Receiver,
    publish: Publisher,
) -> None:
    hook = _create(client, admin, http_receiver)
    publish("alerts.alert_opened", "alert_opened")
    response = client.delete(f"{API}/notifications/webhooks/{hook['id']}", headers=admin)
    assert response.status_code == 204
    assert deliver(runtime) == 0
    (message,) = messages(runtime)
    assert message.status == outbox.FAILED
    assert message.last_error == "webhook deleted"
    publish("alerts.alert_opened", "alert_opened")
    assert len(messages(runtime)) == 1  # nothing new queued for it
    assert (
        client.get(f"{API}/notifications/webhooks/{hook['id']}", headers=admin).status_code == 404
    )


def test_a_paused_webhook_gets_nothing_until_enabled_again(
    runtime: Runtime,
    client: TestClient,
    admin: dict[str, str],
    http_receiver: Receiver,
    publish: Publisher,
) -> None:
    hook = _create(client, admin, http_receiver)
    url = f"{API}/notifications/webhooks/{hook['id']}"
    assert client.patch(url, json={"enabled": False}, headers=admin).json()["enabled"] is False
    publish("alerts.alert_opened", "alert_opened", alert_id=1)
    assert messages(runtime) == []
    client.patch(url, json={"enabled": True}, headers=admin)
    publish("alerts.alert_opened", "alert_opened", alert_id=2)
    assert deliver(runtime) == 1


def test_webhook_input_is_checked_and_scoped(
    client: TestClient,
    admin: dict[str, str],
    login_as: Callable[..., dict[str, str]],
    http_receiver: Receiver,
) -> None:
    url = f"{API}/notifications/webhooks"
    base = {"name": "x", "url": f"{http_receiver.url}/h", "event_types": ["alerts.*"]}
    cases = [
        ({"url": "ftp://example.org/x"}, "url"),
        ({"event_types": ["context.*"]}, "event_types.0"),
        ({"event_types": []}, "event_types"),
        ({"unit_code": "99999"}, "unit_code"),
        ({"department_code": "NOPE"}, "department_code"),
        ({"secret": "mine"}, "secret"),
    ]
    for change, field in cases:
        response = client.post(url, json={**base, **change}, headers=admin)
        assert response.status_code == 422, (change, response.text)
        assert response.json()["errors"][0]["field"] == field
    operator = login_as("operator")
    assert client.post(url, json=base, headers=operator).status_code == 403
    ward_admin = login_as("admin", unit_code="26017")
    # A ward administrator may only watch their ward.
    assert client.post(url, json=base, headers=ward_admin).status_code == 403
    own = client.post(url, json={**base, "unit_code": "26017"}, headers=ward_admin)
    assert own.status_code == 201
    other = _create(client, admin, http_receiver)
    listed = client.get(url, headers=ward_admin).json()
    assert [item["id"] for item in listed["items"]] == [own.json()["id"]]
    assert client.get(f"{url}/{other['id']}", headers=ward_admin).status_code == 404
