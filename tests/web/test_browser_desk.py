"""The live feed and the incident desk in a real Chromium: an observation sent through the API
raises an alert that appears in the feed, its incident is handed to the environment department,
the desk speaks English, and an anonymous visitor is sent to the login page."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL

from ..conftest import TEST_PASSWORD
from .browser import ARTIFACTS, browser_app, chromium, serving
from .live import LiveServer

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

TRAN_BIEN = (106.835, 10.938)  # lon, lat: inside Phường Trấn Biên (26041), Biên Hòa
OFFICER_NAME = "Phạm Thị Môi"


@pytest.fixture(scope="module")
def server(
    template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One uvicorn server for the module, with its background work running as in production
    (the rule engine's thread evaluates observations as they arrive)."""
    app = browser_app(template_database, tmp_path_factory, "browser-desk", background_jobs=True)
    with serving(app) as live:
        yield live


def _user(server: LiveServer, role: str, full_name: str, **scope: str) -> str:
    runtime = server.app.state.runtime
    username = f"{role.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        auth_service.create_user(
            session=session,
            user_in=UserCreate(
                username=username,
                password=TEST_PASSWORD,
                full_name=full_name,
                role=role,
                **scope,
            ),
            clock=runtime.clock,
            settings=runtime.settings,
        )
    return username


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """An admin's API client (what a sensor gateway would use)."""
    admin = _user(server, "admin", "Quản trị")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        token = http.post(
            "/api/v1/auth/token", data={"username": admin, "password": TEST_PASSWORD}
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (the system's; never downloaded)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="vi-VN")
    tab = context.new_page()
    tab.set_default_timeout(15000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.errors = errors
    yield tab
    # A refused action (422) is shown to the user; Chromium logs it as well.
    assert not [e for e in errors if "401" not in e and "422" not in e], errors
    context.close()


def _login(page: Any, server: LiveServer, username: str, next_path: str = "/") -> None:
    page.goto(f"{server.url}{next_path}")
    assert "/login" in page.url
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_selector("body[data-ready='1']", state="attached")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_an_anonymous_visitor_of_the_desk_is_sent_to_the_login_page(
    page: Any, server: LiveServer
) -> None:
    page.goto(f"{server.url}/incidents?severity=critical")
    assert page.url == f"{server.url}/login?next=%2Fincidents%3Fseverity%3Dcritical"
    assert page.get_by_label("Mật khẩu").is_visible()
    page.screenshot(path=str(ARTIFACTS / "desk-login.png"))


def test_a_pollution_alert_arrives_live_and_is_handed_to_the_environment_department(
    page: Any, server: LiveServer, api: httpx.Client
) -> None:
    officer = _user(server, "department_officer", OFFICER_NAME, department_code="SNNMT")
    assert officer
    _login(page, server, _user(server, "operator", "Nguyễn Văn An"))
    page.wait_for_selector("body[data-live='1']", state="attached")
    station = f"urn:ngsi-ld:AirQualityObserved:desk-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    body = {
        "id": station,
        "type": "AirQualityObserved",
        "name": {"type": "Property", "value": "Trạm Trấn Biên"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": TRAN_BIEN}},
        "dateObserved": {"type": "Property", "value": _iso(now)},
        "airQualityIndex": {"type": "Property", "value": 80, "observedAt": _iso(now)},
    }
    created = api.post("/ngsi-ld/v1/entities", json=body)
    assert created.status_code == 201, created.text
    spike = {"airQualityIndex": {"type": "Property", "value": 176, "observedAt": _iso(now)}}
    sent = time.monotonic()
    patched = api.patch(f"/ngsi-ld/v1/entities/{station}/attrs", json=spike)
    assert patched.status_code == 204, patched.text
    alert = page.locator("#feed li.feed-alert", has_text="VN_AQI trên 150 (Xấu)")
    alert.first.wait_for(timeout=2000)
    assert time.monotonic() - sent < 2.0
    assert "Cảnh báo · Trung bình" in alert.first.inner_text()
    # The alert's policy opens an incident: it comes too, and is drawn on the map.
    incident = page.locator("#feed li.feed-incident", has_text="VN_AQI trên 150").first
    incident.wait_for(timeout=5000)
    page.wait_for_function("Number(document.body.dataset.incidents) >= 1")
    assert page.locator(".incident-pin").count() + page.locator(".incident-cluster").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "desk-feed-alert.png"))
    # Long Khánh's area hides a Biên Hòa alert; the province shows it again.
    page.get_by_label("Khu vực", exact=True).select_option("long-khanh-cu")
    page.wait_for_function("!document.querySelector('#feed li.feed-alert')")
    page.get_by_label("Khu vực", exact=True).select_option("bien-hoa-cu")
    alert.first.wait_for()

    incident.get_by_role("link").click()
    page.wait_for_url("**/incidents/*")
    page.wait_for_selector("body[data-ready='1']", state="attached")
    # The rule's policy dispatched it to SNNMT already; nobody is assigned yet.
    assert page.locator("#incident-status").inner_text() == "Đã giao"
    assert page.locator("#incident-assignee").inner_text() == "–"
    assert page.locator("#sla-ack").inner_text().startswith("còn ")
    page.get_by_label("Đơn vị chủ trì").select_option("SNNMT")
    page.get_by_label("Người xử lý").select_option(label=f"{OFFICER_NAME} (SNNMT)")
    page.get_by_role("button", name="Giao xử lý").click()
    page.wait_for_function(
        f"document.getElementById('incident-assignee').textContent.trim() === '{OFFICER_NAME}'"
    )
    assert page.locator("#incident-status").inner_text() == "Đã giao"
    assert "SNNMT" in page.locator("#incident-department").inner_text()
    assert page.locator(".timeline", has_text="Giao lại").count() == 1
    page.screenshot(path=str(ARTIFACTS / "desk-incident-assigned.png"), full_page=True)

    # A mistake is explained with the API's own message: resolving needs a note.
    page.get_by_role("button", name="Bắt đầu xử lý").click()
    page.wait_for_function(
        "document.getElementById('incident-status').dataset.status === 'in_progress'"
    )
    page.get_by_role("button", name="Đã giải quyết").click()
    error = page.locator("#desk-error")
    error.wait_for()
    assert error.inner_text() == (
        "Cần ghi rõ nội dung đã xử lý khi chuyển sự cố sang đã giải quyết."
    )
    page.screenshot(path=str(ARTIFACTS / "desk-incident-error.png"))


def test_the_desk_lists_filters_and_switches_to_english(
    page: Any, server: LiveServer, api: httpx.Client
) -> None:
    created = api.post(
        "/api/v1/incidents",
        json={
            "title": "Cháy kho hóa chất",
            "category_code": "other",
            "severity": "critical",
            "unit_code": "26041",
        },
    )
    assert created.status_code == 201, created.text
    code = created.json()["code"]
    _login(page, server, _user(server, "leader", "Lê Văn Cường"), "/incidents")
    assert page.get_by_role("heading", name="Bàn xử lý sự cố").is_visible()
    page.get_by_label("Nghiêm trọng").check()
    page.get_by_role("button", name="Lọc", exact=True).click()
    page.wait_for_url("**severity=critical**")
    rows = page.locator("table.desk-table tbody tr")
    assert rows.count() >= 1
    assert all("Nghiêm trọng" in rows.nth(i).inner_text() for i in range(rows.count()))
    assert page.get_by_role("link", name=code).is_visible()
    page.get_by_role("link", name="EN").click()
    page.wait_for_selector("html[lang='en']", state="attached")
    assert page.get_by_role("heading", name="Incident desk").is_visible()
    assert "severity=critical" in page.url
    assert page.get_by_label("Critical").is_checked()
    page.screenshot(path=str(ARTIFACTS / "desk-list-en.png"))
