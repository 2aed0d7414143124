"""Sector centres, entity detail and the wall screen in a real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cityops.simulate.catalog import build_catalog
from cityops.simulate.entities import observation_entity, static_entity
from cityops.simulate.generators import observe
from cityops.web.sectors import SECTORS

from ..conftest import TEST_PASSWORD
from .browser import ARTIFACTS, browser_app, chromium, serving
from .live import LiveServer
from .test_browser import _login, _ready, _user

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

KINDS = ("air", "river_level", "water_quality", "traffic", "parking", "streetlight", "waste",
         "noise", "hospital", "school")  # fmt: skip


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def server(
    template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One uvicorn server for the module, on a copy of the seeded database."""
    app = browser_app(template_database, tmp_path_factory, "browser-sectors")
    with serving(app) as live:
        yield live


@pytest.fixture(scope="module")
def city(server: LiveServer) -> dict[str, Any]:
    """One simulated asset of each kind with its current values, and a month of AQI history
    (hourly, every five minutes over the last two hours) for the first air station."""
    admin = _user(server, "admin", "Quản trị")
    now = datetime.now(UTC).replace(microsecond=0)
    assets = {}
    for asset in build_catalog():
        assets.setdefault(asset.kind, asset)
    entities = []
    for kind in KINDS:
        asset = assets[kind]
        entity = static_entity(asset)
        # Some kinds report only at certain times (schools on school days, 06:30–17:00): take
        # each asset's latest observation, up to a summer holiday back, so the page never depends on
        # the hour or the day the tests run.
        at = now
        values = observe(asset, at, seed=7)
        while not values and at > now - timedelta(days=100):
            at -= timedelta(hours=1)
            values = observe(asset, at, seed=7)
        assert values, f"{kind}: no observation in 100 days"
        entity.update(observation_entity(asset, values, at))
        entities.append(entity)
    air = assets["air"]
    history = [now - timedelta(hours=h) for h in range(1, 30 * 24)]
    history += [now - timedelta(minutes=m) for m in range(5, 120, 5) if m % 60]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        token = http.post(
            "/api/v1/auth/token", data={"username": admin, "password": TEST_PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        upsert = http.post("/ngsi-ld/v1/entityOperations/upsert", json=entities, headers=headers)
        assert upsert.status_code in (201, 204), upsert.text
        instances = [
            {"type": "Property", "value": 60 + (i % 48), "observedAt": _iso(at)}
            for i, at in enumerate(sorted(history))
        ]
        added = http.post(
            f"/ngsi-ld/v1/temporal/entities/{air.entity_id}/attrs",
            json={"airQualityIndex": instances},
            headers=headers,
        )
        assert added.status_code == 204, added.text
    return {"air": air.entity_id, "hospital": assets["hospital"].name, "now": now}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (the system's; never downloaded)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; no console error is allowed."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="vi-VN")
    tab = context.new_page()
    tab.set_default_timeout(15000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.errors = errors
    yield tab
    assert not errors, errors
    context.close()


def _points(page: Any) -> int:
    page.wait_for_selector("body[data-chart='drawn']", state="attached")
    return int(page.locator("#chart").get_attribute("data-points") or "0")


def _pick_range(page: Any, name: str, code: str) -> int:
    page.get_by_role("button", name=name, exact=True).click()
    page.wait_for_function(
        f"document.getElementById('chart').dataset.range === '{code}'"
        " && document.body.dataset.chart === 'drawn'"
    )
    assert page.get_by_role("button", name=name, exact=True).get_attribute("aria-pressed") == "true"
    return int(page.locator("#chart").get_attribute("data-points") or "0")


def test_entity_detail_draws_the_history_and_switches_range(
    page: Any, server: LiveServer, city: dict[str, Any]
) -> None:
    _login(page, server, _user(server, "operator", "Lê Văn Cường"), f"/entities/{city['air']}")
    assert page.locator("h2", has_text="Giá trị hiện tại").count() == 1
    assert page.locator("#current tr[data-attr='airQualityIndex']").count() == 1
    # A day of raw observations: 23 hourly ones and 22 five-minutely ones.
    day = _points(page)
    assert 40 <= day <= 50, day
    assert page.locator("#chart canvas").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "entity-day.png"))
    hour = _pick_range(page, "1 giờ", "hour")
    assert 10 <= hour <= 13, hour
    # A week and a month are aggregated on the server: hourly and six-hourly buckets.
    week = _pick_range(page, "1 tuần", "week")
    assert 160 <= week <= 170, week
    month = _pick_range(page, "1 tháng", "month")
    assert 115 <= month <= 121, month
    assert page.locator(".echarts-legend, #chart").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "entity-month.png"))
    # Another measure of the same station.
    page.get_by_label("Chỉ số", exact=True).select_option("pm25")
    page.wait_for_function("document.getElementById('chart').dataset.attribute === 'pm25'")
    assert _points(page) == 0 or page.locator("#chart-status").inner_text() == ""


