"""A citizen's report from a phone in a real Chromium: the public form on a 390×844 touch screen
with the phone's position, a photo carrying EXIF, the tracking code, the duplicate offer, then
the incident resolved by staff and the rating that feeds the 766 satisfaction tally."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.citizen import service as citizen_service
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL

from ..citizen.images import CAMERA, metadata_left, photo
from ..conftest import TEST_PASSWORD
from .browser import ARTIFACTS, browser_app, chromium, serving
from .live import LiveServer

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

# Phường Trấn Biên (Biên Hòa): where the phone is; the photo was taken in Tam Hiệp.
PHONE_AT = {"latitude": 10.938, "longitude": 106.835}
PHOTO_AT = (10.954, 106.859)
WARD = "26041"


@pytest.fixture(scope="module")
def server(
    template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One uvicorn server for the module, on a copy of the seeded database."""
    app = browser_app(template_database, tmp_path_factory, "browser-public")
    with serving(app) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (the system's; never downloaded)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def phone(browser: Any, server: LiveServer) -> Iterator[Any]:
    """A phone-sized touch screen whose position is in Biên Hòa, allowed to be read."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
        locale="vi-VN",
        geolocation=PHONE_AT,
        permissions=["geolocation"],
    )
    tab = context.new_page()
    tab.set_default_timeout(15000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.errors = errors
    yield tab
    assert not errors, errors
    context.close()


def _admin_headers(server: LiveServer) -> dict[str, str]:
    runtime = server.app.state.runtime
    username = f"admin-{uuid.uuid4().hex[:6]}"
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        auth_service.create_user(
            session=session,
            user_in=UserCreate(
                username=username, password=TEST_PASSWORD, full_name="Quản trị", role="admin"
            ),
            clock=runtime.clock,
            settings=runtime.settings,
        )
    with httpx.Client(base_url=server.url, timeout=10) as http:
        token = http.post(
            "/api/v1/auth/token", data={"username": username, "password": TEST_PASSWORD}
        ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _fill_report(page: Any, server: LiveServer, tmp_path: Path, description: str) -> None:
    page.goto(f"{server.url}/public/report")
    page.wait_for_selector("body[data-ready='1']", state="attached")
    page.wait_for_function("Number(document.body.dataset.boundaries) >= 95")
    page.get_by_label("Lĩnh vực phản ánh").select_option("MT-01")
    page.get_by_role("button", name="Dùng vị trí của tôi").tap()
    page.wait_for_function("document.getElementById('lat').value !== ''")
    page.get_by_label("Mô tả sự việc").fill(description)
    picture = tmp_path / f"{uuid.uuid4().hex[:6]}.jpg"
    picture.write_bytes(photo(gps=PHOTO_AT))
    page.locator("#photos").set_input_files(str(picture))


def test_a_citizen_reports_from_a_phone_follows_it_and_rates_it(
    phone: Any, server: LiveServer, tmp_path: Path
) -> None:
    runtime = server.app.state.runtime
    start = runtime.clock.now() - timedelta(days=1)
    _fill_report(phone, server, tmp_path, "Rác thải chất đống bên đường, bốc mùi")
    phone.get_by_label("Số điện thoại di động").fill("0912345678")
    phone.get_by_label("Tôi đồng ý", exact=False).check()
    phone.screenshot(path=str(ARTIFACTS / "public-report-form.png"), full_page=True)
    phone.get_by_role("button", name="Gửi phản ánh", exact=True).tap()
    phone.wait_for_selector("body[data-sent]", state="attached")
    code = phone.locator("#tracking-code").inner_text()
    assert code.startswith("PA-")
    # The reporter's own link (with the key that lets them rate), as the page shows it.
    own_link = phone.locator("#tracking-link").get_attribute("href")
    assert own_link is not None
    phone.screenshot(path=str(ARTIFACTS / "public-report-sent.png"))

    headers = _admin_headers(server)
    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as http:
        report = http.get(f"/api/v1/citizen/reports/{code}").json()
        assert report["unit_code"] == WARD  # the phone's position, not the photo's
        assert report["department_code"] == "SNNMT"
        assert report["reporter"]["phone"] == "+84912345678"
        incident = http.get(f"/api/v1/incidents/{report['incident_id']}").json()
        assert incident["unit_code"] == WARD
        assert incident["department_code"] == "SNNMT"
        stored = http.get(f"/api/v1/citizen/reports/{code}/photos/1")
        assert stored.status_code == 200
        assert metadata_left(stored.content) == []
        assert CAMERA.encode() not in stored.content

    # A neighbour reports the same heap: the page offers to follow the first report instead.
    _fill_report(phone, server, tmp_path, "Đống rác lớn")
    phone.get_by_role("button", name="Gửi phản ánh", exact=True).tap()
    offer = phone.locator("#duplicates")
    offer.wait_for(state="visible")
    assert code in offer.inner_text()
    phone.screenshot(path=str(ARTIFACTS / "public-report-duplicate.png"))
    offer.get_by_role("button", name="Theo dõi phản ánh này").tap()
    phone.wait_for_selector("body[data-sent]", state="attached")
    follower = phone.locator("#tracking-code").inner_text()
    assert follower != code

    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as http:
        linked = http.get(f"/api/v1/citizen/reports/{follower}").json()
        assert linked["duplicate_of"] == report["id"]
        assert linked["incident_id"] == report["incident_id"]
        incidents = f"/api/v1/incidents/{report['incident_id']}"
        for path, body in (
            ("assign", {"department_code": "SNNMT"}),
            ("transition", {"to": "in_progress"}),
            ("transition", {"to": "resolved", "note": "Đã thu gom rác"}),
        ):
            response = http.post(f"{incidents}/{path}", json=body)
            assert response.status_code == 200, response.text

    with unit_of_work(runtime.session_factory) as session:
        before = citizen_service.satisfaction(
            session=session, start=start, end=runtime.clock.now() + timedelta(days=1)
        )
    phone.goto(f"{server.url}{own_link}")
    assert phone.locator("#report-status").inner_text() == "Đã xử lý xong"
    assert "Đã tiếp nhận" in phone.locator("#history").inner_text()
    assert phone.locator(".photos img").count() == 1
    phone.get_by_label("Hài lòng", exact=True).check()
    phone.get_by_label("Ý kiến thêm (không bắt buộc)").fill("Xử lý nhanh, cảm ơn")
    phone.screenshot(path=str(ARTIFACTS / "public-tracking-resolved.png"), full_page=True)
    phone.get_by_role("button", name="Gửi đánh giá").tap()
    phone.wait_for_selector("body[data-rated='1']", state="attached")
    assert "Cảm ơn" in phone.locator("#rated").inner_text()
    with unit_of_work(runtime.session_factory) as session:
        after = citizen_service.satisfaction(
            session=session, start=start, end=runtime.clock.now() + timedelta(days=1)
        )
    assert (after.rated, after.satisfied) == (before.rated + 1, before.satisfied + 1)
    # The reporter then erases their phone number and photo from the same page.
    phone.goto(f"{server.url}{own_link}")
    phone.once("dialog", lambda dialog: dialog.accept())
    phone.get_by_role("button", name="Xoá thông tin liên hệ và ảnh của tôi").tap()
    phone.wait_for_selector("body[data-erased='1']", state="attached")
    assert phone.locator(".photos img").count() == 0
    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as http:
        erased = http.get(f"/api/v1/citizen/reports/{code}").json()
        assert erased["reporter"] is None
        assert erased["photo_urls"] == []
        assert http.get(f"/api/v1/citizen/reports/{code}/photos/1").status_code == 404
    phone.goto(f"{server.url}/public/reports?lang=en")
    phone.wait_for_function("document.body.dataset.markers !== undefined")
    assert phone.locator("body").get_attribute("data-markers") == "2"
    assert "0912345678" not in phone.content()
    phone.screenshot(path=str(ARTIFACTS / "public-map-en.png"), full_page=True)
