"""The public pages: the report form (catalogue, questions, consent, map), the tracking page
(status, history in the reader's language, photos, rating) and the public map and list with its
filters; no page ever shows a reporter's name, phone, e-mail or photo metadata."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from cityops.citizen import service
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

from .conftest import API, REPORTER, SECRETS, TAM_HIEP_POINT, TRAN_BIEN, Submit, report_id
from .images import CAMERA, metadata_left, photo
from .test_public import created, send
from .test_reports import staff_view, work_through

Headers = dict[str, str]


def page(client: TestClient, url: str, status: int = 200) -> str:
    """GET a page and return its HTML."""
    response = client.get(url)
    assert response.status_code == status, (url, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def config_of(html: str) -> dict[str, Any]:
    """The JSON configuration a page hands its script."""
    match = re.search(r'<script type="application/json" id="public-config">(.*?)</script>', html)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_report_form_in_vietnamese_and_english(client: TestClient) -> None:
    html = page(client, "/public/report")
    assert '<html lang="vi">' in html
    assert "Gửi phản ánh hiện trường" in html
    assert "Hư hỏng mặt đường, vỉa hè" in html  # a service, under its group
    assert '<optgroup label="Giao thông">' in html
    assert 'name="attribute[damage]"' in html  # GT-01's extra question, with its values
    assert "Loại hư hỏng" in html
    assert ">Ổ gà</option>" in html
    assert "91/2025/QH15" in html
    assert "/static/vendor/leaflet/leaflet.js" in html
    assert 'accept="image/jpeg,image/png,image/webp"' in html
    assert config_of(html)["maxPhotos"] == 3
    english = page(client, "/public/report?lang=en")
    assert '<html lang="en">' in english
    assert "Damaged road or pavement" in english
    assert "Kind of damage" in english
    assert config_of(english)["strings"]["web.public.js.follow"] == "Follow this report instead"
    login = page(client, "/login")
    assert 'href="/public/report"' in login
    assert "Phản ánh hiện trường" in login


def test_tracking_page_follows_the_report_to_resolution_and_rating(
    client: TestClient,
    login_as: Callable[..., Headers],
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    start = clock.now()
    body = created(
        send(
            client,
            {
                "service_code": "GT-01",
                "attribute[damage]": "pothole",
                "description": "Ổ gà lớn trước cổng trường",
                **TRAN_BIEN,
                **REPORTER,
                "consent": "true",
            },
            [photo(gps=(10.938, 106.835))],
        )
    )
    code = body["tracking_code"]
    mine = body["tracking_url"]  # the reporter's own link, with their key
    html = page(client, mine)
    assert code in html
    assert 'data-status="open"' in html
    assert "Đang xử lý" in html
    assert "Phường Trấn Biên" in html
    assert "Ổ gà lớn trước cổng trường" in html
    assert f'src="/api/v1/citizen/reports/{code}/photos/1"' in html
    assert "Đã tiếp nhận" in html
    assert 'id="rating-form"' not in html  # not before it is resolved
    assert page(client, f"/public/reports/{code.lower()}").count(code) >= 1
    incident_id = staff_view(client, login_as("operator"), code)["incident_id"]
    clock.advance(timedelta(hours=3))
    work_through(client, login_as, incident_id, "SXD")
    html = page(client, f"/public/reports/{code}")
    assert 'data-status="closed"' in html
    assert "Đã xử lý xong" in html
    # Anyone can follow the report; only its reporter (their link's key) gets the rating form.
    assert 'id="rating-form"' not in html
    assert 'id="rating-key-needed"' in html
    html = page(client, mine)
    assert 'id="rating-form"' in html
    assert 'id="rating-key-needed"' not in html
    english = page(client, f"/public/reports/{code}?lang=en")
    assert "Resolved" in english
    assert "Received" in english
    assert "In progress" in english  # the history, in the reader's language
    assert "Đã tiếp nhận" not in english
    with unit_of_work(runtime.session_factory) as session:
        before = service.satisfaction(session=session, start=start, end=clock.now() + timedelta(1))
    key = mine.rsplit("key=", 1)[1]
    rated = client.post(
        f"{API}/citizen/reports/{code}/rating",
        json={"satisfied": True, "comment": "Tốt", "key": key},
    )
    assert rated.status_code == 204
    with unit_of_work(runtime.session_factory) as session:
        after = service.satisfaction(session=session, start=start, end=clock.now() + timedelta(1))
    assert (after.rated, after.satisfied) == (before.rated + 1, before.satisfied + 1)
    html = page(client, f"/public/reports/{code}")
    assert 'id="rating-form"' not in html
    assert "hài lòng" in html


def test_unknown_or_hidden_report_is_not_found(
    client: TestClient, login_as: Callable[..., Headers]
) -> None:
    assert "PA-ZZZZ-ZZZZ" in page(client, "/public/reports/PA-ZZZZ-ZZZZ", 404)
    flagged = created(
        send(client, {"service_code": "MT-01", "description": "<b>xem</b> tại đây", **TRAN_BIEN})
    )
    assert flagged["moderation"] == "pending"
    code = flagged["tracking_code"]
    html = page(client, f"/public/reports/{code}")
    assert "chờ kiểm duyệt" in html
    assert "<b>" not in html
    moderator = login_as("operator")
    hidden = client.post(
        f"{API}/citizen/reports/{code}/moderation", json={"decision": "hide"}, headers=moderator
    )
    assert hidden.status_code == 200, hidden.text
    page(client, f"/public/reports/{code}", 404)
    assert code not in page(client, "/public/reports?period=90")


def test_public_map_filters_by_service_status_unit_and_period(
    client: TestClient, submit: Submit, login_as: Callable[..., Headers], clock: FrozenClock
) -> None:
    old = report_id(submit(service_code="CS-01", **TAM_HIEP_POINT))
    clock.advance(timedelta(days=10))
    garbage = report_id(submit(service_code="MT-01", **TRAN_BIEN))
    road = report_id(submit(service_code="GT-01", **{"attribute[damage]": "crack"}, **TRAN_BIEN))
    work_through(
        client, login_as, staff_view(client, login_as("operator"), road)["incident_id"], "SXD"
    )
    html = page(client, "/public/reports")
    assert all(code in html for code in (old, garbage, road))
    markers = {m["code"]: m for m in config_of(html)["markers"]}
    assert markers[garbage]["status"] == "open"
    assert markers[road]["status"] == "closed"
    assert "/static/vendor/markercluster/leaflet.markercluster.js" in html
    by_service = page(client, "/public/reports?service=MT-01")
    assert garbage in by_service
    assert road not in by_service
    closed = page(client, "/public/reports?status=closed")
    assert road in closed
    assert garbage not in closed
    ward = page(client, "/public/reports?unit=26017")
    assert old in ward
    assert garbage not in ward
    week = page(client, "/public/reports?period=7")
    assert old not in week
    assert garbage in week
    as_the_form_sends = page(client, "/public/reports?service=&status=&unit=&period=30")
    assert all(code in as_the_form_sends for code in (old, garbage, road))
    english = page(client, "/public/reports?lang=en")
    assert "Map of citizen reports" in english
    assert client.get("/public/reports?status=lost").status_code == 422
    assert client.get("/public/reports?period=365").status_code == 422


def test_no_public_page_shows_personal_data(
    client: TestClient, submit: Submit, login_as: Callable[..., Headers]
) -> None:
    posted = send(
        client,
        {"service_code": "MT-01", "description": "Rác ven kênh", **REPORTER, "consent": "true"},
        [photo(gps=(10.938, 106.835))],
    )
    code = created(posted)["tracking_code"]
    via_open311 = report_id(submit(service_code="MT-01", **TAM_HIEP_POINT, **REPORTER))
    bodies = [posted.text]
    incident_id = staff_view(client, login_as("operator"), code)["incident_id"]
    for step in range(2):
        for url in (
            "/public/report",
            "/public/report?lang=en",
            "/public/reports",
            "/public/reports?lang=en",
            "/public/reports?service=MT-01&status=open&unit=26041&period=7",
            f"/public/reports/{code}",
            f"/public/reports/{code}?lang=en",
            f"/public/reports/{via_open311}",
            f"{API}/citizen/duplicates?service_code=MT-01&lat=10.938&lon=106.835",
        ):
            bodies.append(page(client, url) if url.startswith("/public") else client.get(url).text)
        if step == 0:
            work_through(client, login_as, incident_id, "SNNMT")
    stored = client.get(f"{API}/citizen/reports/{code}/photos/1")
    assert metadata_left(stored.content) == []
    assert CAMERA.encode() not in stored.content
    assert sum(code in body for body in bodies) >= 8  # the list and tracking pages showed it
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body


def test_every_public_page_string_is_in_both_languages() -> None:
    from importlib import resources

    web = resources.files("cityops.web")
    sources = [(web / "public.py").read_text("utf-8")] + [
        (web / "templates" / name).read_text("utf-8")
        for name in (
            "public_base.html",
            "public_report.html",
            "public_tracking.html",
            "public_reports.html",
            "public_missing.html",
            "login.html",
        )
    ]
    used = {
        key
        for text in sources
        for key in re.findall(r"[\"'](web\.public\.[a-z_.]*[a-z_])[\"']", text)
    }
    assert len(used) > 60
    for lang in ("vi", "en"):
        catalog = json.loads((web / "locales" / f"{lang}.json").read_text("utf-8"))
        assert used - set(catalog) == set(), lang
        for status in ("open", "closed"):
            assert f"web.public.status.{status}" in catalog