@pytest.mark.parametrize("sector", list(SECTORS))
def test_each_sector_centre_loads_with_data(
    page: Any, server: LiveServer, city: dict[str, Any], sector: str
) -> None:
    _login(page, server, _user(server, "leader", "Phạm Thị Dung"), f"/sectors/{sector}")
    assert page.locator("nav.sector-tabs a[aria-current='page']").count() == 1
    views = page.locator("section.sector-view")
    for i in range(views.count()):
        view = views.nth(i)
        assert view.locator("tbody tr").count() >= 1, view.get_attribute("data-view")
        assert view.locator(".chart canvas").count() == 1, view.get_attribute("data-view")
    if sector == "egov":
        page.wait_for_selector("#egov-table:not([hidden])")
        assert page.locator("#egov-table tbody tr").count() >= 1
        assert page.locator("#egov-chart canvas").count() == 1
    # Every centre shows its programme items, so none is empty.
    assert page.locator("#programme tbody tr").count() >= 1
    page.screenshot(path=str(ARTIFACTS / f"sector-{sector}.png"), full_page=True)


def test_the_area_selector_filters_a_sector_centre(
    page: Any, server: LiveServer, city: dict[str, Any]
) -> None:
    _login(page, server, _user(server, "viewer", "Hồ Văn Em"), "/sectors/health")
    hospital = page.locator("section[data-view='hospitals'] tbody tr")
    assert hospital.count() == 1
    units = page.get_by_label("Xã, phường", exact=True)
    everywhere = units.locator("option").count()
    page.get_by_label("Khu vực", exact=True).select_option("long-khanh-cu")
    narrowed = units.locator("option").count()
    assert 1 < narrowed < everywhere
    page.get_by_role("button", name="Áp dụng").click()
    _ready(page)
    assert "area=long-khanh-cu" in page.url
    # The hospital stands in Biên Hòa: none of Long Khánh's.
    assert page.locator("section[data-view='hospitals'] tbody tr").count() == 0
    assert page.get_by_label("Khu vực", exact=True).input_value() == "long-khanh-cu"


def test_keyboard_focus_is_visible(page: Any, server: LiveServer, city: dict[str, Any]) -> None:
    _login(page, server, _user(server, "viewer", "Vũ Thị Giang"), "/sectors/transport")
    link = page.locator("nav.sector-tabs a", has_text="Y tế")
    link.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [document.activeElement.textContent, s.outlineStyle, s.outlineWidth]; }"
    )
    assert outline[0] == "Y tế"
    assert outline[1] != "none"
    assert outline[2] != "0px"
    page.screenshot(path=str(ARTIFACTS / "sector-focus.png"))


def test_wall_mode_rotates_through_the_sectors(
    page: Any, server: LiveServer, city: dict[str, Any]
) -> None:
    _login(page, server, _user(server, "operator", "Đặng Văn Hải"), "/wall?interval=5")
    body = page.locator("body")
    assert body.get_attribute("data-sector") == "health"
    assert page.locator("#wall-sector").inner_text() == "Y tế"
    frame = page.frame_locator("#wall-frame")
    frame.locator("h1", has_text="Y tế").wait_for()
    # The embedded centre hides its navigation: the wall shows data only, in large type.
    assert frame.locator("header.topbar").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "wall-health.png"))
    page.wait_for_function("document.body.dataset.sector === 'education'", timeout=12000)
    frame.locator("h1", has_text="Giáo dục").wait_for()
    # Right arrow moves on at once; the pause button stops the rotation.
    page.locator("#wall-pause").focus()
    page.keyboard.press("ArrowRight")
    assert body.get_attribute("data-sector") == "transport"
    page.locator("#wall-pause").click()
    assert page.locator("#wall-pause").get_attribute("aria-pressed") == "true"
    page.wait_for_timeout(6000)
    assert body.get_attribute("data-sector") == "transport"
    page.screenshot(path=str(ARTIFACTS / "wall-paused.png"))


def test_operations_map_shows_facilities_and_links_markers_to_the_entity(
    page: Any, server: LiveServer, city: dict[str, Any]
) -> None:
    _login(page, server, _user(server, "operator", "Ngô Thị Khánh"))
    page.wait_for_selector("body[data-layers='1']", state="attached")
    assert page.locator("body").get_attribute("data-facilities") == "2"
    assert page.locator(".facility-hospital").count() == 1
    # The hospital and a school stand close together: open the popup from the keyboard.
    page.locator(".facility-hospital").focus()
    page.keyboard.press("Enter")
    link = page.locator(".leaflet-popup a[href^='/entities/']")
    link.wait_for()
    page.get_by_label("Cảnh báo đang mở theo xã, phường").check()
    page.screenshot(path=str(ARTIFACTS / "operations-facilities.png"))
    link.click()
    page.wait_for_url("**/entities/**")
    assert city["hospital"] in page.locator("h1").inner_text()
