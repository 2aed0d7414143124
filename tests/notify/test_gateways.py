"""SMS and Zalo through HTTP gateway templates, sent to the real local receiver."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cityops.core.config import Settings
from cityops.core.runtime import Runtime
from cityops.notify.channels import render_gateway, unaccent

from ..receiver import Receiver
from .conftest import GATEWAY_KEY, PersonFactory, Publisher, deliver, messages

SMS = {"events": ["alert_opened", "incident_created"], "channels": ["sms"], "phone": "0912 345 678"}


def test_an_sms_goes_to_the_gateway_with_the_phone_the_key_and_a_short_text(
    runtime: Runtime, http_receiver: Receiver, person: PersonFactory, publish: Publisher
) -> None:
    person("operator", prefs=SMS)
    publish("alerts.alert_opened", "alert_opened")
    assert deliver(runtime) == 1
    (request,) = http_receiver.wait_for(1)
    assert request.path == "/sms"
    assert request.headers["X-Api-Key"] == GATEWAY_KEY
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert body["to"] == "+84912345678"
    assert body["text"] == (
        "CityOps: Canh bao cao: Chat luong khong khi rat xau (VN_AQI 212) - Phuong Tam Hiep. "
        "https://ioc.dongnai.gov.vn/alerts/41"
    )
    assert len(body["text"]) <= 160


def test_a_long_title_is_shortened_but_the_link_is_kept(
    runtime: Runtime, http_receiver: Receiver, person: PersonFactory, publish: Publisher
) -> None:
    person("operator", prefs=SMS)
    title = "Ngập sâu 0,5 m trên đường Phạm Văn Thuận đoạn từ ngã tư Tam Hiệp " * 4
    # Quotes and backslashes in a title must not break the gateway's JSON.
    publish("incidents.incident_created", "incident_created", title=f'"{title}" \\ ')
    assert deliver(runtime) == 1
    text = http_receiver.wait_for(1)[0].json()["text"]
    assert 150 <= len(text) <= 160
    assert text.endswith("... - Phuong Tam Hiep. https://ioc.dongnai.gov.vn/incidents/7")
    assert text.startswith('CityOps: Su co moi SC-2026-000007 (cao): "Ngap sau 0,5 m')


def test_zalo_messages_keep_their_diacritics(
    runtime: Runtime, http_receiver: Receiver, person: PersonFactory, publish: Publisher
) -> None:
    person(
        "operator",
        prefs={"events": ["alert_opened"], "channels": ["zalo"], "zalo_user_id": "7301920384"},
    )
    publish("alerts.alert_opened", "alert_opened")
    assert deliver(runtime) == 1
    (request,) = http_receiver.wait_for(1)
    assert request.path == "/zalo"
    assert request.headers["access_token"] == GATEWAY_KEY
    body = request.json()
    assert body["recipient"] == {"user_id": "7301920384"}
    assert body["message"]["text"].startswith(
        "[CityOps] Cảnh báo mức cao: Chất lượng không khí rất xấu (VN_AQI 212) – Phường Tam Hiệp\n"
    )
    assert "Địa bàn: Phường Tam Hiệp" in body["message"]["text"]


def test_the_gateway_key_is_added_when_sending_and_never_stored(
    runtime: Runtime, person: PersonFactory, publish: Publisher
) -> None:
    person("operator", prefs=SMS)
    publish("alerts.alert_opened", "alert_opened")
    (message,) = messages(runtime)
    assert message.channel == "sms"
    assert GATEWAY_KEY not in json.dumps(message.headers)
    assert GATEWAY_KEY.encode() not in message.payload


def test_one_person_can_be_reached_on_every_channel(
    runtime: Runtime, http_receiver: Receiver, person: PersonFactory, publish: Publisher
) -> None:
    person(
        "operator",
        prefs={
            "events": ["alert_opened"],
            "channels": ["email", "sms", "zalo"],
            "phone": "+84 912.345.678",
            "zalo_user_id": "7301920384",
        },
    )
    publish("alerts.alert_opened", "alert_opened")
    assert deliver(runtime) == 3
    assert sorted(r.path for r in http_receiver.wait_for(2)) == ["/sms", "/zalo"]


def test_templates_are_filled_json_escaped_in_one_pass() -> None:
    template = '{"to": "{phone}", "text": "{message}", "n": "{phone_national}"}'
    body = render_gateway(
        template,
        {"phone": "+84912345678", "phone_national": "0912345678", "message": 'a "{phone}"\n'},
    )
    assert json.loads(body) == {"to": "+84912345678", "text": 'a "{phone}"\n', "n": "0912345678"}


def test_unaccent_keeps_case_and_letters() -> None:
    assert unaccent("Đồng Nai – Phường Trấn Biên, đường Võ Thị Sáu") == (
        "Dong Nai – Phuong Tran Bien, duong Vo Thi Sau"
    )


@pytest.mark.parametrize(
    ("url", "template"),
    [
        ("ftp://gateway.example.vn/send", '{"to": "{phone}"}'),
        ("https://gateway.example.vn/send", '{"to": {phone}}'),  # placeholder outside a string
        ("https://gateway.example.vn/send", "to={phone}&text={message}"),
    ],
)
def test_a_gateway_that_cannot_work_is_refused_at_start_up(url: str, template: str) -> None:
    with pytest.raises(ValidationError, match="CITYOPS_SMS_GATEWAY"):
        Settings(
            database_url="sqlite://",
            secret_key="x" * 40,
            sms_gateway_url=url,
            sms_gateway_template=template,
        )


def test_printed_settings_hide_the_smtp_password_and_gateway_keys() -> None:
    settings = Settings(
        database_url="sqlite://",
        secret_key="x" * 40,
        smtp_password="smtp-secret",
        sms_gateway_url="https://gateway.example.vn/send",
        sms_gateway_headers={"X-Api-Key": "gw-secret"},
    )
    shown = json.dumps(settings.public_dict())
    assert "smtp-secret" not in shown
    assert "gw-secret" not in shown
    assert settings.public_dict()["sms_gateway_headers"] == {"X-Api-Key": "***"}
