"""The dashboard in a real Chromium: login, the operations map, the area selector, languages."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.simulate.catalog import centroids

from ..conftest import TEST_PASSWORD
from .browser import ARTIFACTS, browser_app, chromium, serving
from .live import LiveServer

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(
    template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One uvicorn server for the module, on a copy of the seeded database."""
    app = browser_app(template_database, tmp_path_factory, "browser")
    with serving(app) as live:
        yield live


def _user(server: LiveServer, role: str, full_name: str) -> str:
    runtime = server.app.state.runtime
    username = f"{role}-{uuid.uuid4().hex[:6]}"
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        auth_service.create_user(
            session=session,
            user_in=UserCreate(
                username=username, password=TEST_PASSWORD, full_name=full_name, role=role
            ),
            clock=runtime.clock,
            settings=runtime.settings,
        )
    return username


@pytest.fixture(scope="module")
def stations(server: LiveServer) -> dict[str, Any]:
    """Two air stations: a bad one in a Biên Hòa ward, a good one outside the pilot areas."""
    admin = _user(server, "admin", "Quản trị")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        token = http.post(
            "/api/v1/auth/token", data={"username": admin, "password": TEST_PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        areas = {
            code: http.get(f"/api/v1/areas/{code}").json()
            for code in ("bien-hoa-cu", "long-khanh-cu")
        }
        members = {
            code: [m["code"] if isinstance(m, dict) else m for m in area.get("units", [])]
            for code, area in areas.items()
        }
        pilot = set(members["bien-hoa-cu"]) | set(members["long-khanh-cu"])
        inside = members["bien-hoa-cu"][0]
        outside = next(code for code in sorted(centroids()) if code not in pilot)
        for name, code, aqi in (("bh", inside, 172), ("out", outside, 42)):
            lat, lon = centroids()[code]
            body = {
                "id": f"urn:ngsi-ld:AirQualityObserved:web-{name}",
                "type": "AirQualityObserved",
                "name": {"type": "Property", "value": f"Trạm {name}"},
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [lon, lat]},
                },
                "dateObserved": {"type": "Property", "value": "2026-11-20T02:55:00Z"},
                "airQualityIndex": {"type": "Property", "value": aqi},
            }
            response = http.post("/ngsi-ld/v1/entities", json=body, headers=headers)
            assert response.status_code == 201, response.text
    return {"bien_hoa_units": len(members["bien-hoa-cu"])}


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
    assert not [e for e in errors if "401" not in e], errors
    context.close()


def _login(page: Any, server: LiveServer, username: str, next_path: str = "/") -> None:
    page.goto(f"{server.url}{next_path}")
    assert "/login" in page.url
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    _ready(page)


def _ready(page: Any) -> None:
    try:
        page.wait_for_selector("body[data-ready='1']", state="attached")
    except playwright_api.TimeoutError as exc:
        raise AssertionError(f"the screen never got ready: {page.errors}") from exc


def test_an_anonymous_visitor_gets_the_login_form_and_a_wrong_password_is_explained(
    page: Any, server: LiveServer
) -> None:
    page.goto(f"{server.url}/")
    assert page.url == f"{server.url}/login?next=%2F"
    page.get_by_label("Tên đăng nhập").fill("nobody")
    page.get_by_label("Mật khẩu").fill("wrong-password")
    page.get_by_label("Mật khẩu").press("Enter")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Sai tên đăng nhập hoặc mật khẩu" in alert.inner_text()
    page.screenshot(path=str(ARTIFACTS / "login-error.png"))


def test_the_operations_screen_draws_95_units_and_the_sensors(
    page: Any, server: LiveServer, stations: dict[str, Any]
) -> None:
    _login(page, server, _user(server, "operator", "Nguyễn Văn An"))
    assert page.url == f"{server.url}/"
    body = page.locator("body")
    assert body.get_attribute("data-units") == "95"
    assert page.locator("path.leaflet-interactive").count() >= 95
    assert body.get_attribute("data-sensors") == "2"
    assert page.locator("#fig-units").inner_text() == "95"
    assert page.locator("#fig-aqi").inner_text() == "172"
    assert page.locator("#fig-aqi-band").inner_text() == "Xấu"
    assert "Nguyễn Văn An" in page.locator(".user-menu summary").inner_text()
    page.screenshot(path=str(ARTIFACTS / "operations-province.png"))


