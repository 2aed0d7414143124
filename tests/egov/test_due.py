"""Due-date alerts: open dossiers due within one working day, or past due, are announced once
per state; the list of such dossiers is in the API.

The clock starts on Friday 2026-11-20 at 10:00 in Đồng Nai; one working day later is Monday
2026-11-23 at 10:00 (the weekend does not count).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.egov import jobs
from cityops.egov.enums import DUE_JOB

from .conftest import API

HEADER = "agency,code,unit_code,procedure,received_at,due_at,completed_at"
ROWS = [
    "SXD,DUE-1,,1.009972,2026-11-10T08:00+07:00,2026-11-20T16:00+07:00,",  # today 16:00
    "SXD,DUE-2,,1.009972,2026-11-10T08:00+07:00,2026-11-23T09:00+07:00,",  # Monday 09:00
    "SXD,DUE-3,,1.009972,2026-11-10T08:00+07:00,2026-11-23T11:00+07:00,",  # Monday 11:00
    "SXD,DUE-4,,1.009972,2026-11-10T08:00+07:00,2026-11-19T17:00+07:00,",  # yesterday
    "SXD,DUE-5,,1.009972,2026-11-10T08:00+07:00,2026-11-19T17:00+07:00,2026-11-19T10:00+07:00",
    "26041,DUE-6,,1.001193,2026-11-19T08:00+07:00,2026-11-20T12:00+07:00,",  # today 12:00
]


def _states(events: list[Event]) -> set[tuple[str, str]]:
    return {(e.type.removeprefix("egov.dossier_"), e.data["code"]) for e in events}


@pytest.fixture
def open_dossiers(
    no_dossiers: None, admin: dict[str, str], upload: Callable[..., Any]
) -> dict[str, str]:
    """Six dossiers around the due-date horizon, imported by an admin."""
    response = upload(admin, "\n".join([HEADER, *ROWS]).encode())
    assert response.status_code == 200, response.text
    return admin


@pytest.mark.usefixtures("open_dossiers")
def test_due_soon_and_overdue_are_announced_once_per_state(
    runtime: Runtime,
    clock: FrozenClock,
    events: list[Event],
    login_as: Callable[..., dict[str, str]],
    upload: Callable[..., Any],
) -> None:
    assert DUE_JOB in runtime.jobs.jobs
    runtime.jobs.run_due()  # the job runs with the others, every five minutes
    assert _states(events) == {
        ("due_soon", "DUE-1"),
        ("due_soon", "DUE-2"),
        ("due_soon", "DUE-6"),
        ("overdue", "DUE-4"),
    }
    overdue = next(e for e in events if e.data["code"] == "DUE-4")
    assert overdue.type == "egov.dossier_overdue"
    assert overdue.data == {
        "dossier_id": overdue.data["dossier_id"],
        "code": "DUE-4",
        "agency_code": "SXD",
        "agency_kind": "department",
        "agency_name": "Sở Xây dựng",
        "department_code": "SXD",
        "unit_code": "75",
        "procedure_code": "1.009972",
        "procedure_name": (
            "Cấp giấy phép xây dựng mới đối với công trình cấp đặc biệt, cấp I, cấp II"
        ),
        "procedure_name_en": "Building permit for works of special class, class I or II",
        "status": "received",
        "received_at": "2026-11-10T01:00:00+00:00",
        "due_at": "2026-11-19T10:00:00+00:00",
        "sector": "egov",
        "state": "overdue",
    }
    commune = next(e for e in events if e.data["code"] == "DUE-6")
    assert (commune.data["department_code"], commune.data["unit_code"]) == (None, "26041")

    events.clear()
    assert jobs.check_due_dates(runtime) == {"due_soon": 0, "overdue": 0}
    assert events == []

    # 17:00 on Friday: DUE-1 and DUE-6 have passed; Monday 11:00 is now within the horizon.
    clock.advance(timedelta(hours=7))
    assert jobs.check_due_dates(runtime) == {"due_soon": 1, "overdue": 2}
    assert _states(events) == {
        ("overdue", "DUE-1"),
        ("overdue", "DUE-6"),
        ("due_soon", "DUE-3"),
    }

    # DUE-2 is completed (a later export); on Monday at noon only DUE-3 newly passes its date.
    events.clear()
    done = "SXD,DUE-2,,1.009972,2026-11-10T08:00+07:00,2026-11-23T09:00+07:00,"
    done += "2026-11-20T16:30+07:00"
    admin = login_as("admin")  # seven hours later: a fresh token
    assert upload(admin, f"{HEADER}\n{done}".encode(), update="true").json()["updated"] == 1
    clock.advance(timedelta(days=2, hours=19))
    jobs.check_due_dates(runtime)
    assert _states(events) == {("overdue", "DUE-3")}


@pytest.mark.usefixtures("open_dossiers")
def test_a_new_due_date_is_judged_afresh(
    runtime: Runtime, events: list[Event], admin: dict[str, str], upload: Callable[..., Any]
) -> None:
    jobs.check_due_dates(runtime)
    events.clear()
    # DUE-4's deadline is extended (the applicant supplemented it): nothing to say until the
    # new date comes close.
    later = "SXD,DUE-4,,1.009972,2026-11-10T08:00+07:00,2026-12-10T17:00+07:00,"
    assert upload(admin, f"{HEADER}\n{later}".encode(), update="true").json()["updated"] == 1
    jobs.check_due_dates(runtime)
    assert events == []
    earlier = "SXD,DUE-4,,1.009972,2026-11-10T08:00+07:00,2026-11-18T17:00+07:00,"
    upload(admin, f"{HEADER}\n{earlier}".encode(), update="true")
    jobs.check_due_dates(runtime)
    assert _states(events) == {("overdue", "DUE-4")}


@pytest.mark.usefixtures("open_dossiers")
def test_the_due_list_shows_states_in_scope(
    client: TestClient, admin: dict[str, str], login_as: Callable[..., dict[str, str]]
) -> None:
    response = client.get(f"{API}/egov/dossiers/due", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["horizon_end"] == "2026-11-23T03:00:00Z"
    assert [(d["code"], d["state"]) for d in body["items"]] == [
        ("DUE-4", "overdue"),
        ("DUE-6", "due_soon"),
        ("DUE-1", "due_soon"),
        ("DUE-2", "due_soon"),
    ]
    overdue = client.get(
        f"{API}/egov/dossiers/due", params={"state": "overdue"}, headers=admin
    ).json()
    assert [d["code"] for d in overdue["items"]] == ["DUE-4"]
    commune = login_as("unit_officer", unit_code="26041")
    mine = client.get(f"{API}/egov/dossiers/due", headers=commune).json()
    assert [d["code"] for d in mine["items"]] == ["DUE-6"]
    as_csv = client.get(f"{API}/egov/dossiers/due", params={"format": "csv"}, headers=admin)
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("id,agency_code,code,")
    assert lines[0].endswith(",state")
    assert len(lines) == 5
