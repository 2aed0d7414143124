"""Catalogue placement, back-fill into a real database (resumable), and provisioning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from cityops.context.models import History
from cityops.core.runtime import Runtime
from cityops.ingest import service as ingest_service
from cityops.simulate import flows
from cityops.simulate.catalog import build_catalog
from cityops.simulate.generators import observe
from cityops.units import service as unit_service

SEED = 11
START = datetime(2026, 11, 19, 0, tzinfo=UTC)
END = START + timedelta(hours=4)


def _history_rows(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return int(session.execute(select(func.count()).select_from(History)).scalar_one())


def test_every_asset_lies_in_its_commune_or_ward(runtime: Runtime) -> None:
    with runtime.session_factory() as session:
        locator = unit_service.get_locator(session=session, caches=runtime.caches)
    for rate in (1, 3):
        misplaced = [
            (a.slug, a.unit_code, locator.locate(a.lat, a.lon))
            for a in build_catalog(rate)
            if locator.locate(a.lat, a.lon) != a.unit_code
        ]
        assert misplaced == []


def test_ids_are_stable_and_names_vietnamese() -> None:
    assets = build_catalog(2)
    ids = [a.entity_id for a in assets]
    assert len(ids) == len(set(ids))
    assert "urn:ngsi-ld:AirQualityObserved:dn-aq-bien-hoa-trung-tam" in ids
    assert len(build_catalog(2)) > len(build_catalog(1))
    assert all(a.name and a.device_id.startswith("dn-") for a in assets)


def test_backfill_writes_the_expected_history_and_a_rerun_adds_none(runtime: Runtime) -> None:
    assets = [a for a in build_catalog(1) if a.kind in ("air", "traffic", "river_level", "school")]
    times = [START + timedelta(hours=h) for h in range(4)]
    expected = sum(
        len(values) for t in times for a in assets if (values := observe(a, t, SEED)) is not None
    )
    before = _history_rows(runtime)
    first = flows.backfill(runtime=runtime, assets=assets, seed=SEED, start=START, end=END)
    static_rows = _history_rows(runtime) - before - first.rows
    assert first.rows == expected
    assert first.steps == 4
    # Static entities (name, location, fixed attributes) were written once, before the history.
    assert static_rows > 0
    total = _history_rows(runtime)
    second = flows.backfill(runtime=runtime, assets=assets, seed=SEED, start=START, end=END)
    assert second.rows == 0
    assert _history_rows(runtime) == total
    # Extending the window writes only the new steps.
    third = flows.backfill(
        runtime=runtime, assets=assets, seed=SEED, start=START, end=END + timedelta(hours=1)
    )
    at = END
    assert third.rows == sum(len(v) for a in assets if (v := observe(a, at, SEED)) is not None)


def test_provision_creates_devices_once_and_keeps_their_keys(runtime: Runtime) -> None:
    assets = build_catalog(1)[:6]
    counts = flows.provision(runtime=runtime, assets=assets, tenant="default")
    assert counts["devices_created"] == 6
    keys = flows.load_keys(runtime, "default")
    assert set(keys) == {a.device_id for a in assets}
    assert flows.is_provisioned(runtime=runtime, assets=assets, tenant="default")
    again = flows.provision(runtime=runtime, assets=assets, tenant="default")
    assert again["devices_created"] == 0
    assert again["devices_rekeyed"] == 0
    with runtime.session_factory() as session:
        device = ingest_service.get_by_device_id(
            session=session, tenant="default", device_id=assets[0].device_id
        )
        assert device is not None
        assert ingest_service.key_matches(device=device, key=keys[assets[0].device_id])