def test_choosing_bien_hoa_zooms_the_map_and_filters_the_figures(
    page: Any, server: LiveServer, stations: dict[str, Any]
) -> None:
    _login(page, server, _user(server, "viewer", "Trần Thị Bình"))
    body = page.locator("body")
    province_bounds = body.get_attribute("data-bounds")
    page.get_by_label("Khu vực", exact=True).select_option("bien-hoa-cu")
    expected = str(stations["bien_hoa_units"])
    page.wait_for_function(f"document.body.dataset.units === '{expected}'")
    assert body.get_attribute("data-bounds") != province_bounds
    west, south, east, north = map(float, (body.get_attribute("data-bounds") or "").split(","))
    # Biên Hòa's wards span a few tenths of a degree, not the province's two degrees.
    assert east - west < 1.0
    assert north - south < 1.0
    assert page.locator("#fig-sensors").inner_text() == "1"
    assert "area=bien-hoa-cu" in page.url
    page.screenshot(path=str(ARTIFACTS / "operations-bien-hoa.png"))
    # The choice is in the address: reloading keeps it.
    page.reload()
    _ready(page)
    assert body.get_attribute("data-units") == expected
    assert page.get_by_label("Khu vực", exact=True).input_value() == "bien-hoa-cu"


def test_switching_to_english_translates_the_screen_and_keeps_the_area(
    page: Any, server: LiveServer, stations: dict[str, Any]
) -> None:
    _login(page, server, _user(server, "leader", "Lê Văn Cường"), "/?area=bien-hoa-cu")
    page.get_by_role("link", name="EN").click()
    page.wait_for_selector("html[lang='en']", state="attached")
    _ready(page)
    assert page.get_by_label("Area", exact=True).input_value() == "bien-hoa-cu"
    assert page.get_by_role("heading", name="Live feed").is_visible()
    assert page.locator("#fig-aqi-band").inner_text() == "Bad"
    page.locator(".user-menu summary").click()
    assert page.get_by_role("button", name="Log out").is_visible()
    page.screenshot(path=str(ARTIFACTS / "operations-en.png"))
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto(f"{server.url}/")
    assert "/login" in page.url


# --- the sensors layer: one compact request, recoloured live by the stream -----------------


