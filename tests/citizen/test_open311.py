"""Open311 GeoReport v2 as a standard client sees it: discovery, services, definitions, POST and
GET requests, tokens, in XML and JSON, and every error in the Open311 shape."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock

from .conftest import OPEN311, TRAN_BIEN, Submit, report_id


def _xml(response: Any) -> ET.Element:
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(response.content)  # noqa: S314 - our own server's output


def _errors_json(response: Any, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, list)
    assert body
    for error in body:
        assert set(error) == {"code", "description"}
        assert error["description"]
    return body  # type: ignore[no-any-return]


def test_discovery_in_both_formats(client: TestClient) -> None:
    as_json = client.get(f"{OPEN311}/discovery.json").json()
    assert as_json["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert as_json["endpoints"][0]["url"].endswith("/open311/v2")
    assert set(as_json["endpoints"][0]["formats"]) == {"text/xml", "application/json"}
    for name in ("changeset", "contact", "key_service"):
        assert as_json[name]
    root = _xml(client.get(f"{OPEN311}/discovery.xml"))
    assert root.tag == "discovery"
    formats = [f.text for f in root.iter("format")]
    assert formats == ["text/xml", "application/json"]


def test_service_list_round_trips_vietnamese_in_json_and_xml(client: TestClient) -> None:
    services = client.get(f"{OPEN311}/services.json?jurisdiction_id=75").json()
    assert isinstance(services, list)
    by_code = {s["service_code"]: s for s in services}
    assert len(by_code) >= 16
    road = by_code["GT-01"]
    assert road["service_name"] == "Hư hỏng mặt đường, vỉa hè"
    assert road["metadata"] is True
    assert road["type"] == "realtime"
    assert by_code["MT-01"]["metadata"] is False
    root = _xml(client.get(f"{OPEN311}/services.xml"))
    assert root.tag == "services"
    names = {s.findtext("service_code"): s.findtext("service_name") for s in root.iter("service")}
    assert names["GT-01"] == "Hư hỏng mặt đường, vỉa hè"
    assert root.find("service/metadata") is not None
    english = client.get(f"{OPEN311}/services.json", headers={"Accept-Language": "en"}).json()
    assert {s["service_code"]: s["service_name"] for s in english}["GT-01"] == (
        "Damaged road or pavement"
    )


def test_service_definition_lists_attributes_and_values(client: TestClient) -> None:
    definition = client.get(f"{OPEN311}/services/GT-01.json").json()
    assert definition["service_code"] == "GT-01"
    damage = definition["attributes"][0]
    assert damage["code"] == "damage"
    assert damage["datatype"] == "singlevaluelist"
    assert damage["required"] is True
    assert damage["variable"] is True
    assert {"key": "pothole", "name": "Ổ gà"} in damage["values"]
    root = _xml(client.get(f"{OPEN311}/services/GT-01.xml"))
    assert root.tag == "service_definition"
    assert [v.findtext("key") for v in root.iter("value")][:2] == ["pothole", "subsidence"]


def test_post_then_read_back_in_json_and_xml(client: TestClient, submit: Submit) -> None:
    response = submit(
        service_code="GT-01",
        description="Ổ gà lớn giữa làn xe máy\nnguy hiểm ban đêm",
        address_string="Đồng Khởi, phường Trấn Biên, Đồng Nai",
        media_url="https://example.vn/o-ga.jpg",
        **{"attribute[damage]": "pothole"},
        **TRAN_BIEN,
    )
    code = report_id(response)
    one = client.get(f"{OPEN311}/requests/{code}.json").json()
    assert isinstance(one, list)
    assert len(one) == 1
    item = one[0]
    assert item["service_request_id"] == code
    assert item["status"] == "open"
    assert item["service_code"] == "GT-01"
    assert item["description"] == "Ổ gà lớn giữa làn xe máy\nnguy hiểm ban đêm"
    assert item["agency_responsible"] == "Sở Xây dựng"
    assert item["requested_datetime"] == "2026-11-20T10:00:00+07:00"
    assert item["expected_datetime"] == "2026-11-25T10:00:00+07:00"  # 120 h
    assert item["media_url"] == "https://example.vn/o-ga.jpg"
    assert item["lat"] == pytest.approx(10.938)
    root = _xml(client.get(f"{OPEN311}/requests/{code}.xml"))
    assert root.tag == "service_requests"
    requests = root.findall("request")
    assert len(requests) == 1
    assert requests[0].findtext("service_request_id") == code
    assert requests[0].findtext("address") == "Đồng Khởi, phường Trấn Biên, Đồng Nai"
    # An XML client posts too, and gets XML back.
    posted = submit("xml", service_code="MT-01", **TRAN_BIEN)
    assert posted.status_code == 201
    assert _xml(posted).findtext("request/service_request_id", "").startswith("PA-")


def test_api_key_also_accepted_in_the_query_string(client: TestClient, api_key: str) -> None:
    response = client.post(
        f"{OPEN311}/requests.json?api_key={api_key}",
        data={"service_code": "MT-01", **TRAN_BIEN},
    )
    assert response.status_code == 201, response.text


def test_query_filters_paging_and_period(
    client: TestClient, submit: Submit, clock: FrozenClock
) -> None:
    first = report_id(submit(service_code="MT-01", **TRAN_BIEN))
    clock.advance(timedelta(hours=1))
    second = report_id(submit(service_code="CS-01", **TRAN_BIEN))
    clock.advance(timedelta(hours=1))
    third = report_id(submit(service_code="MT-01", address_string="Phường Tam Hiệp"))
    every = [r["service_request_id"] for r in client.get(f"{OPEN311}/requests.json").json()]
    assert every == [third, second, first]  # newest first
    by_service = client.get(f"{OPEN311}/requests.json?service_code=MT-01").json()
    assert [r["service_request_id"] for r in by_service] == [third, first]
    # An empty argument is the same as none.
    assert client.get(f"{OPEN311}/requests.json?service_code=&status=").json() == (
        client.get(f"{OPEN311}/requests.json").json()
    )
    page = client.get(f"{OPEN311}/requests.json?page_size=2&page=2").json()
    assert [r["service_request_id"] for r in page] == [first]
    ids = client.get(f"{OPEN311}/requests.json?service_request_id={first},{third}&status=closed")
    assert {r["service_request_id"] for r in ids.json()} == {first, third}  # ids override
    assert client.get(f"{OPEN311}/requests.json?status=closed").json() == []
    period = client.get(
        f"{OPEN311}/requests.json",
        params={"start_date": "2026-11-20T10:30:00+07:00", "end_date": "2026-11-20T11:30:00+07:00"},
    ).json()
    assert [r["service_request_id"] for r in period] == [second]
    root = _xml(client.get(f"{OPEN311}/requests.xml?service_code=CS-01"))
    assert [r.findtext("service_request_id") for r in root.findall("request")] == [second]
    with_notes = client.get(f"{OPEN311}/requests/{first}.json?extensions=true").json()[0]
    assert with_notes["notes"][0]["description"] == "Đã tiếp nhận"


def test_token_resolves_to_the_request(client: TestClient, submit: Submit, runtime: Any) -> None:
    from cityops.citizen import service
    from cityops.core.db import unit_of_work

    code = report_id(submit(service_code="MT-01", **TRAN_BIEN))
    with unit_of_work(runtime.session_factory) as session:
        report = service.get_by_code(session=session, tracking_code=code)
        assert report is not None
        token = report.token
    body = client.get(f"{OPEN311}/tokens/{token}.json").json()
    assert body == [{"service_request_id": code, "token": token}]
    root = _xml(client.get(f"{OPEN311}/tokens/{token}.xml"))
    assert root.findtext("request/service_request_id") == code
    _errors_json(client.get(f"{OPEN311}/tokens/nope.json"), 404)


@pytest.mark.parametrize(
    ("fields", "status", "mentions"),
    [
        ({"key": ""}, 403, "api_key"),
        ({"key": "cok_000000000000_forged"}, 403, "api_key"),
        ({"service_code": "ZZ-99"}, 404, "ZZ-99"),
        ({"jurisdiction_id": "hanoi.gov.vn"}, 404, "hanoi.gov.vn"),
        ({"service_code": None}, 400, "service_code"),
        ({"lat": None, "long": None}, 400, "lat"),
        ({"long": None}, 400, "long"),
        ({"lat": "91"}, 400, "lat"),
        ({"lat": "21.03", "long": "105.85"}, 400, "Đồng Nai"),  # Hà Nội
        ({"attribute[damage]": "meteor"}, 400, "attribute[damage]"),
        ({"attribute[damage]": None}, 400, "attribute[damage]"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour]"),
        ({"email": "not-an-address"}, 400, "email"),
        ({"phone": "12345"}, 400, "phone"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
        ({"description": "x" * 4001}, 400, "description"),
        ({"duplicate_of": "PA-AAAA-AAAA"}, 400, "duplicate_of"),
    ],
)
def test_post_errors(
    client: TestClient, submit: Submit, fields: dict[str, Any], status: int, mentions: str
) -> None:
    body: dict[str, Any] = {
        "service_code": "GT-01",
        "attribute[damage]": "pothole",
        **TRAN_BIEN,
        **fields,
    }
    key = body.pop("key", None)
    body = {k: v for k, v in body.items() if v is not None}
    for fmt in ("json", "xml"):
        response = submit(fmt, key=key, **body)
        assert response.status_code == status, response.text
        if fmt == "json":
            errors = _errors_json(response, status)
            assert any(mentions in e["description"] for e in errors), errors
            assert all(e["code"] == status for e in errors)
        else:
            root = _xml(response)
            assert root.tag == "errors"
            assert mentions in response.text
    assert client.get(f"{OPEN311}/requests.json").json() == []  # nothing was written


@pytest.mark.parametrize(
    ("url", "status", "mentions"),
    [
        ("requests/PA-NONE-XIST.json", 404, "PA-NONE-XIST"),
        ("services/ZZ-99.json", 404, "ZZ-99"),
        ("services.json?jurisdiction_id=other", 404, "other"),
        ("requests.json?start_date=yesterday", 400, "start_date"),
        ("requests.json?status=pending", 400, "status"),
        ("requests.json?page_size=5000", 400, "page_size"),
        ("requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-11-01T00:00:00Z", 400, "90"),
        ("requests.json?start_date=2026-11-01T00:00:00", 400, "start_date"),  # no zone
        ("services.html", 404, "html"),
    ],
)
def test_get_errors(client: TestClient, url: str, status: int, mentions: str) -> None:
    errors = _errors_json(client.get(f"{OPEN311}/{url}"), status)
    assert any(mentions in e["description"] for e in errors), errors
    xml_url = url.replace(".json", ".xml", 1)
    if ".xml" in xml_url:
        response = client.get(f"{OPEN311}/{xml_url}")
        assert response.status_code == status
        assert _xml(response).tag == "errors"


def test_a_wrong_method_and_a_server_failure_keep_their_status_in_the_open311_shape(
    app: Any, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not the client's fault: a 400 would tell an Open311 client never to send it again.
    client = TestClient(app, raise_server_exceptions=False)
    wrong = client.put(f"{OPEN311}/requests.json", data={"api_key": api_key})
    assert [e["code"] for e in _errors_json(wrong, 405)] == [405]
    assert "POST" in wrong.headers["allow"]

    def broken(**_: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("cityops.citizen.flows.plan_report", broken)
    body = {"api_key": api_key, "service_code": "MT-01", **TRAN_BIEN}
    failed = client.post(f"{OPEN311}/requests.json", data=body)
    (error,) = _errors_json(failed, 500)
    assert error["code"] == 500
    assert "database went away" not in error["description"]  # no internals shown
    as_xml = client.post(f"{OPEN311}/requests.xml", data=body)
    assert as_xml.status_code == 500
    assert _xml(as_xml).tag == "errors"


def test_key_without_the_submit_permission_is_refused(
    client: TestClient, admin: dict[str, str], submit: Submit
) -> None:
    other = client.post(
        "/api/v1/api-keys", json={"name": "reader", "permissions": ["context:read"]}, headers=admin
    ).json()["key"]
    _errors_json(submit(key=other, service_code="MT-01", **TRAN_BIEN), 403)


def test_a_key_revoked_or_expired_after_use_is_refused_at_once(
    client: TestClient, admin: dict[str, str], clock: FrozenClock
) -> None:
    """Keys are kept by each server process between reports: a change must still apply."""
    start = clock.now()
    expires = (start + timedelta(days=2)).isoformat()
    created = client.post(
        "/api/v1/api-keys",
        json={"name": "app", "permissions": ["citizen:submit"], "expires_at": expires},
        headers=admin,
    ).json()
    body = {"api_key": created["key"], "service_code": "MT-01", **TRAN_BIEN}
    assert client.post(f"{OPEN311}/requests.json", data=body).status_code == 201
    clock.advance(timedelta(days=2))
    _errors_json(client.post(f"{OPEN311}/requests.json", data=body), 403)
    clock.set(start)
    assert client.post(f"{OPEN311}/requests.json", data=body).status_code == 201
    assert client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin).status_code == 204
    _errors_json(client.post(f"{OPEN311}/requests.json", data=body), 403)
