"""The Đồng Nai profile's demonstration programme: loaded by the seed through the import,
non-empty views, a split near but not at 40/60, late milestones in late 2026, and a second
seed that changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.programme import flows
from cityops.programme.models import ProgrammeBudget, ProgrammeItem, ProgrammeMilestone

from .conftest import API


def test_the_seeded_programme_is_there_with_a_visible_variance(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    leader = login_as("leader")
    items = client.get(f"{API}/items", params={"limit": 500}, headers=leader).json()
    assert 25 <= items["total"] <= 35
    assert {i["phase_code"] for i in items["items"]} == {"2022-2025", "2026-2030"}
    sectors = {i["sector"] for i in items["items"]}
    assert {"health", "education", "transport", "environment", "construction"} <= sectors
    assert {"social_security", "public_order", "egov"} <= sectors
    for item in items["items"]:
        assert (item["status"] == "done") == (item["progress"] == 100), item["code"]
        if item["status"] == "planned":
            assert item["progress"] == 0
    budget = client.get(f"{API}/budget", headers=leader).json()
    assert budget["overall"]["allocated_total"] > 1_000 * 1_000_000_000  # thousands of billions
    for phase in budget["phases"]:
        variance = phase["total"]["recurrent_variance_pp"]
        assert variance is not None
        assert 0.5 <= abs(variance) <= 5, phase["code"]  # close to 40/60, not exactly
    assert budget["warnings"]  # a carried-over line is flagged
    late = client.get(f"{API}/late", headers=leader).json()
    assert len(late["items"]) >= 4
    codes = {i["code"] for i in late["items"]}
    assert "DN22-04" in codes  # the Long Khánh pilot
    matrix = client.get(f"{API}/matrix", headers=leader).json()
    assert next(d for d in matrix["departments"] if d["code"] == "SKHCN")["owned"] >= 10


def test_seeding_again_changes_nothing(runtime: Runtime, admin: dict[str, str]) -> None:
    def counts() -> tuple[Any, ...]:
        with runtime.session_factory() as session:
            return tuple(
                session.scalar(select(func.count()).select_from(m))
                for m in (ProgrammeItem, ProgrammeBudget, ProgrammeMilestone)
            )

    before = counts()
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        item = session.scalars(select(ProgrammeItem).where(ProgrammeItem.code == "DN26-03")).one()
        item.progress = 45  # a department reported progress since the first seed
        result = flows.seed_profile(session=session, profile="dongnai", clock=runtime.clock)
    assert set(result.values()) == {0}
    assert counts() == before
    with runtime.session_factory() as session:
        progress = session.scalar(
            select(ProgrammeItem.progress).where(ProgrammeItem.code == "DN26-03")
        )
    assert progress == 45
