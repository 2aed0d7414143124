"""Confirmation at submission: a reporter who left an e-mail or a phone hears at once, in their
language, that the report arrived, with its tracking code and the tracking page's link (through
the outbox's smtp and sms channels, like every later update); an anonymous reporter gets
nothing and nobody else is written to."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from cityops.core.runtime import Runtime

from ..receiver import Receiver
from ..smtp_sink import SmtpSink
from .conftest import TRAN_BIEN, Submit, report_id
from .test_public import created, send

BASE = "https://ioc.dongnai.gov.vn/public/reports"


def _sms(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests if r.path == "/sms"]


def test_reporter_gets_a_confirmation_with_code_and_link_in_their_language(
    client: TestClient,
    submit: Submit,
    runtime: Runtime,
    smtp_sink: SmtpSink,
    http_receiver: Receiver,
) -> None:
    english = created(
        send(
            client,
            {
                "service_code": "MT-01",
                **TRAN_BIEN,
                "email": "visitor@example.com",
                "phone": "0987654321",
                "consent": "true",
            },
            lang="en",
        )
    )["tracking_code"]
    vietnamese = report_id(
        submit(service_code="TN-01", lat="10.954", long="106.859", email="nguoidan@example.vn")
    )
    anonymous = report_id(submit(service_code="MT-01", lat="10.9420", long="106.835"))
    assert runtime.outbox is not None
    runtime.outbox.drain()  # nothing else happened to these reports: only confirmations
    mails = smtp_sink.wait_for(2)
    assert sorted(r for m in mails for r in m.rcpt_tos) == [
        "nguoidan@example.vn",
        "visitor@example.com",
    ]
    [to_english] = [m for m in mails if m.rcpt_tos == ["visitor@example.com"]]
    assert to_english.message["Subject"] == f"[CityOps] Report {english}"
    assert f"Report {english}: Received. Follow it at:" in to_english.text
    english_link = re.search(rf"{BASE}/{english}\?lang=en&key=[0-9a-f]{{32}}\n", to_english.text)
    assert english_link is not None
    [to_vietnamese] = [m for m in mails if m.rcpt_tos == ["nguoidan@example.vn"]]
    assert to_vietnamese.message["Subject"] == f"[CityOps] Phản ánh {vietnamese}"
    assert f"Phản ánh {vietnamese}: Đã tiếp nhận. Theo dõi tại:" in to_vietnamese.text
    assert re.search(rf"{BASE}/{vietnamese}\?key=[0-9a-f]{{32}}\n", to_vietnamese.text)
    [sms] = _sms(http_receiver)
    assert sms["to"] == "+84987654321"
    assert sms["text"].startswith(f"Report {english}: Received")
    assert sms["text"].endswith(english_link.group(0).strip())  # the link whole
    assert len(sms["text"]) <= 160
    for mail in mails:
        assert anonymous not in mail.text
    # The link is the reporter's own: it opens the page where they rate the result later.
    page = client.get(english_link.group(0).strip().removeprefix("https://ioc.dongnai.gov.vn"))
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    # The message goes with the report: a refused submission sends nothing.
    refused = submit(service_code="MT-01", email="late@example.vn")  # no place given
    assert refused.status_code == 400
    runtime.outbox.drain()
    assert len(smtp_sink.mails) == 2
