"""Reports that arrive together are written together (citizen.writer): each still gets its own
answer, tracking code, incident, timeline, audit rows and confirmation, exactly as if it had come
alone; a bad one gets its own 4xx and the others commit; duplicates inside a batch are linked as
if they had come one after the other."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cityops.auth.models import AuditLog
from cityops.citizen import flows
from cityops.citizen.models import Report
from cityops.citizen.writer import ReportWriter, writer_of
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.outbox import OutboxMessage
from cityops.core.runtime import Runtime
from cityops.incidents.models import Incident, TimelineEntry
from cityops.web.models import StreamEvent

from .conftest import API, OPEN311, TAM_HIEP, TAM_HIEP_POINT, TRAN_BIEN, WARD, Submit

Headers = dict[str, str]


class Held:
    """Keeps the writer busy, so that what is sent meanwhile queues and is then written as one
    batch."""

    def __init__(self, writer: ReportWriter) -> None:
        self.writer = writer
        self.holding = writer.hold()

    def __enter__(self) -> Held:
        self.holding.__enter__()
        return self

    def wait_for(self, count: int) -> None:
        """Wait until `count` jobs queue behind the hold."""
        deadline = time.monotonic() + 30
        while self.writer.waiting() < count:
            assert time.monotonic() < deadline, f"{self.writer.waiting()} of {count} queued"
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self.holding.__exit__(None, None, None)


def send_together(
    runtime: Runtime, submit: Submit, bodies: list[dict[str, Any]], good: int | None = None
) -> tuple[list[Any], int]:
    """POST every body at once, written as one batch; return the responses and batch count
    (`good`: how many pass their checks and queue for the writer, if not all)."""
    writer = writer_of(runtime)
    with ThreadPoolExecutor(len(bodies)) as pool, Held(writer) as held:
        batches = writer.batches
        futures = [pool.submit(lambda b=body: submit(**b)) for body in bodies]
        held.wait_for(len(bodies) if good is None else good)
    responses = [f.result() for f in futures]
    return responses, writer.batches - batches


def test_reports_sent_together_are_each_taken_in_as_if_alone(
    client: TestClient,
    submit: Submit,
    runtime: Runtime,
    login_as: Callable[..., Headers],
) -> None:
    bodies: list[dict[str, Any]] = []
    for number in range(12):
        point = TRAN_BIEN if number % 2 else TAM_HIEP_POINT
        # Far enough apart (about 110 m each) that none is another's duplicate.
        lat = f"{float(point['lat']) + number * 0.001:.6f}"
        bodies.append(
            {
                "service_code": "TN-01",
                "lat": lat,
                "long": point["long"],
                "description": f"Ngập sâu sau mưa, điểm {number}",
                "email": f"nguoi.dan{number}@example.vn",
            }
        )
    responses, batches = send_together(runtime, submit, bodies)
    assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses]
    assert batches == 1  # all twelve in one
    codes = [r.json()[0]["service_request_id"] for r in responses]
    assert len(set(codes)) == 12
    operator = login_as("operator")
    incident_codes = set()
    for number, code in enumerate(codes):
        item = client.get(f"{OPEN311}/requests/{code}.json").json()[0]
        assert item["description"] == f"Ngập sâu sau mưa, điểm {number}"
        assert item["expected_datetime"] == "2026-11-21T10:00:00+07:00"  # TN-01: 24 h
        report = client.get(f"{API}/citizen/reports/{code}", headers=operator).json()
        assert report["department_code"] == "SXD"
        expected_unit = TRAN_BIEN if number % 2 else TAM_HIEP_POINT
        assert report["unit_code"] == (WARD if expected_unit is TRAN_BIEN else TAM_HIEP)
        incident = client.get(f"{API}/incidents/{report['incident_id']}", headers=operator).json()
        assert incident["unit_code"] == report["unit_code"]
        assert incident["department_code"] == "SXD"
        assert incident["due_resolve_at"] is not None
        assert code in incident["description"]
        assert [e["kind"] for e in incident["timeline"]] == ["created"]
        incident_codes.add(incident["code"])
    assert len(incident_codes) == 12
    # Counted up as one block, gap-free: the next incident follows the batch's last.
    numbers = sorted(int(c.rsplit("-", 1)[1]) for c in incident_codes)
    assert numbers == list(range(numbers[0], numbers[0] + 12))
    later = submit(service_code="AT-01", **TRAN_BIEN).json()[0]["service_request_id"]
    report = client.get(f"{API}/citizen/reports/{later}", headers=operator).json()
    incident = client.get(f"{API}/incidents/{report['incident_id']}", headers=operator).json()
    assert int(incident["code"].rsplit("-", 1)[1]) == numbers[-1] + 1
    with unit_of_work(runtime.session_factory) as session:
        ids = [
            str(i)
            for i in session.scalars(select(Incident.id).where(Incident.code.in_(incident_codes)))
        ]
        audited = session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.resource_type == "incident", AuditLog.resource_id.in_(ids))
        )
        streamed = session.scalar(select(func.count()).select_from(StreamEvent))
        receipts = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.source == "citizen", OutboxMessage.source_ref.in_(codes))
        )
    assert (audited or 0) >= 12  # each incident's creation
    assert (streamed or 0) >= 12  # each incident on the live stream's log
    assert receipts == 12  # one confirmation e-mail each


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"lat": "11.9", "long": "105.0"}, "lat"),  # outside the province
        ({"attribute[nope]": "x", **TRAN_BIEN}, "attribute[nope]"),
        ({"duplicate_of": "PA-ZZZZ-ZZZZ", **TRAN_BIEN}, "duplicate_of"),
    ],
)
def test_a_bad_report_in_a_batch_gets_its_4xx_and_the_others_commit(
    client: TestClient, submit: Submit, runtime: Runtime, bad: dict[str, str], field: str
) -> None:
    good = {"service_code": "MT-01", "description": "Rác tồn đọng", **TAM_HIEP_POINT}
    bodies = [good, {"service_code": "MT-01", **bad}, {**good, "service_code": "CS-01"}]
    # The bad one is answered at once, without waiting for the writer.
    responses, batches = send_together(runtime, submit, bodies, good=2)
    assert batches == 1
    assert [r.status_code for r in responses] == [201, 400, 201]
    assert field in responses[1].text
    for response in (responses[0], responses[2]):
        code = response.json()[0]["service_request_id"]
        assert client.get(f"{OPEN311}/requests/{code}.json").status_code == 200
    with unit_of_work(runtime.session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 2


def test_a_report_failing_while_written_leaves_no_trace_and_the_others_commit(
    runtime: Runtime, api_key: str
) -> None:
    published: list[Event] = []
    visible: list[bool] = []

    def announced(event: Event) -> None:
        # Announced once committed: another connection already reads the report.
        with unit_of_work(runtime.session_factory) as other:
            code = event.data["tracking_code"]
            visible.append(
                other.scalar(select(Report.id).where(Report.tracking_code == code)) is not None
            )
        published.append(event)

    runtime.bus.subscribe("citizen.report_created", announced)
    writer = writer_of(runtime)

    def send(description: str, fail: bool = False) -> None:
        with runtime.session_factory() as session:
            plan = flows.plan_report(
                runtime=runtime,
                session=session,
                sub=flows.Submission(service_code="MT-01", description=description, **TRAN_BIEN),
                client_id=None,
            )

        def finish(session: Session, created: flows.Created) -> str:
            session.flush()
            if fail:
                # After the report, its incident, outbox and stream rows are all written.
                raise RuntimeError("disk full")
            return created.report.tracking_code

        try:
            results.append(writer.run(plan, finish=finish))
        except RuntimeError as exc:
            results.append(exc)

    results: list[Any] = []
    with ThreadPoolExecutor(3) as pool, Held(writer) as held:
        for description, fail in (("một", False), ("hai", True), ("ba", False)):
            pool.submit(send, description, fail)
        held.wait_for(3)
    failures = [r for r in results if isinstance(r, RuntimeError)]
    codes = sorted(r for r in results if isinstance(r, str))
    assert len(failures) == 1
    assert len(codes) == 2
    with unit_of_work(runtime.session_factory) as session:
        stored = session.scalars(select(Report.description).order_by(Report.id)).all()
        incidents = session.scalar(select(func.count()).select_from(Incident))
        timeline = session.scalar(select(func.count()).select_from(TimelineEntry))
    assert sorted(stored) == ["ba", "một"]
    assert incidents == 2
    assert timeline == 2
    # Only what committed is announced.
    assert sorted(e.data["tracking_code"] for e in published) == codes
    assert visible == [True, True]


def test_duplicates_inside_one_batch_are_linked_as_if_sent_one_after_the_other(
    client: TestClient, submit: Submit, runtime: Runtime
) -> None:
    first = {"service_code": "MT-01", "lat": "10.938000", "long": "106.835000"}
    near = {"service_code": "MT-01", "lat": "10.938090", "long": "106.835000"}  # about 10 m
    # A pair sent one after the other, for comparison.
    responses, _ = send_together(runtime, submit, [first])
    code = responses[0].json()[0]["service_request_id"]
    alone = submit(**near)
    assert code in alone.json()[0]["service_notice"]
    # And a pair sent together, further along (the same distance apart).
    pair = [
        {"service_code": "CS-01", "lat": "10.948000", "long": "106.845000"},
        {"service_code": "CS-01", "lat": "10.948090", "long": "106.845000"},
    ]
    responses, batches = send_together(runtime, submit, pair)
    assert batches == 1
    assert [r.status_code for r in responses] == [201, 201]
    body = [r.json()[0] for r in responses]
    notices = [b.get("service_notice") for b in body]
    codes = [b["service_request_id"] for b in body]
    # Whichever was written second names the first as a possible duplicate.
    assert notices.count(None) == 1
    named = next(n for n in notices if n)
    assert "Possible duplicate of" in named
    assert codes[notices.index(None)] in named
