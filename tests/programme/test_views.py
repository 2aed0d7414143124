"""The board's views on a small programme worked out by hand, judged on 2026-11-20."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock

from .conftest import API, BN

pytestmark = pytest.mark.usefixtures("known")


@pytest.fixture
def leader(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a province leader."""
    return login_as("leader")


def get(client: TestClient, headers: dict[str, str], path: str, **params: Any) -> Any:
    response = client.get(f"{API}{path}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_matrix_names_owner_and_supporting_departments_and_unit_counts(
    client: TestClient, leader: dict[str, str]
) -> None:
    data = get(client, leader, "/matrix")
    cells = {(c["department_code"], c["item_code"]): c["role"] for c in data["cells"]}
    assert cells == {
        ("SYT", "A"): "owner",
        ("SKHCN", "A"): "supporting",
        ("SNV", "A"): "supporting",
        ("SKHCN", "B"): "owner",
        ("SYT", "B"): "supporting",
        ("SKHCN", "C"): "owner",
        ("SXD", "D"): "owner",
        ("SXD", "E"): "owner",
    }
    departments = {d["code"]: (d["owned"], d["supporting"]) for d in data["departments"]}
    assert departments["SYT"] == (1, 1)
    assert departments["SKHCN"] == (2, 1)
    assert departments["SNV"] == (0, 1)
    assert departments["SXD"] == (2, 0)
    assert departments["CAT"] == (0, 0)  # every department is a row, involved or not
    units = {i["code"]: i["unit_count"] for i in data["items"]}
    assert units == {"A": 2, "B": 1, "C": 0, "D": 0, "E": 0}
    only_p2 = get(client, leader, "/matrix", phase="P2")
    assert [i["code"] for i in only_p2["items"]] == ["D", "E"]
    assert {c["item_code"] for c in only_p2["cells"]} == {"D", "E"}


def test_budget_split_shares_variance_and_disbursement_by_hand(
    client: TestClient, leader: dict[str, str]
) -> None:
    data = get(client, leader, "/budget")
    p1 = next(p for p in data["phases"] if p["code"] == "P1")
    total = p1["total"]
    # P1: recurrent 400 + 100 + 600 = 1,100 bn; investment 600 + 900 = 1,500 bn.
    assert (total["allocated_recurrent"], total["allocated_investment"]) == (1100 * BN, 1500 * BN)
    assert total["allocated_total"] == 2600 * BN
    assert total["recurrent_share_pct"] == 42.31  # 1,100 / 2,600
    assert total["investment_share_pct"] == 57.69
    assert (total["planned_recurrent_pct"], total["planned_investment_pct"]) == (40, 60)
    assert total["recurrent_variance_pp"] == 2.31
    assert total["investment_variance_pp"] == -2.31
    # Disbursed: recurrent 400 + 150 + 600 = 1,150; investment 500 + 450 = 950.
    assert (total["disbursed_recurrent"], total["disbursed_investment"]) == (1150 * BN, 950 * BN)
    assert total["disbursement_rate_pct"] == 80.77  # 2,100 / 2,600
    assert total["investment_disbursement_rate_pct"] == 63.33  # 950 / 1,500
    years = {y["year"]: y for y in p1["years"]}
    assert sorted(years) == [2024, 2025, 2026]
    assert years[2024]["recurrent_share_pct"] == 40.0
    assert years[2024]["recurrent_variance_pp"] == 0.0
    assert years[2024]["disbursement_rate_pct"] == 90.0
    assert years[2025]["recurrent_share_pct"] == 10.0
    assert years[2025]["recurrent_variance_pp"] == -30.0
    assert years[2026]["investment_share_pct"] == 0.0
    p2 = next(p for p in data["phases"] if p["code"] == "P2")["total"]
    assert (p2["recurrent_share_pct"], p2["planned_recurrent_pct"]) == (30.0, 30.0)
    assert p2["recurrent_variance_pp"] == 0.0
    assert p2["disbursement_rate_pct"] == 0.0
    overall = data["overall"]
    assert overall["allocated_total"] == 3600 * BN
    assert overall["recurrent_share_pct"] == 38.89  # 1,400 / 3,600
    # The plan overall weighs each phase's plan by its allocation: (40·2,600 + 30·1,000) / 3,600.
    assert overall["planned_recurrent_pct"] == 37.22
    assert overall["recurrent_variance_pp"] == 1.67
    assert data["warnings"] == [
        {
            "item_code": "A",
            "year": 2025,
            "source": "recurrent",
            "allocated": 100 * BN,
            "disbursed": 150 * BN,
        }
    ]


def test_budget_split_filters_by_sector_and_owner(
    client: TestClient, leader: dict[str, str]
) -> None:
    egov = get(client, leader, "/budget", sector="egov")["overall"]
    assert egov["allocated_total"] == 1500 * BN  # B 900 + C 600
    assert egov["recurrent_share_pct"] == 40.0
    health = get(client, leader, "/budget", department="SYT")["overall"]
    assert health["allocated_total"] == 1100 * BN
    nothing = get(client, leader, "/budget", department="CAT")
    assert nothing["overall"]["recurrent_share_pct"] is None
    assert nothing["overall"]["planned_recurrent_pct"] is None  # two phases, two plans, no money


