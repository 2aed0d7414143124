"""A report's life: routed to the right ward and department as an incident, followed back from the
incident to the report and its reporters (e-mail and SMS), duplicates, rating and the 766 tally."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from cityops.citizen import service
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

from ..receiver import Receiver
from ..smtp_sink import SmtpSink
from .conftest import API, OPEN311, REPORTER, TAM_HIEP, TAM_HIEP_POINT, TRAN_BIEN, Submit, report_id

Headers = dict[str, str]


def staff_view(client: TestClient, headers: Headers, code: str) -> dict[str, Any]:
    """The report as staff handling it see it."""
    response = client.get(f"{API}/citizen/reports/{code}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def public(client: TestClient, code: str) -> dict[str, Any]:
    """The report as anyone sees it through Open311."""
    item: dict[str, Any] = client.get(f"{OPEN311}/requests/{code}.json").json()[0]
    return item


def work_through(
    client: TestClient, login_as: Callable[..., Headers], incident_id: int, department: str
) -> Headers:
    """Assign, start and resolve an incident as the operator and the department would."""
    operator = login_as("operator")
    officer = login_as("department_officer", department_code=department)
    incidents = f"{API}/incidents/{incident_id}"
    response = client.post(
        f"{incidents}/assign", json={"department_code": department}, headers=operator
    )
    assert response.status_code == 200, response.text
    response = client.post(f"{incidents}/transition", json={"to": "in_progress"}, headers=officer)
    assert response.status_code == 200, response.text
    response = client.post(
        f"{incidents}/transition",
        json={"to": "resolved", "note": "Đã vá ổ gà"},
        headers=officer,
    )
    assert response.status_code == 200, response.text
    return officer


def test_report_becomes_an_incident_of_the_ward_and_department(
    client: TestClient, submit: Submit, login_as: Callable[..., Headers]
) -> None:
    code = report_id(submit(service_code="TN-01", description="Ngập sâu sau mưa", **TAM_HIEP_POINT))
    operator = login_as("operator")
    report = staff_view(client, operator, code)
    assert report["unit_code"] == TAM_HIEP
    assert report["department_code"] == "SXD"
    incident = client.get(f"{API}/incidents/{report['incident_id']}", headers=operator).json()
    assert incident["unit_code"] == TAM_HIEP
    assert incident["department_code"] == "SXD"
    assert incident["category_code"] == "flooding"
    assert incident["severity"] == "high"
    assert incident["due_resolve_at"] is not None  # the flooding/high SLA policy applies
    assert code in incident["description"]
    # A report with only an address still reaches its department.
    by_address = report_id(submit(service_code="AT-01", address_string="Ngã tư Vũng Tàu"))
    other = staff_view(client, operator, by_address)
    assert other["department_code"] == "CAT"
    assert other["incident_id"] is not None
    assert other["unit_code"] is None  # no ward named: the province's operators triage it
    # An address naming its ward in full is routed to that ward.
    named = report_id(
        submit(service_code="AT-01", address_string="Ngã tư Vũng Tàu, Phường Tam Hiệp, Đồng Nai")
    )
    assert staff_view(client, operator, named)["unit_code"] == TAM_HIEP


def test_incident_progress_flows_back_to_report_and_reporter(
    client: TestClient,
    submit: Submit,
    login_as: Callable[..., Headers],
    runtime: Runtime,
    smtp_sink: SmtpSink,
    http_receiver: Receiver,
) -> None:
    code = report_id(
        submit(service_code="GT-01", **{"attribute[damage]": "pothole"}, **TRAN_BIEN, **REPORTER)
    )
    incident_id = staff_view(client, login_as("operator"), code)["incident_id"]
    officer = work_through(client, login_as, incident_id, "SXD")
    item = public(client, code)
    assert item["status"] == "closed"
    assert item["status_notes"] == "Đã xử lý xong"
    assert item["updated_datetime"] == item["requested_datetime"]  # the frozen clock
    comment = client.post(
        f"{API}/incidents/{incident_id}/comments",
        json={"body": "Đã hoàn thiện mặt đường, cảm ơn người dân.", "public": True},
        headers=officer,
    )
    assert comment.status_code == 201, comment.text
    private = client.post(
        f"{API}/incidents/{incident_id}/comments",
        json={"body": "Ghi chú nội bộ: nhà thầu chậm", "public": False},
        headers=officer,
    )
    assert private.status_code == 201
    item = public(client, code)
    assert item["status_notes"] == "Đã hoàn thiện mặt đường, cảm ơn người dân."
    notes = client.get(f"{OPEN311}/requests/{code}.json?extensions=true").json()[0]["notes"]
    texts = [n["description"] for n in notes]
    assert "Đã hoàn thiện mặt đường, cảm ơn người dân." in texts
    assert not any("nội bộ" in t for t in texts)
    assert runtime.outbox is not None
    runtime.outbox.drain()
    mails = [m for m in smtp_sink.wait_for(1) if REPORTER["email"] in m.rcpt_tos]
    assert any(code in m.text for m in mails)
    assert any("cảm ơn người dân" in m.text for m in mails)
    sms = [r.json() for r in http_receiver.requests if r.path == "/sms"]
    ours = [s for s in sms if s["to"] == "+84912345678"]
    assert len(ours) >= 4  # assigned, started, resolved, the public comment
    assert all(code in s["text"] for s in ours)


def test_nearby_report_is_offered_as_duplicate_and_linking_shares_the_incident(
    client: TestClient,
    submit: Submit,
    login_as: Callable[..., Headers],
    clock: FrozenClock,
    http_receiver: Receiver,
    runtime: Runtime,
) -> None:
    first = report_id(submit(service_code="MT-01", **TRAN_BIEN, phone="0912345678"))
    clock.advance(timedelta(days=2))
    near = {"lat": "10.9382", "long": "106.8351"}  # about 25 m away
    offered = client.get(
        f"{API}/citizen/duplicates",
        params={"service_code": "MT-01", "lat": 10.9382, "lon": 106.8351},
    ).json()
    assert [o["tracking_code"] for o in offered] == [first]
    assert offered[0]["distance_m"] < 50
    far = client.get(
        f"{API}/citizen/duplicates",
        params={"service_code": "MT-01", "lat": 10.9420, "lon": 106.835},
    ).json()
    assert far == []  # about 440 m away
    other_kind = client.get(
        f"{API}/citizen/duplicates",
        params={"service_code": "CS-01", "lat": 10.9382, "lon": 106.8351},
    ).json()
    assert other_kind == []
    nothing = client.get(
        f"{API}/citizen/duplicates",
        params={"service_code": "NO-SUCH", "lat": 10.9382, "lon": 106.8351},
    )
    assert nothing.status_code == 200
    assert nothing.json() == []
    # A NUL would be a 500 on PostgreSQL if it reached SQL: refused first, naming the field.
    nul = client.get(
        f"{API}/citizen/duplicates",
        params={"service_code": "MT-01\x00", "lat": 10.9382, "lon": 106.8351},
    )
    assert nul.status_code == 422
    assert nul.json()["errors"][0]["field"] == "service_code"
    # Sent without linking: a new report and incident, with a notice naming the candidate.
    unlinked = submit(service_code="MT-01", **near)
    assert first in unlinked.json()[0]["service_notice"]
    linked = report_id(submit(service_code="MT-01", duplicate_of=first, **near, phone="0987654321"))
    operator = login_as("operator")
    original = staff_view(client, operator, first)
    copy = staff_view(client, operator, linked)
    assert copy["incident_id"] == original["incident_id"]
    assert copy["duplicate_of"] == original["id"]
    assert (
        staff_view(client, operator, report_id(unlinked))["incident_id"] != original["incident_id"]
    )
    work_through(client, login_as, original["incident_id"], "SNNMT")
    assert public(client, linked)["status"] == "closed"
    assert runtime.outbox is not None
    runtime.outbox.drain()
    phones = {r.json()["to"] for r in http_receiver.requests if r.path == "/sms"}
    assert {"+84912345678", "+84987654321"} <= phones
    # Both reporters rate: the case counts once, with its original's rating (as 766 counts
    # cases, see tests/kpi), and each rating needs that reporter's own key.
    for code, satisfied in ((first, True), (linked, False)):
        rated = client.post(
            f"{API}/citizen/reports/{code}/rating",
            json={"satisfied": satisfied, "key": reporter_key(runtime, code)},
        )
        assert rated.status_code == 204, rated.text
    with unit_of_work(runtime.session_factory) as session:
        tally = service.satisfaction(
            session=session, start=clock.now() - timedelta(hours=1), end=clock.now() + timedelta(1)
        )
    assert (tally.closed, tally.rated, tally.satisfied) == (1, 1, 1)
    # After 7 days a report is no longer offered.
    clock.advance(timedelta(days=8))
    report_id(submit(service_code="MT-01", **TRAN_BIEN))
    stale = client.get(
        f"{API}/citizen/duplicates", params={"service_code": "MT-01", "lat": 10.938, "lon": 106.835}
    ).json()
    assert first not in [o["tracking_code"] for o in stale]


def reporter_key(runtime: Runtime, code: str) -> str:
    """The key of a reporter's tracking link (sent to them in every message)."""
    with unit_of_work(runtime.session_factory) as session:
        report = service.get_by_code(session=session, tracking_code=code)
        assert report is not None
        return report.token


