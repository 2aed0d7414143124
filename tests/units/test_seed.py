"""Seeding the Đồng Nai profile: the units a user expects, their history and idempotency."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from importlib import resources

import pytest
import shapely
from shapely.geometry import Point, shape
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from cityops.core.clock import FrozenClock
from cityops.core.db import Base
from cityops.core.text import fold
from cityops.registry import import_models
from cityops.units import flows, service
from cityops.units.models import AdminUnit, Area, Department, DepartmentSector, UnitLineage
from cityops.units.profile import load_profile

REFORM_DAY = date(2025, 7, 1)


def _csv(name: str) -> list[dict[str, str]]:
    text = (resources.files("cityops") / "profiles" / "dongnai" / name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def _current_communes(session: Session) -> list[AdminUnit]:
    return list(
        session.scalars(
            select(AdminUnit).where(
                AdminUnit.level == "commune", service.valid_on(date(2026, 1, 1))
            )
        )
    )


def test_95_current_communes_and_wards_with_vietnamese_names(session: Session) -> None:
    communes = _current_communes(session)
    assert len(communes) == 95
    types = [u.unit_type for u in communes]
    assert types.count("phuong") == 23
    assert types.count("xa") == 72
    by_code = {u.code: u for u in communes}
    assert by_code["26041"].name == "Phường Trấn Biên"
    assert by_code["26080"].name == "Phường Long Khánh"
    assert by_code["26170"].name == "Xã Trị An"
    assert all(u.parent_code == "75" and u.valid_from == REFORM_DAY for u in communes)
    assert all(u.valid_to is None for u in communes)
    assert {u.code: u.name for u in communes} == {
        r["code"]: r["name"] for r in _csv("communes_2025.csv")
    }


def test_22_legacy_districts_are_kept_as_history(session: Session) -> None:
    legacy = list(session.scalars(select(AdminUnit).where(AdminUnit.level == "district")))
    assert len(legacy) == 22
    assert all(u.valid_to == date(2025, 6, 30) for u in legacy)
    parents = sorted(u.parent_code or "" for u in legacy)
    assert parents.count("75") == 11
    assert parents.count("70") == 11
    binh_phuoc = service.get(session=session, unit_code="70")
    assert binh_phuoc is not None
    assert binh_phuoc.name == "Tỉnh Bình Phước"
    assert binh_phuoc.valid_to == date(2025, 6, 30)
    bien_hoa = service.get(session=session, unit_code="731")
    assert bien_hoa is not None
    assert (bien_hoa.name, bien_hoa.unit_type) == ("Thành phố Biên Hòa", "thanh_pho")


def test_every_former_district_name_maps_to_a_legacy_code(session: Session) -> None:
    rows = _csv("communes_2025.csv")
    expected = sum(len(r["former_districts"].split(";")) for r in rows)
    profile = load_profile("dongnai")
    assert len(profile.communes) == 95
    assert all(commune.formed_from for commune in profile.communes)
    by_code = {c.code: c for c in profile.communes}
    assert by_code["25220"].formed_from == ("698", "688")  # H. Phú Riềng;TX Phước Long
    assert session.scalar(select(func.count()).select_from(UnitLineage)) == expected
    legacy_codes = {r["code"] for r in _csv("districts_pre2025.csv")}
    lineage_legacy = set(session.scalars(select(UnitLineage.legacy_code)))
    assert lineage_legacy == legacy_codes  # every legacy district has successors


def test_province_name_and_type_follow_the_dated_profile() -> None:
    import_models()
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    clock = FrozenClock(datetime(2025, 8, 1, 3, tzinfo=UTC))
    with Session(engine) as session:
        flows.seed_profile(session=session, profile="dongnai", clock=clock)
        province = service.get(session=session, unit_code="75")
        assert province is not None
        assert (province.name, province.unit_type) == ("Tỉnh Đồng Nai", "tinh")
        clock.set(datetime(2026, 9, 20, 1, tzinfo=UTC))
        counts = flows.seed_profile(session=session, profile="dongnai", clock=clock)
        assert counts["units_updated"] == 1
        assert (province.name, province.unit_type) == ("Thành phố Đồng Nai", "thanh_pho_tw")
        assert province.name_folded == "thanh pho dong nai"
    engine.dispose()


def test_seeding_again_changes_nothing(session: Session) -> None:
    before = {
        model.__tablename__: session.scalar(select(func.count()).select_from(model))
        for model in (AdminUnit, UnitLineage, Area, Department, DepartmentSector)
    }
    province = service.get(session=session, unit_code="75")
    assert province is not None
    clock = FrozenClock(datetime(2026, 11, 20, 3, tzinfo=UTC))
    counts = flows.seed_profile(session=session, profile="dongnai", clock=clock)
    assert set(counts.values()) == {0}
    after = {
        model.__tablename__: session.scalar(select(func.count()).select_from(model))
        for model in (AdminUnit, UnitLineage, Area, Department, DepartmentSector)
    }
    assert after == before
    assert not session.dirty


def test_demo_boundaries_contain_their_centroids_and_tile_the_province(session: Session) -> None:
    communes = _current_communes(session)
    cells = {u.code: shape(u.geometry) for u in communes}
    assert all(u.boundary_source == "demo" for u in communes)
    for unit in communes:
        assert cells[unit.code].is_valid
        assert cells[unit.code].contains(Point(unit.lon, unit.lat)), unit.code
        assert unit.bbox == pytest.approx(list(cells[unit.code].bounds))
    province = service.get(session=session, unit_code="75")
    assert province is not None
    outline = shape(province.geometry)
    union = shapely.union_all(list(cells.values()))
    assert union.symmetric_difference(outline).area < 1e-6
    # The outline is about the size of the real province (12,737 km²).
    assert 10_000 < outline.area * 110.6 * 108.6 < 15_000


def test_legacy_district_boundary_is_the_union_of_its_successors(session: Session) -> None:
    bien_hoa = service.get(session=session, unit_code="731")
    assert bien_hoa is not None
    successors = service.get_successor_codes(session=session, legacy_codes=["731"])
    parts = [shape(service.get(session=session, unit_code=c).geometry) for c in successors]  # type: ignore[union-attr]
    assert shape(bien_hoa.geometry).symmetric_difference(shapely.union_all(parts)).area < 1e-6


def test_departments_and_sectors_follow_the_2025_reorganisation(session: Session) -> None:
    construction = service.get_department(session=session, department_code="SXD")
    assert construction is not None
    assert construction.name == "Sở Xây dựng"
    assert construction.sectors == ["construction", "transport"]
    owner = service.get_department_by_sector(session=session, sector="social_security")
    assert owner is not None
    assert owner.code == "SNV"
    environment = service.get_department_by_sector(session=session, sector="environment")
    assert environment is not None
    assert environment.name == "Sở Nông nghiệp và Môi trường"
    sectors = set(session.scalars(select(DepartmentSector.sector)))
    assert sectors == {
        "health", "education", "transport", "environment", "construction", "social_security",
        "public_order", "home_affairs", "egov", "finance", "industry_trade", "culture_tourism",
        "agriculture",
    }  # fmt: skip


def test_unit_names_fold_for_search(session: Session) -> None:
    unit = service.get(session=session, unit_code="26068")
    assert unit is not None
    assert unit.name_folded == fold("Phường Biên Hòa") == "phuong bien hoa"
