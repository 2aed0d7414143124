"""The units API as a client sees it: public reads, guarded writes, problem+json errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL

API = "/api/v1"
PROBLEM = "application/problem+json"
# The `login_as` fixture: role and scope in, bearer headers out.
UserFactory = Callable[..., dict[str, str]]


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


# --- reading units ---------------------------------------------------------------------------


def test_current_units_are_the_province_and_its_95_communes(client: TestClient) -> None:
    body = client.get(f"{API}/units", params={"limit": 500}).json()
    assert body["total"] == 96
    levels = [u["level"] for u in body["items"]]
    assert levels.count("commune") == 95
    assert body["items"][0]["code"] == "75"
    assert body["items"][0]["name"] == "Thành phố Đồng Nai"
    assert client.get(f"{API}/units", params={"type": "phuong"}).json()["total"] == 23
    assert client.get(f"{API}/units", params={"type": "xa", "limit": 1}).json()["total"] == 72


def test_history_is_reachable_by_date(client: TestClient) -> None:
    before = client.get(f"{API}/units", params={"valid_at": "2025-06-30", "limit": 500}).json()
    assert before["total"] == 24  # 22 districts, provinces 70 and 75
    assert {u["code"] for u in before["items"]} >= {"70", "75", "731", "689"}
    everything = client.get(f"{API}/units", params={"valid_at": "all", "level": "district"}).json()
    assert everything["total"] == 22
    assert all(u["valid_to"] == "2025-06-30" for u in everything["items"])


def test_search_finds_names_with_or_without_diacritics(client: TestClient) -> None:
    found = client.get(f"{API}/units", params={"q": "long khanh"}).json()
    assert found["items"][0]["name"] == "Phường Long Khánh"
    names = [
        u["name"] for u in client.get(f"{API}/units", params={"q": "bien hoa"}).json()["items"]
    ]
    assert "Phường Biên Hòa" in names
    names = [
        u["name"] for u in client.get(f"{API}/units", params={"q": "Trấn Biên"}).json()["items"]
    ]
    assert names == ["Phường Trấn Biên"]
    areas = client.get(f"{API}/areas", params={"q": "long khanh"}).json()
    assert [a["code"] for a in areas["items"]] == ["long-khanh-cu"]
    areas = client.get(f"{API}/areas", params={"q": "former city"}).json()
    assert areas["total"] == 2


def test_units_filtered_by_area_and_parent_and_paged(client: TestClient) -> None:
    body = client.get(f"{API}/units", params={"area": "bien-hoa-cu", "limit": 4}).json()
    assert body["total"] == 10
    assert len(body["items"]) == 4
    second = client.get(f"{API}/units", params={"area": "bien-hoa-cu", "limit": 4, "offset": 4})
    assert {u["code"] for u in body["items"]}.isdisjoint(
        {u["code"] for u in second.json()["items"]}
    )
    beyond = client.get(f"{API}/units", params={"area": "bien-hoa-cu", "offset": 50}).json()
    assert (beyond["items"], beyond["total"]) == ([], 10)
    by_parent = client.get(f"{API}/units", params={"parent": "70", "valid_at": "all"}).json()
    assert by_parent["total"] == 11
    _problem(client.get(f"{API}/units", params={"area": "nowhere"}), 404)


def test_unit_detail_shows_lineage_both_ways_and_areas(client: TestClient) -> None:
    ward = client.get(f"{API}/units/26041").json()
    assert ward["name"] == "Phường Trấn Biên"
    assert [u["code"] for u in ward["formed_from"]] == ["731"]
    assert [a["code"] for a in ward["areas"]] == ["bien-hoa-cu"]
    assert ward["boundary_source"] == "demo"
    assert len(ward["bbox"]) == 4
    legacy = client.get(f"{API}/units/731").json()
    assert len(legacy["succeeded_by"]) == 10
    assert legacy["formed_from"] == []


def test_geometry_is_geojson_flagged_as_demo(client: TestClient) -> None:
    feature = client.get(f"{API}/units/26041/geometry").json()
    assert feature["type"] == "Feature"
    assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert feature["properties"]["boundary_source"] == "demo"
    assert feature["properties"]["legal"] is False
    assert "pháp lý" in feature["properties"]["note"]
    english = client.get(f"{API}/units/26041/geometry", headers={"Accept-Language": "en"}).json()
    assert "not a legal boundary" in english["properties"]["note"]
    collection = client.get(f"{API}/units/geometry").json()
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == 95
    pilot = client.get(f"{API}/units/geometry", params={"area": "long-khanh-cu"}).json()
    assert 1 <= len(pilot["features"]) < 95


def test_locate_answers_the_ward_and_404_outside(client: TestClient) -> None:
    unit = client.get(f"{API}/units/locate", params={"lat": 10.957, "lon": 106.843}).json()
    legacy = client.get(f"{API}/units/731").json()
    assert unit["code"] in {u["code"] for u in legacy["succeeded_by"]}
    assert unit["unit_type"] == "phuong"
    body = _problem(client.get(f"{API}/units/locate", params={"lat": 21.0, "lon": 105.8}), 404)
    assert "21.0" in body["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"lat": 91, "lon": 106},
        {"lat": 10, "lon": -181},
        {"lat": "abc", "lon": 106},
        {"lat": "nan", "lon": 106},
        {"lat": 10},
    ],
)
def test_locate_refuses_impossible_coordinates(client: TestClient, params: dict[str, Any]) -> None:
    body = _problem(client.get(f"{API}/units/locate", params=params), 422)
    assert body["errors"]


def test_unknown_unit_and_bad_date_are_problems(client: TestClient) -> None:
    body = _problem(client.get(f"{API}/units/99999"), 404)
    assert "99999" in body["detail"]
    english = client.get(f"{API}/units/99999", headers={"Accept-Language": "en"}).json()
    assert english["detail"] == "There is no administrative unit with code 99999."
    body = _problem(client.get(f"{API}/units", params={"valid_at": "yesterday"}), 422)
    assert body["errors"][0]["field"] == "valid_at"
    _problem(client.get(f"{API}/units", params={"limit": 0}), 422)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=st.text(max_size=250), valid_at=st.one_of(st.none(), st.text(max_size=40)))
def test_any_search_input_is_answered_without_a_server_error(
    client: TestClient, q: str, valid_at: str | None
) -> None:
    params = {"q": q} if valid_at is None else {"q": q, "valid_at": valid_at}
    response = client.get(f"{API}/units", params=params)
    assert response.status_code in (200, 422)
    areas = client.get(f"{API}/areas", params={"q": q})
    assert areas.status_code in (200, 422)
    departments = client.get(f"{API}/departments", params={"q": q, "sector": q[:32]})
    assert departments.status_code in (200, 422)
    one = client.get(f"{API}/units/{quote(q[:64], safe='')}")
    assert one.status_code in (200, 404, 422)


def test_control_characters_are_refused_not_stored(
    client: TestClient, login_as: UserFactory
) -> None:
    admin = login_as("admin")
    _problem(client.get(f"{API}/units", params={"q": "bien\x00hoa"}), 422)
    _problem(client.get(f"{API}/units/26041%00"), 422)
    body = {"code": "nul-area", "name": "Khu\x00vực", "description": "dòng 1\ndòng 2"}
    errors = _problem(client.post(f"{API}/areas", json=body, headers=admin), 422)["errors"]
    assert [e["field"] for e in errors] == ["name"]
    body["name"] = "Khu vực"
    assert client.post(f"{API}/areas", json=body, headers=admin).status_code == 201
    change = {"contact": {"address": "\x00"}}
    _problem(client.patch(f"{API}/units/26041", json=change, headers=admin), 422)


# --- editing units ---------------------------------------------------------------------------


def test_unit_officer_edits_own_ward_only(client: TestClient, login_as: UserFactory) -> None:
    headers = login_as("unit_officer", unit_code="26041")
    change = {"contact": {"phone": "0251 3822 111", "email": "tranbien@dongnai.gov.vn"}}
    response = client.patch(f"{API}/units/26041", json=change, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["contact"] == change["contact"]
    assert client.get(f"{API}/units/26041").json()["contact"] == change["contact"]

    before = client.get(f"{API}/units/26068").json()
    body = _problem(client.patch(f"{API}/units/26068", json=change, headers=headers), 403)
    assert body["type"].endswith("forbidden")
    assert client.get(f"{API}/units/26068").json() == before


def test_anonymous_writes_are_refused_with_401(client: TestClient) -> None:
    _problem(client.patch(f"{API}/units/26041", json={"population": 1}), 401)
    _problem(client.post(f"{API}/areas", json={"code": "x", "name": "X"}), 401)
    _problem(client.post(f"{API}/departments", json={"code": "SX", "name": "X"}), 401)
    _problem(client.delete(f"{API}/departments/SYT"), 401)
    assert client.get(f"{API}/units/26041").json()["population"] is None


def test_patch_validates_fields(client: TestClient, login_as: UserFactory) -> None:
    headers = login_as("admin")
    body = _problem(
        client.patch(
            f"{API}/units/26041",
            json={"population": -5, "contact": {"email": "not-an-email"}, "code": "1"},
            headers=headers,
        ),
        422,
    )
    assert {e["field"] for e in body["errors"]} >= {"population", "contact.email", "code"}
    _problem(client.patch(f"{API}/units/00000", json={"population": 5}, headers=headers), 404)


# --- areas -----------------------------------------------------------------------------------


def test_admin_manages_areas(client: TestClient, login_as: UserFactory) -> None:
    admin = login_as("admin")
    new = {
        "code": "san-bay-long-thanh",
        "name": "Vùng sân bay Long Thành",
        "name_en": "Long Thành airport zone",
        "kind": "project",
        "unit_codes": ["26368", "26389", "26413"],
    }
    created = client.post(f"{API}/areas", json=new, headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith(f"{API}/areas/san-bay-long-thanh")
    assert [u["code"] for u in created.json()["units"]] == ["26368", "26389", "26413"]
    _problem(client.post(f"{API}/areas", json=new, headers=admin), 409)
    assert client.get(f"{API}/units", params={"area": "san-bay-long-thanh"}).json()["total"] == 3
    body = _problem(
        client.patch(
            f"{API}/areas/san-bay-long-thanh", json={"unit_codes": ["26368", "1"]}, headers=admin
        ),
        422,
    )
    assert body["errors"][0]["field"] == "unit_codes[1]"
    assert body["errors"][0]["message"] == "Không có đơn vị hành chính mã 1."
    patched = client.patch(
        f"{API}/areas/san-bay-long-thanh", json={"unit_codes": ["26368"]}, headers=admin
    )
    assert patched.json()["unit_codes"] == ["26368"]
    assert client.delete(f"{API}/areas/san-bay-long-thanh", headers=admin).status_code == 204
    _problem(client.get(f"{API}/areas/san-bay-long-thanh"), 404)


def test_required_names_cannot_be_cleared(client: TestClient, login_as: UserFactory) -> None:
    admin = login_as("admin")
    body = _problem(
        client.patch(f"{API}/areas/bien-hoa-cu", json={"name": None}, headers=admin), 422
    )
    assert body["errors"][0]["field"] == "name"
    body = _problem(client.patch(f"{API}/departments/SYT", json={"name": None}, headers=admin), 422)
    assert body["errors"][0] == {
        "field": "name",
        "message": "Không được để trống trường name.",
        "type": "units.field.required",
    }
    assert client.get(f"{API}/areas/bien-hoa-cu").json()["name"] == "Biên Hòa (thành phố cũ)"


def test_area_in_use_cannot_be_deleted(
    client: TestClient, runtime: Runtime, login_as: UserFactory
) -> None:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        auth_service.create_user(
            session=session,
            user_in=UserCreate(
                username="bienhoa-operator",
                password="Dong-Nai-2026!",
                full_name="Điều hành viên Biên Hòa",
                role="operator",
                area_code="bien-hoa-cu",
            ),
            clock=runtime.clock,
            settings=runtime.settings,
        )
    admin = login_as("admin")
    body = _problem(client.delete(f"{API}/areas/bien-hoa-cu", headers=admin), 409)
    assert "bien-hoa-cu" in body["detail"]
    assert client.get(f"{API}/areas/bien-hoa-cu").status_code == 200


def test_unit_officer_cannot_manage_areas(client: TestClient, login_as: UserFactory) -> None:
    officer = login_as("unit_officer", unit_code="26041")
    _problem(client.delete(f"{API}/areas/bien-hoa-cu", headers=officer), 403)
    assert client.get(f"{API}/areas/bien-hoa-cu").status_code == 200


def test_area_detail_lists_member_units(client: TestClient) -> None:
    area = client.get(f"{API}/areas/bien-hoa-cu").json()
    assert area["name"] == "Biên Hòa (thành phố cũ)"
    assert area["name_en"] == "Biên Hòa (former city)"
    assert area["kind"] == "pilot"
    assert len(area["units"]) == 10
    assert all(u["unit_type"] == "phuong" for u in area["units"])


# --- departments -----------------------------------------------------------------------------


def test_departments_are_public(client: TestClient) -> None:
    body = client.get(f"{API}/departments").json()
    assert body["total"] == 11
    by_code = {d["code"]: d for d in body["items"]}
    assert by_code["SNNMT"]["sectors"] == ["agriculture", "environment"]
    owner = client.get(f"{API}/departments", params={"sector": "transport"}).json()
    assert [d["code"] for d in owner["items"]] == ["SXD"]
    assert (
        client.get(f"{API}/departments", params={"q": "y te"}).json()["items"][0]["code"] == "SYT"
    )
    _problem(client.get(f"{API}/departments/NOPE"), 404)


def test_admin_creates_and_deletes_departments(client: TestClient, login_as: UserFactory) -> None:
    admin = login_as("admin")
    new = {
        "code": "BQLKCN",
        "name": "Ban Quản lý các khu công nghiệp",
        "sectors": ["industrial_parks"],
    }
    created = client.post(f"{API}/departments", json=new, headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith(f"{API}/departments/BQLKCN")
    _problem(client.post(f"{API}/departments", json=new, headers=admin), 409)
    taken = {"code": "SGTVT", "name": "Sở Giao thông vận tải", "sectors": ["transport"]}
    body = _problem(client.post(f"{API}/departments", json=taken, headers=admin), 409)
    assert "SXD" in body["detail"]
    body = _problem(
        client.post(f"{API}/departments", json={"code": "bad code", "name": ""}, headers=admin), 422
    )
    assert {e["field"] for e in body["errors"]} == {"code", "name"}
    assert client.delete(f"{API}/departments/BQLKCN", headers=admin).status_code == 204
    _problem(client.get(f"{API}/departments/BQLKCN"), 404)


def test_department_in_use_cannot_be_deleted(client: TestClient, login_as: UserFactory) -> None:
    login_as("department_officer", department_code="SYT")
    admin = login_as("admin")
    _problem(client.delete(f"{API}/departments/SYT", headers=admin), 409)
    assert client.get(f"{API}/departments/SYT").status_code == 200


def test_department_officer_edits_contact_of_own_department_only(
    client: TestClient, login_as: UserFactory
) -> None:
    officer = login_as("department_officer", department_code="SYT")
    contact = {"contact": {"phone": "0251 3842 000", "address": "2 Phan Đình Phùng, Trấn Biên"}}
    response = client.patch(f"{API}/departments/SYT", json=contact, headers=officer)
    assert response.status_code == 200, response.text
    assert response.json()["contact"]["phone"] == "0251 3842 000"
    assert response.json()["contact"]["website"] == "https://syt.dongnai.gov.vn"
    _problem(client.patch(f"{API}/departments/SGDDT", json=contact, headers=officer), 403)
    _problem(client.patch(f"{API}/departments/SYT", json={"name": "Sở Khác"}, headers=officer), 403)
    assert client.get(f"{API}/departments/SYT").json()["name"] == "Sở Y tế"
    admin = login_as("admin")
    renamed = client.patch(
        f"{API}/departments/SYT", json={"name_en": "Health Department"}, headers=admin
    )
    assert renamed.json()["name_en"] == "Health Department"
