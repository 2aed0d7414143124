"""The incident desk pages, as a logged-in browser gets them (web session cookie)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from ..conftest import TEST_PASSWORD

INCIDENTS = "/api/v1/incidents"
WARD = "26041"  # Phường Trấn Biên
FAR_WARD = "26080"  # Phường Long Khánh


def _session(client: TestClient, username: str) -> None:
    response = client.post(
        "/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text


def _incident(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"title": "Khói bụi ở Trấn Biên", "category_code": "air_pollution", "unit_code": WARD}
    response = client.post(INCIDENTS, json={**body, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_an_anonymous_visitor_of_the_desk_is_sent_to_the_login_page(client: TestClient) -> None:
    response = client.get("/incidents?status=new", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fincidents%3Fstatus%3Dnew"
    detail = client.get("/incidents/SC-2026-000001", follow_redirects=False)
    assert detail.headers["location"].startswith("/login?next=%2Fincidents%2F")


def test_the_list_filters_by_severity_unit_and_status_and_pages(
    client: TestClient,
    make_user: Callable[..., str],
    login_as: Callable[..., dict[str, str]],
) -> None:
    admin = login_as("admin")
    critical = _incident(client, admin, title="Cháy kho hóa chất", severity="critical")
    low = _incident(client, admin, title="Đèn đường hỏng", severity="low", unit_code=FAR_WARD)
    _session(client, make_user("viewer"))
    page = client.get("/incidents")
    assert page.status_code == 200
    assert "Bàn xử lý sự cố" in page.text
    assert critical["code"] in page.text
    assert low["code"] in page.text
    assert "2 sự cố" in page.text
    only = client.get("/incidents", params={"severity": "critical"})
    assert critical["code"] in only.text
    assert low["code"] not in only.text
    assert 'value="critical" checked' in only.text
    far = client.get("/incidents", params={"unit": FAR_WARD})
    assert low["code"] in far.text
    assert critical["code"] not in far.text
    closed = client.get("/incidents", params={"status": "closed"})
    assert "Không có sự cố nào khớp bộ lọc." in closed.text
    # A hand-edited filter value is dropped, never a server error.
    odd = client.get("/incidents", params={"severity": "apocalyptic", "unit": "nowhere"})
    assert odd.status_code == 200
    assert critical["code"] in odd.text
    for n in range(25):
        _incident(client, admin, title=f"Sự cố {n}")
    first = client.get("/incidents")
    assert "Trang 1/2" in first.text
    assert 'href="/incidents?page=2"' in first.text
    second = client.get("/incidents?page=2")
    assert "Trang 2/2" in second.text
    # Newest first: the two oldest incidents are on the second page.
    assert critical["code"] in second.text
    assert critical["code"] not in first.text


def test_a_unit_officer_sees_only_the_incidents_of_the_unit(
    client: TestClient,
    make_user: Callable[..., str],
    login_as: Callable[..., dict[str, str]],
) -> None:
    admin = login_as("admin")
    mine = _incident(client, admin, title="Ngập đường")
    other = _incident(client, admin, title="Rác tràn", unit_code=FAR_WARD)
    _session(client, make_user("unit_officer", unit_code=FAR_WARD))
    page = client.get("/incidents")
    assert other["code"] in page.text
    assert mine["code"] not in page.text
    hidden = client.get(f"/incidents/{mine['code']}")
    assert hidden.status_code == 404
    assert f"Không tìm thấy sự cố {mine['code']}" in hidden.text


def test_the_detail_shows_data_timeline_deadlines_and_only_the_allowed_actions(
    client: TestClient,
    make_user: Callable[..., str],
    login_as: Callable[..., dict[str, str]],
) -> None:
    admin = login_as("admin")
    incident = _incident(client, admin, title="Bụi mịn vượt ngưỡng", severity="high")
    comment = client.post(
        f"{INCIDENTS}/{incident['id']}/comments",
        json={"body": "Đã cử đoàn kiểm tra"},
        headers=admin,
    )
    assert comment.status_code == 201, comment.text
    officer = make_user("department_officer", department_code="SNNMT")
    _session(client, make_user("operator"))
    page = client.get(f"/incidents/{incident['code']}")
    assert page.status_code == 200
    text = page.text
    assert "Bụi mịn vượt ngưỡng" in text
    assert "Cao" in text  # severity, in Vietnamese
    assert "Tạo sự cố" in text  # the timeline
    assert "Đã cử đoàn kiểm tra" in text
    assert "Hạn tiếp nhận" in text
    assert "Hạn giải quyết" in text
    # Local time (UTC+7): created at T0 = 03:00Z is 10:00 in Đồng Nai.
    assert "20/11/2026 10:00" in text
    # An operator may assign: the form is there, with the environment officer to choose.
    assert 'id="assign-form"' in text
    assert 'id="comment-form"' in text
    assert "Test department_officer" in text
    assert officer  # created before the page was drawn
    # A viewer sees the incident but no action.
    client.cookies.clear()
    _session(client, make_user("viewer"))
    viewer = client.get(f"/incidents/{incident['code']}")
    assert viewer.status_code == 200
    assert 'id="assign-form"' not in viewer.text
    assert 'id="comment-form"' not in viewer.text
    assert "Bạn chỉ có quyền xem sự cố này." in viewer.text
    assert client.get("/incidents/SC-NOPE").status_code == 404


def test_the_desk_speaks_english(
    client: TestClient, make_user: Callable[..., str], login_as: Callable[..., dict[str, str]]
) -> None:
    incident = _incident(client, login_as("admin"), severity="critical")
    _session(client, make_user("leader"))
    client.cookies.set("cityops_lang", "en")
    page = client.get("/incidents")
    assert "Incident desk" in page.text
    assert "Critical" in page.text
    detail = client.get(f"/incidents/{incident['code']}")
    assert "Timeline" in detail.text
    assert "Resolve by" in detail.text


def test_the_operations_screen_feeds_only_the_kinds_the_user_may_read(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    _session(client, make_user("operator"))
    page = client.get("/")
    assert '"feedKinds": ["alerts", "incidents"]' in page.text
    assert 'id="feed"' in page.text
    assert "Sự cố đang mở" in page.text  # the incidents layer's name, for the layer control