def _admin_headers(server: LiveServer) -> dict[str, str]:
    admin = _user(server, "admin", "Quản trị bản đồ")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        token = http.post(
            "/api/v1/auth/token", data={"username": admin, "password": TEST_PASSWORD}
        ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _far_unit(server: LiveServer) -> str:
    """A commune far from both module stations, so its marker is never clustered with them."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        taken = []
        for name in ("bh", "out"):
            entity = http.get(
                f"/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:web-{name}",
                params={"options": "keyValues"},
                headers=_admin_headers(server),
            ).json()
            lon, lat = entity["location"]["coordinates"]
            taken.append((lat, lon))
    points = centroids()
    return max(
        points,
        key=lambda code: min(math.dist(points[code], (lat, lon)) for lat, lon in taken),
    )


def test_the_map_draws_sensors_from_the_compact_layer_and_recolours_them_live(
    page: Any, server: LiveServer, stations: dict[str, Any]
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    _login(page, server, _user(server, "operator", "Phạm Thị Dung"))
    body = page.locator("body")
    assert body.get_attribute("data-sensors") == "2"
    # One request for every sensor; none through the paged NGSI-LD entity queries.
    assert sum("/api/v1/map/sensors" in url for url in requests) == 1
    assert sum("/api/v1/map/incidents" in url for url in requests) == 1
    assert not [url for url in requests if "AirQualityObserved" in url]
    bad = page.locator(".sensor-dot[title='Trạm bh'] span")
    assert bad.get_attribute("data-level") == "bad"
    assert "#ff0000" in (bad.get_attribute("style") or "")
    page.wait_for_selector("body[data-live='1']", state="attached")

    # A new station appears on the open screen without reloading it...
    headers = _admin_headers(server)
    lat, lon = centroids()[_far_unit(server)]
    entity_id = "urn:ngsi-ld:AirQualityObserved:web-live"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        created = http.post(
            "/ngsi-ld/v1/entities",
            json={
                "id": entity_id,
                "type": "AirQualityObserved",
                "name": {"type": "Property", "value": "Trạm trực tiếp"},
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [lon, lat]},
                },
                "dateObserved": {"type": "Property", "value": "2026-11-20T02:58:00Z"},
                "airQualityIndex": {"type": "Property", "value": 35},
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        live = page.locator(".sensor-dot[title='Trạm trực tiếp'] span")
        live.wait_for(state="attached", timeout=5000)
        assert live.get_attribute("data-level") == "good"
        page.wait_for_function("document.body.dataset.sensors === '3'", timeout=5000)
        assert page.locator("#fig-sensors").inner_text() == "3"

        # ...and an observation crossing a band recolours its marker and the worst-AQI tile.
        patched = http.patch(
            f"/ngsi-ld/v1/entities/{entity_id}/attrs",
            json={"airQualityIndex": {"type": "Property", "value": 231}},
            headers=headers,
        )
        assert patched.status_code == 204, patched.text
        page.wait_for_selector(
            ".sensor-dot[title='Trạm trực tiếp'] span[data-level='veryBad']",
            state="attached",
            timeout=5000,
        )
        page.wait_for_function(
            "document.getElementById('fig-aqi').textContent === '231'", timeout=5000
        )
        assert page.locator("#fig-aqi-band").inner_text() == "Rất xấu"
        page.screenshot(path=str(ARTIFACTS / "operations-live-sensor.png"))

        # The popup is built on demand, with the value and a link to the entity page.
        page.locator(".sensor-dot[title='Trạm trực tiếp']").click()
        popup = page.locator(".leaflet-popup-content")
        popup.wait_for()
        assert "AQI: 231" in popup.inner_text()
        assert popup.get_by_role("link", name="Xem chi tiết").get_attribute("href") == (
            "/entities/urn%3Angsi-ld%3AAirQualityObserved%3Aweb-live"
        )
        # Put it back as it was for the other tests of the module.
        deleted = http.delete(f"/ngsi-ld/v1/entities/{entity_id}", headers=headers)
        assert deleted.status_code == 204, deleted.text
    page.wait_for_function("document.body.dataset.sensors === '2'", timeout=5000)


# --- the first load: requests from the page's head, sensors clustered by Supercluster -------


def test_the_first_load_takes_every_layer_from_the_requests_sent_by_the_head(
    page: Any, server: LiveServer, stations: dict[str, Any]
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    _login(page, server, _user(server, "operator", "Võ Thị Hạnh"))
    page.wait_for_load_state("networkidle")
    early = page.evaluate("JSON.parse(document.querySelector('#ops-early').textContent)")
    assert "/api/v1/map/sensors" in early
    assert "/api/v1/map/incidents" in early
    # Each early request was sent once and its response taken by the scripts (none left over,
    # none asked again).
    for url in early:
        assert requests.count(f"{server.url}{url}") == 1, (url, requests)
    assert page.evaluate("window.cityopsEarly.size") == 0
    # The phases are marked, in order (bench/bench_web.py --trace reads them).
    marks = page.evaluate(
        "Object.fromEntries(performance.getEntriesByType('mark')"
        ".filter(m => m.name.startsWith('ops:')).map(m => [m.name, m.startTime]))"
    )
    assert marks["ops:boundaries"] <= marks["ops:render"] <= marks["ops:ready"]
    assert marks["ops:sensors"] <= marks["ops:render"]


def test_nearby_sensors_are_clustered_and_a_cluster_zooms_in_when_chosen(
    page: Any, server: LiveServer, stations: dict[str, Any]
) -> None:
    headers = _admin_headers(server)
    lat, lon = centroids()[_far_unit(server)]
    # Twelve stations about 110 m apart: one cluster at the province's zoom.
    group = [
        {
            "id": f"urn:ngsi-ld:AirQualityObserved:web-group-{n}",
            "type": "AirQualityObserved",
            "name": {"type": "Property", "value": f"Trạm cụm {n}"},
            "location": {
                "type": "GeoProperty",
                "value": {
                    "type": "Point",
                    "coordinates": [lon + (n % 4) * 0.001, lat + (n // 4) * 0.001],
                },
            },
            "airQualityIndex": {"type": "Property", "value": 60 + n},
        }
        for n in range(12)
    ]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        upserted = http.post("/ngsi-ld/v1/entityOperations/upsert", json=group, headers=headers)
        assert upserted.status_code in (201, 204), upserted.text
        try:
            _login(page, server, _user(server, "operator", "Đặng Văn Khoa"))
            body = page.locator("body")
            assert body.get_attribute("data-sensors") == "14"
            assert page.locator("#fig-sensors").inner_text() == "14"
            cluster = page.locator(".marker-cluster[title='12 cảm biến: bấm để phóng to']")
            assert cluster.count() == 1
            assert cluster.inner_text() == "12"
            # Only what the view shows is drawn: one cluster and the two module stations.
            assert page.locator(".sensor-dot[title^='Trạm cụm']").count() == 0
            assert (
                page.locator(".sensor-dot[title='Trạm bh'] span").get_attribute("data-level")
                == "bad"
            )
            page.screenshot(path=str(ARTIFACTS / "operations-sensor-cluster.png"))
            # Enter on the focused cluster zooms in, as a click does; then the stations show.
            cluster.focus()
            page.keyboard.press("Enter")
            page.wait_for_function(
                "document.querySelectorAll(\".marker-cluster[title*='12 cảm biến']\").length === 0"
            )
            for _ in range(6):
                if page.locator(".sensor-dot[title='Trạm cụm 0']").count():
                    break
                page.locator(".marker-cluster").first.click()
                page.wait_for_timeout(400)
            first = page.locator(".sensor-dot[title='Trạm cụm 0'] span")
            first.wait_for(state="attached", timeout=5000)
            assert first.get_attribute("data-level") == "moderate"
            page.screenshot(path=str(ARTIFACTS / "operations-sensor-cluster-zoomed.png"))
        finally:
            for station in group:
                deleted = http.delete(f"/ngsi-ld/v1/entities/{station['id']}", headers=headers)
                assert deleted.status_code == 204, deleted.text
    page.wait_for_function("document.body.dataset.sensors === '2'", timeout=5000)


def test_citizen_reports_are_a_layer_shown_on_demand_and_filtered_by_area(
    page: Any, server: LiveServer, stations: dict[str, Any]
) -> None:
    headers = _admin_headers(server)
    places = {"bien_hoa": (10.954, 106.859), "long_khanh": (10.94, 107.24)}
    codes: dict[str, str] = {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        key = http.post(
            "/api/v1/api-keys",
            json={"name": "zalo-mini-app", "permissions": ["citizen:submit"]},
            headers=headers,
        ).json()["key"]
        for name, (lat, lon) in places.items():
            sent = http.post(
                "/open311/v2/requests.json",
                data={
                    "api_key": key,
                    "service_code": "MT-01",
                    "lat": str(lat),
                    "long": str(lon),
                    "description": f"Rác tồn đọng nhiều ngày ({name})",
                },
            )
            assert sent.status_code == 201, sent.text
            codes[name] = sent.json()[0]["service_request_id"]
    _login(page, server, _user(server, "operator", "Đặng Văn Giang"))
    body = page.locator("body")
    # Off at first: the first load does not fetch them.
    assert body.get_attribute("data-reports") is None
    page.get_by_label("Phản ánh của người dân (đang mở)").check()
    page.wait_for_function("Number(document.body.dataset.reports) >= 2")
    titles = [
        page.locator(".citizen-report").nth(i).get_attribute("title") or ""
        for i in range(page.locator(".citizen-report").count())
    ]
    assert any(t.startswith(codes["bien_hoa"]) for t in titles), titles
    assert any(t.startswith(codes["long_khanh"]) for t in titles), titles
    page.get_by_label("Khu vực", exact=True).select_option("bien-hoa-cu")
    page.wait_for_function(
        f"document.body.dataset.units === '{stations['bien_hoa_units']}'"
        " && !document.querySelector(`.citizen-report[title^='" + codes["long_khanh"] + "']`)"
    )
    marker = page.locator(f".citizen-report[title^='{codes['bien_hoa']}']")
    marker.click()
    link = page.get_by_role("link", name="Xem phản ánh")
    assert link.get_attribute("href") == f"/public/reports/{codes['bien_hoa']}"
    assert "Rác tồn đọng" in page.locator(".leaflet-popup-content").inner_text()
    page.screenshot(path=str(ARTIFACTS / "operations-citizen-reports.png"))
