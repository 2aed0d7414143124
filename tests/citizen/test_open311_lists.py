"""Open311 GET lists byte for byte: a known set of reports rendered as JSON and XML (every field,
local times with their offset, escaping, notes), no personal data; and local times formatted
from the UTC hour exactly as `astimezone` would in zones with odd offsets and daylight saving."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from cityops.citizen.models import Report, Reporter, ReportNote
from cityops.citizen.open311 import local_times
from cityops.core.db import unit_of_work

from .conftest import OPEN311

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def _report(number: int, **fields: Any) -> Report:
    values: dict[str, Any] = {
        "tracking_code": f"PA-TEST-{number:04d}",
        "token": f"{number:032x}",
        "service_code": "GT-01",
        "status": "open",
        "description": "",
        "attributes": {},
        "moderation": "none",
        "requested_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Report(**values)


@pytest.fixture
def reports(runtime: Any) -> None:
    """Store four public reports, one hidden by moderation, with a reporter and notes."""
    with unit_of_work(runtime.session_factory) as session:
        full = _report(
            1,
            status="closed",
            status_notes='Đã vá "ổ gà" & dọn <đá>',
            description="Ổ gà lớn giữa làn xe máy\nnguy hiểm ban đêm\t\\ 100%",
            address="Đồng Khởi, phường Trấn Biên, Đồng Nai",
            lat=10.938123,
            lon=106.835,
            media_url="https://example.vn/o-ga.jpg?a=1&b=2",
            department_code="SXD",
            unit_code="26041",
            # Microseconds are cut, not rounded; 17:30 UTC is 00:30 the next day in Đồng Nai.
            requested_at=datetime(2026, 11, 18, 17, 30, 59, 999_999, tzinfo=UTC),
            updated_at=datetime(2026, 11, 19, 23, 59, 1, tzinfo=UTC),
            expected_at=datetime(2026, 11, 23, 17, 30, 59, tzinfo=UTC),
        )
        bare = _report(
            2,
            service_code="MT-01",
            description="Rác tồn đọng",
            requested_at=datetime(2026, 11, 19, 2, 0, tzinfo=UTC),
            updated_at=datetime(2026, 11, 19, 2, 0, tzinfo=UTC),
        )
        # A department and a service this instance has no name for: their codes are shown.
        unknown = _report(
            3,
            service_code="MT-01",
            department_code="KHONG-CO",
            lat=10.95,
            lon=None,
            requested_at=datetime(2026, 9, 1, 0, 0, tzinfo=UTC),
            updated_at=datetime(2026, 9, 1, 0, 0, tzinfo=UTC),
        )
        hidden = _report(4, moderation="pending", requested_at=datetime(2026, 11, 19, tzinfo=UTC))
        approved = _report(
            5,
            moderation="approved",
            description="Đèn đường không sáng",
            requested_at=datetime(2026, 11, 19, 12, 0, 0, 1, tzinfo=UTC),
            updated_at=datetime(2026, 11, 19, 12, 0, 0, 1, tzinfo=UTC),
        )
        session.add_all([full, bare, unknown, hidden, approved])
        session.flush()
        session.add(Reporter(report_id=full.id, email="nguoi.dan@example.vn", phone="0912345678"))
        session.add_all(
            [
                ReportNote(
                    report_id=full.id,
                    at=datetime(2026, 11, 18, 17, 31, tzinfo=UTC),
                    kind="status",
                    status="open",
                    description="Đã tiếp nhận",
                ),
                ReportNote(
                    report_id=full.id,
                    at=datetime(2026, 11, 19, 23, 59, 1, tzinfo=UTC),
                    kind="status",
                    status="closed",
                    description="Đã xử lý xong",
                ),
            ]
        )


FULL_JSON = (
    '{"service_request_id":"PA-TEST-0001","status":"closed",'
    '"status_notes":"Đã vá \\"ổ gà\\" & dọn <đá>","service_name":"Hư hỏng mặt đường, vỉa hè",'
    '"service_code":"GT-01",'
    '"description":"Ổ gà lớn giữa làn xe máy\\nnguy hiểm ban đêm\\t\\\\ 100%",'
    '"agency_responsible":"Sở Xây dựng","requested_datetime":"2026-11-19T00:30:59+07:00",'
    '"updated_datetime":"2026-11-20T06:59:01+07:00","expected_datetime":"2026-11-24T00:30:59+07:00",'
    '"address":"Đồng Khởi, phường Trấn Biên, Đồng Nai","lat":10.938123,"long":106.835,'
    '"media_url":"https://example.vn/o-ga.jpg?a=1&b=2"}'
)
APPROVED_JSON = (
    '{"service_request_id":"PA-TEST-0005","status":"open",'
    '"service_name":"Hư hỏng mặt đường, vỉa hè","service_code":"GT-01",'
    '"description":"Đèn đường không sáng","requested_datetime":"2026-11-19T19:00:00+07:00",'
    '"updated_datetime":"2026-11-19T19:00:00+07:00"}'
)
BARE_JSON = (
    '{"service_request_id":"PA-TEST-0002","status":"open","service_name":"Rác thải, vệ sinh môi '
    'trường","service_code":"MT-01","description":"Rác tồn đọng",'
    '"requested_datetime":"2026-11-19T09:00:00+07:00","updated_datetime":"2026-11-19T09:00:00+07:00"}'
)
UNKNOWN_JSON = (
    '{"service_request_id":"PA-TEST-0003","status":"open","service_name":"Rác thải, vệ sinh môi '
    'trường","service_code":"MT-01","description":"",'
    '"requested_datetime":"2026-09-01T07:00:00+07:00","updated_datetime":"2026-09-01T07:00:00+07:00"}'
)
FULL_XML = (
    "<request><service_request_id>PA-TEST-0001</service_request_id><status>closed</status>"
    '<status_notes>Đã vá "ổ gà" &amp; dọn &lt;đá&gt;</status_notes>'
    "<service_name>Hư hỏng mặt đường, vỉa hè</service_name><service_code>GT-01</service_code>"
    "<description>Ổ gà lớn giữa làn xe máy\nnguy hiểm ban đêm\t\\ 100%</description>"
    "<agency_responsible>Sở Xây dựng</agency_responsible>"
    "<requested_datetime>2026-11-19T00:30:59+07:00</requested_datetime>"
    "<updated_datetime>2026-11-20T06:59:01+07:00</updated_datetime>"
    "<expected_datetime>2026-11-24T00:30:59+07:00</expected_datetime>"
    "<address>Đồng Khởi, phường Trấn Biên, Đồng Nai</address><lat>10.938123</lat>"
    "<long>106.835</long><media_url>https://example.vn/o-ga.jpg?a=1&amp;b=2</media_url></request>"
)


def test_list_json_is_pinned_byte_for_byte(client: TestClient, reports: None) -> None:
    response = client.get(f"{OPEN311}/requests.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    expected = f"[{APPROVED_JSON},{BARE_JSON},{FULL_JSON},{UNKNOWN_JSON}]"
    assert response.content.decode("utf-8") == expected
    # Filtered, paged and single: the same items.
    by_service = client.get(f"{OPEN311}/requests.json?service_code=MT-01&status=open")
    assert by_service.content.decode("utf-8") == f"[{BARE_JSON},{UNKNOWN_JSON}]"
    page = client.get(f"{OPEN311}/requests.json?page_size=1&page=3")
    assert page.content.decode("utf-8") == f"[{FULL_JSON}]"
    one = client.get(f"{OPEN311}/requests/pa-test-0001.json")
    assert one.content.decode("utf-8") == f"[{FULL_JSON}]"
    # The hidden report is in no list, and nobody's e-mail or phone is in any.
    assert "PA-TEST-0004" not in response.text
    assert client.get(f"{OPEN311}/requests/PA-TEST-0004.json").status_code == 404
    for text in (response.text, one.text):
        assert "example.vn/o-ga" in text
        assert "nguoi.dan" not in text
        assert "0912345678" not in text


def test_list_xml_is_pinned_byte_for_byte(client: TestClient, reports: None) -> None:
    response = client.get(f"{OPEN311}/requests.xml?status=closed")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.content.decode("utf-8") == (
        f'<?xml version="1.0" encoding="utf-8"?><service_requests>{FULL_XML}</service_requests>'
    )
    every = client.get(f"{OPEN311}/requests.xml").content.decode("utf-8")
    assert every.count("<request>") == 4
    assert every.startswith(
        '<?xml version="1.0" encoding="utf-8"?><service_requests><request>'
        "<service_request_id>PA-TEST-0005</service_request_id>"
    )
    assert FULL_XML in every
    assert "nguoi.dan" not in every


def test_notes_extension_is_pinned(client: TestClient, reports: None) -> None:
    notes = (
        '"notes":[{"datetime":"2026-11-19T00:31:00+07:00","description":"Đã tiếp nhận",'
        '"type":"status","status":"open"},'
        '{"datetime":"2026-11-20T06:59:01+07:00","description":"Đã xử lý xong","type":"status",'
        '"status":"closed"}]'
    )
    response = client.get(f"{OPEN311}/requests.json?status=closed&extensions=true")
    assert response.content.decode("utf-8") == f"[{FULL_JSON[:-1]},{notes}}}]"
    xml = client.get(f"{OPEN311}/requests.xml?status=closed&extensions=true").text
    assert xml.endswith(
        "<notes><note><datetime>2026-11-19T00:31:00+07:00</datetime>"
        "<description>Đã tiếp nhận</description><type>status</type><status>open</status></note>"
        "<note><datetime>2026-11-20T06:59:01+07:00</datetime>"
        "<description>Đã xử lý xong</description><type>status</type>"
        "<status>closed</status></note></notes></request></service_requests>"
    )


@pytest.mark.parametrize(
    "zone",
    [
        "Asia/Ho_Chi_Minh",
        "Europe/Berlin",  # daylight saving, changing at 01:00 UTC
        "America/St_Johns",  # a half-hour offset with daylight saving
        "Asia/Kolkata",  # a half-hour offset
        "Australia/Lord_Howe",  # a half-hour daylight saving shift
        "Asia/Kathmandu",  # a quarter-hour offset
        "UTC",
    ],
)
def test_local_times_match_astimezone(zone: str) -> None:
    tz = ZoneInfo(zone)
    local = local_times(zone)
    rng = random.Random(zone)
    instants = [datetime(1940, 1, 1, tzinfo=UTC), datetime(1975, 6, 13, 16, 59, 59, tzinfo=UTC)]
    instants += [
        datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 59, 59, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 4, 4, 15, 29, 59, tzinfo=UTC),  # Lord Howe: 02:00 local, DST ends
        datetime(2026, 4, 4, 15, 30, tzinfo=UTC),
        datetime(2026, 10, 3, 15, 29, 59, tzinfo=UTC),
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
    ]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    instants += [
        start + timedelta(seconds=rng.randrange(3 * 365 * 86400), microseconds=rng.randrange(10**6))
        for _ in range(3000)
    ]
    for instant in instants:
        expected = instant.astimezone(tz).isoformat(timespec="seconds")
        # As SQLite returns it (naive UTC text), and as PostgreSQL does (an aware datetime).
        stored = instant.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        assert local(stored) == expected, (zone, stored)
        assert local(instant) == expected, (zone, instant)
        assert local(instant.astimezone(tz)) == expected, (zone, instant)
        assert local(instant.replace(tzinfo=None)) == expected, (zone, instant)
    assert local(None) is None
    # Text in another shape SQLite may hold (no fraction, a "T") still reads.
    assert local("2026-11-20 03:00:00") == local("2026-11-20T03:00:00.000000")
