"""The demo dossiers: seeded with the profile, deterministic, and different enough between
agencies for the 766 ranking to mean something; the files the generator writes import back."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete

from cityops.core.config import Environment
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.egov import demo, flows, imports, service
from cityops.egov.enums import GroupBy
from cityops.egov.models import Dossier
from cityops.egov.periods import parse_period


def test_the_seeded_profile_has_a_year_of_dossiers_and_a_meaningful_ranking(
    runtime: Runtime,
) -> None:
    with unit_of_work(runtime.session_factory) as session:
        # The test template seeds a small demo (tests/conftest.py): seed the demo's full size.
        assert service.count(session=session) == runtime.settings.egov_demo_dossiers
        session.execute(delete(Dossier))
    with unit_of_work(runtime.session_factory) as session:
        default = demo.seed_demo(runtime=runtime, session=session, size=demo.DEMO_SIZE)
        assert default == {"dossiers": demo.DEMO_SIZE}
        assert service.count(session=session) == demo.DEMO_SIZE
        assert len(service.get_procedure_map(session=session)) == 43
        period = parse_period("2026", runtime.settings.timezone)
        assert period is not None
        table = flows.compute_indicators(
            runtime=runtime, session=session, period=period, group_by=GroupBy.AGENCY
        )
    ranked = [i for i in table.items if i.score.ranked]
    kinds = {i.kind for i in ranked}
    assert kinds == {"department", "commune"}
    assert len(ranked) > 60
    totals = [i.score.total or 0.0 for i in ranked]
    assert statistics.pstdev(totals) > 3  # agencies differ
    assert len({i.score.band.code for i in ranked if i.score.band}) >= 2
    assert [i.score.rank for i in ranked][:3] == [1, 2, 3]
    best, worst = ranked[0].counts, ranked[-1].counts
    assert best.on_time / best.handled > worst.on_time / worst.handled


def test_the_generator_is_deterministic(runtime: Runtime) -> None:
    with unit_of_work(runtime.session_factory) as session:
        world = demo.world_of(runtime, session)
    first = list(demo.generate(world, size=300, seed=1))
    assert first == list(demo.generate(world, size=300, seed=1))
    assert first != list(demo.generate(world, size=300, seed=2))
    assert len({(r["agency_code"], r["code"]) for r in first}) == 300
    assert all(r["received_at"] <= world.as_of for r in first)
    assert all(r["due_at"] > r["received_at"] for r in first)
    assert all(r["completed_at"] is None or r["completed_at"] > r["received_at"] for r in first)


@pytest.mark.usefixtures("no_dossiers")
@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".json"])
def test_generated_files_import_to_the_same_indicators(
    runtime: Runtime, tmp_path: Path, suffix: str, count_dossiers: Callable[[], int]
) -> None:
    with unit_of_work(runtime.session_factory) as session:
        world = demo.world_of(runtime, session)
    rows = list(demo.generate(world, size=400, seed=9))
    path = tmp_path / f"dossiers{suffix}"
    assert demo.write_file(path, rows) == 400
    report = imports.import_file(runtime=runtime, path=path, principal=SYSTEM_PRINCIPAL)
    assert (report.rows, report.imported, report.rejected) == (400, 400, 0), report.errors[:3]
    period = parse_period("2026", runtime.settings.timezone)
    assert period is not None
    with unit_of_work(runtime.session_factory) as session:
        from_file = flows.compute_indicators(
            runtime=runtime, session=session, period=period, group_by=GroupBy.UNIT
        )
        session.execute(delete(Dossier))
        demo.insert(session=session, rows=rows, import_id=None, now=runtime.clock.now())
        direct = flows.compute_indicators(
            runtime=runtime, session=session, period=period, group_by=GroupBy.UNIT
        )
    assert count_dossiers() == 400
    assert [(i.code, i.counts, i.score.total) for i in from_file.items] == [
        (i.code, i.counts, i.score.total) for i in direct.items
    ]


@pytest.mark.usefixtures("no_dossiers")
def test_the_demo_size_is_a_setting_and_production_gets_none(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, count_dossiers: Callable[[], int]
) -> None:
    monkeypatch.setattr(runtime.settings, "env", Environment.PRODUCTION)
    monkeypatch.setattr(runtime.settings, "egov_demo_dossiers", None)
    with unit_of_work(runtime.session_factory) as session:
        assert demo.seed_demo(runtime=runtime, session=session) == {"dossiers": 0}
    monkeypatch.setattr(runtime.settings, "egov_demo_dossiers", 120)
    with unit_of_work(runtime.session_factory) as session:
        assert demo.seed_demo(runtime=runtime, session=session) == {"dossiers": 120}
    with unit_of_work(runtime.session_factory) as session:
        # Once is enough: a second seed adds nothing.
        assert demo.seed_demo(runtime=runtime, session=session) == {"dossiers": 0}
    assert count_dossiers() == 120
