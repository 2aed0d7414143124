"""Items, phases, budget lines and milestones through the API: what is refused (and why, by
field), what is written, and the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.auth.models import AuditLog
from cityops.core.runtime import Runtime
from cityops.programme.models import ProgrammeBudget, ProgrammeItem, ProgrammeMilestone

from .conftest import API, BN

pytestmark = pytest.mark.usefixtures("known")

Counter = Callable[[type[Any]], int]

NEW = {
    "code": "F",
    "name": "Cơ sở dữ liệu đất đai",
    "name_en": "Land database",
    "phase_code": "P1",
    "sector": "environment",
    "owner_department_code": "SNNMT",
    "supporting_department_codes": ["STC"],
    "unit_codes": ["26041"],
    "status": "in_progress",
    "progress": 20,
    "start_date": "2025-01-01",
    "end_date": "2026-12-31",
    "budget": [{"year": 2025, "source": "investment", "allocated": 50 * BN, "disbursed": 0}],
    "milestones": [{"name": "Chuẩn hóa dữ liệu", "due_date": "2026-12-01", "weight": 3}],
}


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["type"] for e in response.json()["errors"]}


def test_create_read_and_delete_an_item(
    client: TestClient, admin: dict[str, str], count: Counter, runtime: Runtime
) -> None:
    created = client.post(f"{API}/items", json=NEW, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["owner_department"] == {
        "code": "SNNMT",
        "name": "Sở Nông nghiệp và Môi trường",
        "name_en": "Department of Agriculture and Environment",
    }
    assert body["units"][0]["name"] == "Phường Trấn Biên"
    assert body["allocated"] == 50 * BN
    assert [m["weight"] for m in body["milestones"]] == [3]
    again = client.post(f"{API}/items", json=NEW, headers=admin)
    assert again.status_code == 409
    with runtime.session_factory() as session:
        actions = session.scalars(
            select(AuditLog.resource_type).where(AuditLog.action == "create")
        ).all()
    assert {"programme_item", "programme_budget", "programme_milestone"} <= set(actions)
    deleted = client.delete(f"{API}/items/F", headers=admin)
    assert deleted.status_code == 204
    assert client.get(f"{API}/items/F", headers=admin).status_code == 404
    assert count(ProgrammeItem) == 5
    assert count(ProgrammeMilestone) == 8  # F's milestone went with it


def test_bad_items_are_refused_field_by_field(
    client: TestClient, admin: dict[str, str], count: Counter
) -> None:
    before = (count(ProgrammeItem), count(ProgrammeBudget))
    bad = {
        **NEW,
        "phase_code": "P1",
        "sector": "weather",
        "owner_department_code": "SXX",
        "supporting_department_codes": ["SNNMT"],
        "unit_codes": ["99999"],
        "status": "done",
        "progress": 80,
        "start_date": "2023-12-31",
        "budget": [
            {"year": 2027, "source": "recurrent", "allocated": BN},
            {"year": 2025, "source": "investment", "allocated": BN},
            {"year": 2025, "source": "investment", "allocated": BN},
        ],
        "milestones": [
            {"name": "M", "due_date": "2026-01-01"},
            {"name": "M", "due_date": "2026-02-01"},
        ],
    }
    found = problems(client.post(f"{API}/items", json=bad, headers=admin))
    assert found == {
        "sector": "programme.sector.unknown",
        "owner_department_code": "programme.department.unknown",
        "unit_codes[0]": "programme.unit.unknown",
        "progress": "programme.item.done_not_full",
        "start_date": "programme.item.outside_phase",
        "budget[0].year": "programme.budget.outside_phase",
        "budget[2]": "programme.budget.duplicate",
        "milestones[1].name": "programme.milestone.duplicate",
    }
    owner_supports = {**NEW, "supporting_department_codes": ["SNNMT"]}
    assert problems(client.post(f"{API}/items", json=owner_supports, headers=admin)) == {
        "supporting_department_codes[0]": "programme.item.owner_supports"
    }
    schema = {**NEW, "progress": 101, "budget": [{"year": 2025, "source": "loan", "allocated": -1}]}
    assert set(problems(client.post(f"{API}/items", json=schema, headers=admin))) == {
        "progress",
        "budget.0.source",
        "budget.0.allocated",
    }
    assert (count(ProgrammeItem), count(ProgrammeBudget)) == before


def test_update_an_item_and_replace_its_lists(client: TestClient, admin: dict[str, str]) -> None:
    changed = client.patch(
        f"{API}/items/A",
        json={"unit_codes": ["26080"], "supporting_department_codes": [], "progress": 60},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["unit_codes"], body["supporting_department_codes"], body["progress"]) == (
        ["26080"],
        [],
        60,
    )
    # Moving A to P2 (2027–2028) would strand its 2024–2025 budget lines and its dates.
    moved = problems(client.patch(f"{API}/items/A", json={"phase_code": "P2"}, headers=admin))
    assert moved["phase_code"] == "programme.item.budget_outside_phase"
    assert moved["start_date"] == "programme.item.outside_phase"
    cleared = problems(client.patch(f"{API}/items/A", json={"name": None}, headers=admin))
    assert cleared == {"name": "programme.field.required"}
    done = problems(client.patch(f"{API}/items/A", json={"status": "done"}, headers=admin))
    assert done == {"progress": "programme.item.done_not_full"}
    finished = client.patch(
        f"{API}/items/A", json={"status": "done", "progress": 100}, headers=admin
    )
    assert finished.json()["late"] is False  # a done item is not late


def test_replace_the_budget_lines_of_an_item(client: TestClient, admin: dict[str, str]) -> None:
    lines = [
        {"year": 2026, "source": "recurrent", "allocated": 10 * BN, "disbursed": 12 * BN},
        {"year": 2026, "source": "investment", "allocated": 20 * BN},
    ]
    response = client.put(f"{API}/items/B/budget", json={"lines": lines}, headers=admin)
    assert response.status_code == 200, response.text
    assert [(x["year"], x["source"], x["over_disbursed"]) for x in response.json()] == [
        (2026, "investment", False),
        (2026, "recurrent", True),
    ]
    assert client.get(f"{API}/items/B", headers=admin).json()["allocated"] == 30 * BN
    outside = [{"year": 2030, "source": "recurrent", "allocated": BN}]
    refused = client.put(f"{API}/items/B/budget", json={"lines": outside}, headers=admin)
    assert problems(refused) == {"lines[0].year": "programme.budget.outside_phase"}


def test_milestones_are_added_ticked_reopened_and_removed(
    client: TestClient, admin: dict[str, str]
) -> None:
    added = client.post(
        f"{API}/items/B/milestones", json={"name": "Nghiệm thu", "due_date": "2026-11-01"},
        headers=admin,
    )  # fmt: skip
    assert added.status_code == 201, added.text
    milestone = added.json()
    assert (milestone["late"], milestone["days_late"]) == (True, 19)
    twice = client.post(
        f"{API}/items/B/milestones", json={"name": "Nghiệm thu", "due_date": "2026-12-01"},
        headers=admin,
    )  # fmt: skip
    assert twice.status_code == 409
    path = f"{API}/items/B/milestones/{milestone['id']}"
    ticked = client.patch(path, json={"done_date": "2026-11-15"}, headers=admin).json()
    assert (ticked["late"], ticked["done_date"]) == (False, "2026-11-15")
    reopened = client.patch(path, json={"done_date": None}, headers=admin).json()
    assert reopened["late"] is True
    other_item = client.patch(f"{API}/items/A/milestones/{milestone['id']}", json={}, headers=admin)
    assert other_item.status_code == 404
    assert client.delete(path, headers=admin).status_code == 204
    assert client.delete(path, headers=admin).status_code == 404


def test_phases_are_listed_created_changed_and_guarded(
    client: TestClient, admin: dict[str, str]
) -> None:
    listed = client.get(f"{API}/phases", headers=admin).json()
    assert [(p["code"], p["planned_recurrent_pct"]) for p in listed["items"]] == [
        ("P1", 40),
        ("P2", 30),
    ]
    created = client.post(
        f"{API}/phases",
        json={"code": "P3", "name": "Giai đoạn 3", "start_year": 2029, "end_year": 2030},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert (created.json()["planned_recurrent_pct"], created.json()["planned_investment_pct"]) == (
        40,
        60,
    )
    split = client.post(
        f"{API}/phases",
        json={
            "code": "P4",
            "name": "x",
            "start_year": 2029,
            "end_year": 2030,
            "planned_recurrent_pct": 50,
        },
        headers=admin,
    )
    assert split.status_code == 422
    # P1 holds items dated 2024–2026: it cannot shrink to 2025–2026, nor be deleted.
    narrowed = client.patch(f"{API}/phases/P1", json={"start_year": 2025}, headers=admin)
    assert narrowed.status_code == 422
    assert "A" in narrowed.json()["detail"]
    assert client.delete(f"{API}/phases/P1", headers=admin).status_code == 409
    resplit = client.patch(
        f"{API}/phases/P1",
        json={"planned_recurrent_pct": 35, "planned_investment_pct": 65},
        headers=admin,
    )
    assert resplit.json()["planned_recurrent_pct"] == 35
    budget = client.get(f"{API}/budget", params={"phase": "P1"}, headers=admin).json()
    assert budget["phases"][0]["total"]["recurrent_variance_pp"] == 7.31  # 42.31 − 35
    assert client.delete(f"{API}/phases/P3", headers=admin).status_code == 204