def test_late_items_with_days_late_on_the_clock_date(
    client: TestClient,
    leader: dict[str, str],
    clock: FrozenClock,
    login_as: Callable[..., dict[str, str]],
) -> None:
    data = get(client, leader, "/late")
    assert data["as_of"] == "2026-11-20"
    assert [(i["code"], i["days_late"]) for i in data["items"]] == [("B", 143), ("A", 50)]
    b = data["items"][0]
    assert [(m["name"], m["days_late"]) for m in b["milestones"]] == [
        ("Kết nối NDXP", 143),
        ("Kết nối sở, ngành", 51),
    ]
    # Done (C) and cancelled (D) items are not late, whatever their milestones say.
    clock.advance(timedelta(days=45))
    leader = login_as("leader")  # the old token has expired meanwhile
    later = get(client, leader, "/late")
    assert later["as_of"] == "2027-01-04"
    assert [(i["code"], i["days_late"]) for i in later["items"]] == [("B", 188), ("A", 95)]
    a = later["items"][1]
    assert [m["name"] for m in a["milestones"]] == ["Bảng điều hành", "Vận hành"]
    earlier = get(client, leader, "/late", as_of="2026-07-01")
    assert [(i["code"], i["days_late"]) for i in earlier["items"]] == [("B", 1)]


def test_late_filter_and_item_flags_follow_the_milestones(
    client: TestClient, leader: dict[str, str]
) -> None:
    late = get(client, leader, "/items", late="true")
    assert [(i["code"], i["days_late"]) for i in late["items"]] == [("A", 50), ("B", 143)]
    on_time = get(client, leader, "/items", late="false")
    assert [i["code"] for i in on_time["items"]] == ["C", "D", "E"]
    assert all(not i["late"] and i["days_late"] is None for i in on_time["items"])
    item = get(client, leader, "/items/A")
    assert item["allocated"] == 1100 * BN
    assert item["disbursed"] == 1050 * BN
    flags = {m["name"]: (m["late"], m["days_late"]) for m in item["milestones"]}
    assert flags == {
        "Bảng điều hành": (True, 50),
        "Kết nối bệnh viện": (False, None),
        "Vận hành": (False, None),
    }
    over = [line for line in item["budget"] if line["over_disbursed"]]
    assert [(line["year"], line["source"]) for line in over] == [(2025, "recurrent")]


def test_progress_per_sector_and_department(client: TestClient, leader: dict[str, str]) -> None:
    data = get(client, leader, "/progress", by="sector")
    groups = {g["key"]: g for g in data["groups"]}
    assert sorted(groups) == ["egov", "health", "transport"]
    egov = groups["egov"]
    assert (egov["items"], egov["done"], egov["delayed"], egov["late"]) == (2, 1, 1, 1)
    assert egov["mean_progress"] == 65.0  # (30 + 100) / 2
    assert egov["weighted_progress"] == 58.0  # (30·900 + 100·600) / 1,500
    assert egov["allocated"] == 1500 * BN
    transport = groups["transport"]
    assert (transport["cancelled"], transport["planned"], transport["late"]) == (1, 1, 0)
    assert transport["weighted_progress"] == 0.0
    by_department = get(client, leader, "/progress", by="department")
    departments = {g["key"]: g for g in by_department["groups"]}
    assert departments["SKHCN"]["name"] == "Sở Khoa học và Công nghệ"
    assert departments["SYT"]["late"] == 1


def test_roadmap_groups_items_by_phase_and_sector_with_milestones(
    client: TestClient, leader: dict[str, str]
) -> None:
    data = get(client, leader, "/roadmap")
    assert [p["code"] for p in data["phases"]] == ["P1", "P2"]
    p1 = data["phases"][0]
    assert (p1["start_date"], p1["end_date"]) == ("2024-01-01", "2026-12-31")
    sectors = {s["sector"]: [i["code"] for i in s["items"]] for s in p1["sectors"]}
    assert sectors == {"egov": ["B", "C"], "health": ["A"]}
    a = p1["sectors"][1]["items"][0]
    assert (a["start_date"], a["end_date"], a["late"], a["days_late"]) == (
        "2024-01-01",
        "2026-12-31",
        True,
        50,
    )
    assert [m["due_date"] for m in a["milestones"]] == ["2026-10-01", "2026-11-19", "2026-12-31"]
    owned = get(client, leader, "/roadmap", department="SYT")
    codes = [i["code"] for p in owned["phases"] for s in p["sectors"] for i in s["items"]]
    assert codes == ["B", "A"]  # supports B, owns A (by sector: egov before health)


def test_items_list_filters(client: TestClient, leader: dict[str, str]) -> None:
    def codes(**params: Any) -> list[str]:
        return [i["code"] for i in get(client, leader, "/items", **params)["items"]]

    assert codes() == ["A", "B", "C", "D", "E"]
    assert codes(phase="P2") == ["D", "E"]
    assert codes(sector="egov") == ["B", "C"]
    assert codes(department="SYT") == ["A", "B"]
    assert codes(owner="SYT") == ["A"]
    assert codes(status="done") == ["C"]
    page = get(client, leader, "/items", limit=2, offset=2)
    assert (page["total"], [i["code"] for i in page["items"]]) == (5, ["C", "D"])
