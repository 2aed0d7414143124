"""Personal data (Law 91/2025/QH15) and abuse control: the reporter's name, phone and e-mail never
reach a public response; staff in scope read them; the reporter erases them; a retention job erases
them after closing; markup never survives; flagged reports wait for a moderator; clients are
rate-limited; the catalogue is editable by admins only."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.citizen.flows import RETENTION_JOB
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.runtime import Runtime

from .conftest import API, OPEN311, REPORTER, SECRETS, TRAN_BIEN, Submit, report_id
from .test_reports import staff_view, work_through

Headers = dict[str, str]


def _public_bodies(client: TestClient, code: str) -> list[str]:
    urls = [
        f"{OPEN311}/requests.json",
        f"{OPEN311}/requests.xml",
        f"{OPEN311}/requests.json?extensions=true",
        f"{OPEN311}/requests/{code}.json?extensions=true",
        f"{OPEN311}/requests/{code}.xml?extensions=true",
        f"{OPEN311}/services.json",
        f"{API}/citizen/duplicates?service_code=MT-01&lat=10.938&lon=106.835",
    ]
    bodies = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.text)
        bodies.append(response.text)
    return bodies


def test_personal_data_never_in_a_public_response(
    client: TestClient, submit: Submit, login_as: Callable[..., Headers]
) -> None:
    posted = submit(
        service_code="MT-01",
        description="Rác chất đống trước chợ",
        device_id="device-7f3a",
        account_id="acct-4242",
        **TRAN_BIEN,
        **REPORTER,
    )
    code = report_id(posted)
    bodies = [posted.text, *_public_bodies(client, code)]
    incident_id = staff_view(client, login_as("operator"), code)["incident_id"]
    work_through(client, login_as, incident_id, "SNNMT")
    bodies += _public_bodies(client, code)
    assert any(code in body for body in bodies)  # the searches looked at the report
    for body in bodies:
        for secret in (*SECRETS, "device-7f3a", "acct-4242"):
            assert secret not in body


def test_staff_handling_the_case_read_contacts_others_do_not(
    client: TestClient, submit: Submit, login_as: Callable[..., Headers]
) -> None:
    code = report_id(submit(service_code="MT-01", **TRAN_BIEN, **REPORTER))
    handler = login_as("department_officer", department_code="SNNMT")
    reporter = staff_view(client, handler, code)["reporter"]
    assert reporter["email"] == REPORTER["email"]
    assert reporter["phone"] == "+84912345678"
    assert reporter["first_name"] == "Thị Hồng"
    ward = login_as("unit_officer", unit_code="26041")
    assert staff_view(client, ward, code)["reporter"]["last_name"] == "Nguyễn"
    other_department = login_as("department_officer", department_code="SYT")
    other_ward = login_as("unit_officer", unit_code="26017")
    for headers in (other_department, other_ward):
        response = client.get(f"{API}/citizen/reports/{code}", headers=headers)
        assert response.status_code == 404
        assert REPORTER["email"] not in response.text
    viewer = client.get(f"{API}/citizen/reports/{code}", headers=login_as("viewer"))
    assert viewer.status_code == 403
    anonymous = client.get(f"{API}/citizen/reports/{code}")
    assert anonymous.status_code == 401
    # The incident opened for the report carries no personal data either.
    incident_id = staff_view(client, handler, code)["incident_id"]
    incident = client.get(f"{API}/incidents/{incident_id}", headers=handler).text
    for secret in SECRETS:
        assert secret not in incident


def test_reporter_erases_their_data_with_code_and_contact(
    client: TestClient, submit: Submit, login_as: Callable[..., Headers]
) -> None:
    code = report_id(submit(service_code="MT-01", **TRAN_BIEN, **REPORTER))
    url = f"{API}/citizen/reports/{code}/erasure"
    wrong = client.post(url, json={"contact": "someone.else@example.vn"})
    assert wrong.status_code == 404
    other_code = client.post(
        f"{API}/citizen/reports/PA-ZZZZ-ZZZZ/erasure", json={"contact": REPORTER["email"]}
    )
    assert other_code.status_code == 404
    operator = login_as("operator")
    assert staff_view(client, operator, code)["reporter"] is not None
    done = client.post(url, json={"contact": "+84 912 345 678"})
    assert done.status_code == 204, done.text
    after = staff_view(client, operator, code)
    assert after["reporter"] is None
    assert after["personal_data_erased_at"] is not None
    assert after["status"] == "open"  # the report itself stays


def test_retention_job_erases_contacts_after_closing(
    client: TestClient,
    submit: Submit,
    login_as: Callable[..., Headers],
    runtime: Runtime,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    assert RETENTION_JOB in runtime.jobs.jobs
    closed = report_id(submit(service_code="MT-01", **TRAN_BIEN, **REPORTER))
    still_open = report_id(submit(service_code="CS-01", **TRAN_BIEN, **REPORTER))
    operator = login_as("operator")
    work_through(client, login_as, staff_view(client, operator, closed)["incident_id"], "SNNMT")
    clock.advance(timedelta(days=settings.citizen_retention_days - 1))
    runtime.jobs.run_due(time.monotonic() + 10 * 3600)
    operator = login_as("operator")
    assert staff_view(client, operator, closed)["reporter"] is not None  # not yet
    clock.advance(timedelta(days=2))
    runtime.jobs.run_due(time.monotonic() + 20 * 3600)
    operator = login_as("operator")
    assert staff_view(client, operator, closed)["reporter"] is None
    assert staff_view(client, operator, still_open)["reporter"] is not None


def test_markup_is_stripped_and_flagged_reports_wait_for_a_moderator(
    client: TestClient, submit: Submit, login_as: Callable[..., Headers]
) -> None:
    posted = submit(
        service_code="MT-01",
        description='Rác <script>alert("x")</script><b>nhiều</b> & bốc mùi',
        **TRAN_BIEN,
    )
    code = report_id(posted)
    assert posted.json()[0]["service_notice"] == "Held for moderation"
    operator = login_as("operator")
    report = staff_view(client, operator, code)
    assert report["description"] == 'Rác alert("x")nhiều & bốc mùi'
    assert report["moderation"] == "pending"
    assert report["incident_id"] is None
    assert client.get(f"{OPEN311}/requests.json").json() == []
    assert client.get(f"{OPEN311}/requests/{code}.json").status_code == 404
    queue = client.get(f"{API}/citizen/moderation", headers=operator).json()
    assert [r["tracking_code"] for r in queue] == [code]
    officer = login_as("department_officer", department_code="SNNMT")
    refused = client.post(
        f"{API}/citizen/reports/{code}/moderation", json={"decision": "approve"}, headers=officer
    )
    assert refused.status_code == 403
    approved = client.post(
        f"{API}/citizen/reports/{code}/moderation", json={"decision": "approve"}, headers=operator
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["incident_id"] is not None
    xml = client.get(f"{OPEN311}/requests/{code}.xml").text
    assert "&amp; bốc mùi" in xml
    assert "<script>" not in xml
    # A link goes to the queue too; hiding keeps it out of public view for good.
    spam = report_id(
        submit(service_code="KH-01", description="Mua ngay www.spam.example", **TRAN_BIEN)
    )
    hidden = client.post(
        f"{API}/citizen/reports/{spam}/moderation", json={"decision": "hide"}, headers=operator
    )
    assert hidden.status_code == 200
    assert client.get(f"{OPEN311}/requests/{spam}.json").status_code == 404
    twice = client.post(
        f"{API}/citizen/reports/{spam}/moderation", json={"decision": "approve"}, headers=operator
    )
    assert twice.status_code == 409


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A low submission limit (for this module's tests), to reach it quickly."""
    return settings.model_copy(update={"citizen_rate_per_minute": 5})