def test_rating_once_resolved_feeds_the_satisfaction_tally(
    client: TestClient,
    submit: Submit,
    login_as: Callable[..., Headers],
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    start = clock.now()
    code = report_id(submit(service_code="GT-01", **{"attribute[damage]": "crack"}, **TRAN_BIEN))
    key = reporter_key(runtime, code)
    early = client.post(
        f"{API}/citizen/reports/{code}/rating", json={"satisfied": True, "key": key}
    )
    assert early.status_code == 409
    incident_id = staff_view(client, login_as("operator"), code)["incident_id"]
    clock.advance(timedelta(hours=2))
    work_through(client, login_as, incident_id, "SXD")
    # The tracking code is public (Open311 lists it): without the reporter's key, no rating.
    for body in ({"satisfied": True}, {"satisfied": True, "key": "0" * 32}):
        stranger = client.post(f"{API}/citizen/reports/{code}/rating", json=body)
        assert stranger.status_code in (403, 422), stranger.text
    assert stranger.status_code == 403
    rated = client.post(
        f"{API}/citizen/reports/{code}/rating",
        json={"satisfied": False, "comment": "Vá tạm, vẫn còn lún", "key": key},
    )
    assert rated.status_code == 204, rated.text
    again = client.post(
        f"{API}/citizen/reports/{code}/rating", json={"satisfied": True, "key": key}
    )
    assert again.status_code == 409
    unknown = client.post(
        f"{API}/citizen/reports/PA-ZZZZ-ZZZZ/rating", json={"satisfied": True, "key": key}
    )
    assert unknown.status_code == 404
    with unit_of_work(runtime.session_factory) as session:
        tally = service.satisfaction(
            session=session, start=start, end=clock.now() + timedelta(seconds=1)
        )
        scoped = service.satisfaction(
            session=session, start=start, end=clock.now(), department_code="SNNMT"
        )
    assert (tally.closed, tally.closed_on_time, tally.rated, tally.satisfied) == (1, 1, 1, 0)
    assert tally.satisfaction_rate == 0.0
    assert scoped.closed == 0
