"""The unit directory page: what a visitor sees without logging in."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from ..conftest import TEST_PASSWORD


def test_an_anonymous_visitor_is_sent_to_the_login_page_and_back(client: TestClient) -> None:
    response = client.get("/?area=bien-hoa-cu", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F%3Farea%3Dbien-hoa-cu"
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert 'data-next="/?area=bien-hoa-cu"' in page.text
    assert "Tên đăng nhập" in page.text
    assert "Mật khẩu" in page.text


def test_the_login_page_never_redirects_off_site(client: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        page = client.get("/login", params={"next": target})
        assert 'data-next="/"' in page.text, target


def test_a_web_session_opens_the_operations_screen(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("operator")
    login = client.post(
        "/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD}
    )
    assert login.status_code == 200, login.text
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 200
    assert 'id="map"' in page.text
    assert "Đăng xuất" in page.text
    assert "Cán bộ điều hành" in page.text
    # Logged in, the login page forwards to where the visitor wanted to go.
    again = client.get("/login?next=/units", follow_redirects=False)
    assert again.headers["location"] == "/units"


def test_pages_are_compressed_and_vendor_files_cached(client: TestClient) -> None:
    page = client.get("/units", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"
    vendor = client.get("/static/vendor/leaflet/leaflet.js")
    if vendor.status_code == 404:
        pytest.skip("scripts/web-assets.sh has not been run")
    assert "max-age=2592000" in vendor.headers["cache-control"]


def test_directory_lists_the_95_communes_and_wards_in_vietnamese(client: TestClient) -> None:
    response = client.get("/units")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="vi">' in html
    assert "Thành phố Đồng Nai" in html
    assert "95 đơn vị" in html
    assert "Phường Trấn Biên" in html
    assert "Xã Nam Cát Tiên" in html
    assert "Thành phố Biên Hòa" in html  # a legacy unit, in the "formed from" column
    assert "Biên Hòa (thành phố cũ)" in html
    assert "Sở Y tế" in html
    assert "không phải ranh giới pháp lý" in html


def test_search_without_diacritics_narrows_the_table(client: TestClient) -> None:
    html = client.get("/units", params={"q": "long khanh"}).text
    assert "<td>Phường Long Khánh</td>" in html
    assert "<td>Phường Trấn Biên</td>" not in html


def test_search_with_no_match_says_so(client: TestClient) -> None:
    html = client.get("/units", params={"q": "zzzz"}).text
    assert "Không có xã, phường nào khớp" in html


def test_search_text_is_escaped(client: TestClient) -> None:
    html = client.get("/units", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_language_switch_remembers_english(client: TestClient) -> None:
    response = client.get("/lang/en", params={"next": "/units"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/units"
    html = client.get("/units").text  # the client keeps the cookie
    assert '<html lang="en">' in html
    assert "Communes and wards" in html
    assert "Department of Health" in html or "Health" in html


def test_language_switch_never_redirects_off_site(client: TestClient) -> None:
    response = client.get("/lang/vi", params={"next": "//evil.example/"}, follow_redirects=False)
    assert response.headers["location"] == "/"


def test_stylesheet_is_served_locally(client: TestClient) -> None:
    response = client.get("/static/cityops.css")
    assert response.status_code == 200
    assert "text/css" in response.headers["content-type"]


def test_pages_stay_vietnamese_for_a_browser_with_an_english_locale(client: TestClient) -> None:
    html = client.get("/units", headers={"Accept-Language": "en-US,en;q=0.9"}).text
    assert '<html lang="vi">' in html
    assert "Xã, phường" in html


def test_the_operations_screen_sends_its_layer_requests_from_its_head(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("operator")
    login = client.post(
        "/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD}
    )
    assert login.status_code == 200, login.text
    page = client.get("/").text
    found = re.search(r'<script type="application/json" id="ops-early">(.*?)</script>', page)
    assert found, "no early requests in the page"
    # In the head, before the stylesheets (an inline script waits for those above it).
    assert found.start() < page.index('rel="stylesheet"')
    early = json.loads(found.group(1))
    assert early[:2] == ["/api/v1/units/geometry?level=commune", "/api/v1/map/sensors"]
    assert "/api/v1/map/incidents" in early
    assert "/api/v1/alerts?status=open&limit=30" in early
    # Every address is one the user may read, as the scripts would ask for it.
    for url in early:
        response = client.get(url, headers={"Accept": "application/json"})
        assert response.status_code == 200, (url, response.text)
