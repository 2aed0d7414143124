"""egov's due-date events open alerts through the rule engine (the pack's `dossier-due-soon` and
`dossier-overdue` rules), scoped by the dossier's unit, and the alerts resolve by themselves
once the dossier is closed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete

from cityops.alerts import flows
from cityops.alerts import jobs as alert_jobs
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.egov import jobs as egov_jobs
from cityops.egov.models import Dossier, DossierImport

from .conftest import API, alerts_of

HEADER = "agency,code,unit_code,procedure,received_at,due_at,completed_at"
ROWS = [
    "SXD,DUE-1,,1.009972,2026-11-10T08:00+07:00,2026-11-20T16:00+07:00,",  # today 16:00
    "SXD,DUE-4,,1.009972,2026-11-10T08:00+07:00,2026-11-19T17:00+07:00,",  # yesterday
    "SXD,DUE-5,,1.009972,2026-11-10T08:00+07:00,2026-11-19T17:00+07:00,2026-11-19T10:00+07:00",
    "SXD,DUE-9,,1.009972,2026-11-10T08:00+07:00,2026-12-20T16:00+07:00,",  # next month
    "26041,DUE-6,,1.001193,2026-11-19T08:00+07:00,2026-11-20T12:00+07:00,",  # today 12:00
]


def _import(client: TestClient, headers: dict[str, str], rows: list[str], **params: Any) -> None:
    response = client.post(
        f"{API}/egov/dossiers/import",
        files={"file": ("dossiers.csv", "\n".join([HEADER, *rows]).encode(), "text/csv")},
        params=params,
        headers=headers,
    )
    assert response.status_code == 200, response.text


def _open(client: TestClient, headers: dict[str, str]) -> set[tuple[str, str]]:
    return {
        (a["rule_code"], a["entity_id"].rsplit(":", 1)[1])
        for a in alerts_of(client, headers, sector="egov")
        if a["status"] != "resolved" and a["rule_code"].startswith("dossier-")
    }


def test_dossiers_near_or_past_their_due_date_raise_alerts_that_clear_when_closed(
    client: TestClient,
    runtime: Runtime,
    engine: flows.Engine,
    clock: FrozenClock,
    admin: dict[str, str],
    admin_login: Callable[[], dict[str, str]],
    login_as: Callable[..., dict[str, str]],
) -> None:
    with unit_of_work(runtime.session_factory) as session:
        session.execute(delete(Dossier))
        session.execute(delete(DossierImport))
    _import(client, admin, ROWS)
    egov_jobs.check_due_dates(runtime)
    engine.process_pending()
    assert _open(client, admin) == {
        ("dossier-due-soon", "DUE-1"),
        ("dossier-due-soon", "DUE-4"),
        ("dossier-overdue", "DUE-4"),
        ("dossier-due-soon", "DUE-6"),
    }
    overdue = next(
        a for a in alerts_of(client, admin, rule="dossier-overdue") if a["status"] == "open"
    )
    assert (overdue["severity"], overdue["unit_code"]) == ("medium", "75")
    assert overdue["title_vi"] == "Hồ sơ thủ tục hành chính quá hạn — DUE-4"
    # The commune's dossier is the commune's: its officer sees it, and only it; another
    # commune's officer sees none.
    ward = login_as("unit_officer", unit_code="26041")
    assert _open(client, ward) == {("dossier-due-soon", "DUE-6")}
    assert _open(client, login_as("unit_officer", unit_code="26080")) == set()

    # DUE-4 is completed (a later export): its alerts resolve by themselves at the next check.
    done = "SXD,DUE-4,,1.009972,2026-11-10T08:00+07:00,2026-11-19T17:00+07:00,"
    _import(client, admin, [done + "2026-11-20T09:30+07:00"], update="true")
    assert alert_jobs.settle_dossiers(runtime) == 3
    engine.process_pending()
    assert _open(client, admin) == {("dossier-due-soon", "DUE-1"), ("dossier-due-soon", "DUE-6")}
    resolved = alerts_of(client, admin, rule="dossier-overdue")
    assert [(a["status"], a["resolution"]) for a in resolved] == [("resolved", "auto")]

    # 17:00: DUE-1 and DUE-6 have passed their date.
    clock.advance(timedelta(hours=7))
    admin = admin_login()
    egov_jobs.check_due_dates(runtime)
    engine.process_pending()
    assert _open(client, admin) == {
        ("dossier-due-soon", "DUE-1"),
        ("dossier-overdue", "DUE-1"),
        ("dossier-due-soon", "DUE-6"),
        ("dossier-overdue", "DUE-6"),
    }
