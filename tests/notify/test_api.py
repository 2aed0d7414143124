"""The notify API: one's own preferences, test messages, the delivery log and its retries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock
from cityops.core.runtime import Runtime

from ..receiver import Receiver
from ..smtp_sink import SmtpSink
from .conftest import (
    API,
    GATEWAY_KEY,
    SMTP_PASSWORD,
    PersonFactory,
    Publisher,
    deliver,
    email_of,
    login,
    messages,
)

PREFS = f"{API}/me/notification-preferences"


def _user(
    person: PersonFactory, client: TestClient, role: str = "operator", **kwargs: Any
) -> tuple[int, dict[str, str]]:
    """Create a user and log them in; return their id and bearer headers."""
    username = f"{role}-{uuid.uuid4().hex[:8]}"
    user_id = person(role, username=username, **kwargs)
    return user_id, login(client, username)


def test_preferences_start_from_the_defaults_and_can_be_replaced(
    client: TestClient, person: PersonFactory
) -> None:
    user_id, headers = _user(person, client)
    shown = client.get(PREFS, headers=headers)
    assert shown.status_code == 200
    assert shown.json() == {
        "user_id": user_id,
        "events": ["escalated", "incident_assigned", "sla_breached"],
        "channels": ["email"],
        "phone": None,
        "zalo_user_id": None,
        "min_severity": "low",
        "quiet_start": None,
        "quiet_end": None,
        "only_mine": True,
        "is_default": True,
        "time_zone": "Asia/Ho_Chi_Minh",
        "available_channels": ["email", "sms", "zalo"],
        "updated_at": None,
    }
    wanted = {
        "events": ["alert_opened", "incident_created", "alert_opened"],
        "channels": ["sms", "email"],
        "phone": "091 234 5678",
        "min_severity": "high",
        "quiet_start": "22:00",
        "quiet_end": "06:30",
    }
    saved = client.put(PREFS, json=wanted, headers=headers)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["events"] == ["alert_opened", "incident_created"]
    assert body["channels"] == ["sms", "email"]
    assert body["phone"] == "+84912345678"
    assert (body["quiet_start"], body["quiet_end"]) == ("22:00", "06:30")
    assert body["is_default"] is False
    assert body["updated_at"] == "2026-11-20T03:00:00Z"
    assert client.get(PREFS, headers=headers).json() == body
    assert client.delete(PREFS, headers=headers).status_code == 204
    assert client.get(PREFS, headers=headers).json()["is_default"] is True


def test_bad_preferences_are_refused_naming_the_field_in_vietnamese(
    client: TestClient, person: PersonFactory
) -> None:
    _, headers = _user(person, client, email=None)
    base = {"events": ["alert_opened"], "channels": []}
    cases = [
        ({"phone": "0212 345 678"}, "phone", "số di động Việt Nam"),
        ({"phone": "abc"}, "phone", "Không đúng định dạng"),
        ({"quiet_start": "25:00", "quiet_end": "06:00"}, "quiet_start", "Không đúng định dạng"),
        ({"quiet_start": "7:00", "quiet_end": "06:00"}, "quiet_start", "Không đúng định dạng"),
        ({"quiet_start": "22:00"}, "quiet_end", "cả giờ bắt đầu và giờ kết thúc"),
        ({"quiet_start": "22:00", "quiet_end": "22:00"}, "quiet_end", "phải khác giờ bắt đầu"),
        ({"channels": ["sms"]}, "channels[0]", "nhập số điện thoại"),
        ({"channels": ["zalo"]}, "channels[0]", "mã người dùng Zalo"),
        ({"channels": ["email"]}, "channels[0]", "chưa có địa chỉ e-mail"),
        ({"channels": ["fax"]}, "channels.0", "chọn một trong"),
        ({"events": ["everything"]}, "events.0", "chọn một trong"),
        ({"min_severity": "urgent"}, "min_severity", "chọn một trong"),
        ({"role": "admin"}, "role", "không được chấp nhận"),
    ]
    for change, field, words in cases:
        response = client.put(PREFS, json={**base, **change}, headers=headers)
        assert response.status_code == 422, (change, response.text)
        errors = response.json()["errors"]
        assert errors[0]["field"] == field, (change, errors)
        assert words in errors[0]["message"], (change, errors)
    assert client.get(PREFS, headers=headers).json()["is_default"] is True  # nothing written


def test_preferences_need_a_logged_in_user(client: TestClient) -> None:
    assert client.get(PREFS).status_code == 401
    assert client.put(PREFS, json={"events": [], "channels": []}).status_code == 401


def test_a_user_sends_themselves_a_test_email_at_most_once_a_minute(
    runtime: Runtime,
    clock: FrozenClock,
    client: TestClient,
    smtp_sink: SmtpSink,
    person: PersonFactory,
) -> None:
    user_id, headers = _user(person, client, role="viewer")
    response = client.post(f"{API}/notifications/test", json={"channel": "email"}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["target"] == email_of(runtime, user_id)
    deliver(runtime)
    (mail,) = smtp_sink.wait_for(1)
    assert mail.message["Subject"] == "[CityOps] Tin thử qua e-mail"
    assert mail.message["From"] == "Trung tâm IOC Đồng Nai <ioc@dongnai.gov.vn>"
    assert mail.mail_from == "ioc@dongnai.gov.vn"
    assert "kênh e-mail của bạn đã hoạt động" in mail.text

    again = client.post(f"{API}/notifications/test", json={"channel": "email"}, headers=headers)
    assert again.status_code == 429
    assert again.headers["Retry-After"] == "61"
    clock.advance(timedelta(minutes=1))
    later = client.post(f"{API}/notifications/test", json={"channel": "email"}, headers=headers)
    assert later.status_code == 202
    no_phone = client.post(f"{API}/notifications/test", json={"channel": "sms"}, headers=headers)
    assert no_phone.status_code == 422
    assert no_phone.json()["errors"][0]["field"] == "channel"


def test_a_test_sms_goes_through_the_gateway(
    runtime: Runtime, client: TestClient, http_receiver: Receiver, person: PersonFactory
) -> None:
    prefs = {"events": [], "channels": ["sms"], "phone": "0987654321"}
    _, headers = _user(person, client, prefs=prefs, language="en")
    response = client.post(f"{API}/notifications/test", json={"channel": "sms"}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["target"] == f"{http_receiver.url}/sms"
    deliver(runtime)
    (request,) = http_receiver.wait_for(1)
    assert request.json() == {"to": "+84987654321", "text": "[CityOps] Test message by SMS"}


def test_the_delivery_log_filters_pages_and_shows_attempts_and_errors(
    runtime: Runtime,
    clock: FrozenClock,
    client: TestClient,
    admin: dict[str, str],
    smtp_sink: SmtpSink,
    person: PersonFactory,
    publish: Publisher,
) -> None:
    refused = person("operator", prefs={"events": ["alert_opened"], "channels": ["email"]})
    smtp_sink.refuse.add(email_of(runtime, refused))
    person(
        "operator",
        prefs={"events": ["alert_opened"], "channels": ["email", "sms"], "phone": "0912345678"},
    )
    publish("alerts.alert_opened", "alert_opened")
    deliver(runtime)
    url = f"{API}/notifications/deliveries"
    everything = client.get(url, headers=admin).json()
    assert everything["total"] == 3
    failed = client.get(url, params={"status": "failed"}, headers=admin).json()
    assert failed["total"] == 1
    (item,) = failed["items"]
    assert item["channel"] == "smtp"
    assert item["target"] == email_of(runtime, refused)
    assert item["source"] == "notify"
    assert item["source_ref"] == "alerts.alert_opened:41"
    assert item["owner"] == f"notify:email:{refused}"
    assert item["attempts"] == 1
    assert item["last_status"] == 550
    assert "Mailbox unavailable" in item["last_error"]
    sms = client.get(url, params={"channel": "sms"}, headers=admin).json()
    assert [i["status"] for i in sms["items"]] == ["delivered"]
    page = client.get(url, params={"limit": 2, "offset": 2}, headers=admin).json()
    assert (page["total"], len(page["items"]), page["limit"], page["offset"]) == (3, 1, 2, 2)
    assert client.get(url, params={"source": "notify.test"}, headers=admin).json()["total"] == 0
    for secret in (SMTP_PASSWORD, GATEWAY_KEY):
        assert secret not in client.get(url, headers=admin).text

    # The mailbox now exists: the administrator retries the message.
    smtp_sink.refuse.clear()
    retried = client.post(f"{url}/{item['id']}/retry", headers=admin)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    deliver(runtime)
    assert email_of(runtime, refused) in {mail.rcpt_tos[0] for mail in smtp_sink.mails}
    (message,) = [m for m in messages(runtime) if m.id == item["id"]]
    assert (message.status, message.attempts) == ("delivered", 2)
    again = client.post(f"{url}/{item['id']}/retry", headers=admin)
    assert again.status_code == 409
    assert client.post(f"{url}/999999/retry", headers=admin).status_code == 404


def test_the_delivery_log_is_for_province_wide_administrators(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    url = f"{API}/notifications/deliveries"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=login_as("operator")).status_code == 403
    ward_admin = login_as("admin", unit_code="26017")
    response = client.get(url, headers=ward_admin)
    assert response.status_code == 403
    assert "quản trị viên cấp tỉnh" in response.json()["detail"]
    assert client.post(f"{url}/1/retry", headers=ward_admin).status_code == 403


def test_email_to_a_server_that_is_down_is_retried(
    runtime: Runtime,
    clock: FrozenClock,
    smtp_sink: SmtpSink,
    person: PersonFactory,
    publish: Publisher,
) -> None:
    person("operator", prefs={"events": ["alert_opened"], "channels": ["email"]})
    smtp_sink.stop()
    publish("alerts.alert_opened", "alert_opened")
    assert deliver(runtime) == 0
    (message,) = messages(runtime)
    assert message.status == "pending"
    assert message.attempts == 1
    assert message.last_error is not None
    assert "ConnectionRefusedError" in message.last_error
    smtp_sink.start()  # back, on the same port
    assert deliver(runtime) == 0  # the backoff has not passed yet
    clock.advance(timedelta(seconds=3))
    assert deliver(runtime) == 1
    (mail,) = smtp_sink.wait_for(1)
    assert "Chất lượng không khí rất xấu" in mail.message["Subject"]