def test_rate_limit_per_client(client: TestClient, submit: Submit) -> None:
    for _ in range(5):
        report_id(submit(service_code="MT-01", **TRAN_BIEN))
    refused = submit(service_code="MT-01", **TRAN_BIEN)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()[0]["code"] == 429
    assert len(client.get(f"{OPEN311}/requests.json").json()) == 5


def test_catalogue_admin_crud(
    client: TestClient, admin: Headers, login_as: Callable[..., Headers], submit: Submit
) -> None:
    url = f"{API}/citizen/services"
    body: dict[str, Any] = {
        "code": "QC-01",
        "name": "Quảng cáo rao vặt trái phép",
        "name_en": "Illegal posters",
        "group": "Trật tự đô thị",
        "group_en": "Urban order",
        "department_code": "SXD",
        "incident_category": "other",
        "severity": "low",
        "sla_hours": 72,
        "attributes": [
            {
                "code": "where",
                "datatype": "singlevaluelist",
                "required": True,
                "order": 1,
                "description": "Dán ở đâu",
                "description_en": "Where",
                "values": [{"key": "pole", "name": "Cột điện", "name_en": "Utility pole"}],
            }
        ],
    }
    assert client.post(url, json=body, headers=login_as("operator")).status_code == 403
    created = client.post(url, json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert client.post(url, json=body, headers=admin).status_code == 409
    bad = client.post(url, json={**body, "code": "QC-02", "department_code": "NOPE"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "department_code"
    listed = client.get(f"{OPEN311}/services.json").json()
    assert "QC-01" in [s["service_code"] for s in listed]
    definition = client.get(f"{OPEN311}/services/QC-01.json").json()
    assert definition["attributes"][0]["values"] == [{"key": "pole", "name": "Cột điện"}]
    report_id(submit(service_code="QC-01", **{"attribute[where]": "pole"}, **TRAN_BIEN))
    assert client.delete(f"{url}/QC-01", headers=admin).status_code == 409  # in use
    retired = client.patch(f"{url}/QC-01", json={"is_active": False}, headers=admin)
    assert retired.status_code == 200
    listed = client.get(f"{OPEN311}/services.json").json()
    assert "QC-01" not in [s["service_code"] for s in listed]
    assert submit(service_code="QC-01", **TRAN_BIEN).status_code == 404
    unused = client.post(url, json={**body, "code": "QC-03"}, headers=admin)
    assert unused.status_code == 201
    assert client.delete(f"{url}/QC-03", headers=admin).status_code == 204
    assert client.get(f"{url}/QC-03", headers=admin).status_code == 404
