"""Service functions other contexts rely on, and the area and department services."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy.orm import Session

from cityops.core.clock import FrozenClock
from cityops.core.errors import Conflict, Invalid
from cityops.units import service
from cityops.units.schemas import (
    AreaCreate,
    AreaUpdate,
    ContactIn,
    DepartmentCreate,
    DepartmentUpdate,
    UnitUpdate,
)

CLOCK = FrozenClock(datetime(2026, 11, 20, 3, tzinfo=UTC))
BIEN_HOA_WARDS = {
    "Phường Trấn Biên", "Phường Biên Hòa", "Phường Tam Hiệp", "Phường Long Bình",
    "Phường Trảng Dài", "Phường Hố Nai", "Phường Long Hưng", "Phường Tam Phước",
    "Phường Phước Tân", "Phường Tân Triều",
}  # fmt: skip


def test_get_returns_units_of_any_validity(session: Session) -> None:
    ward = service.get(session=session, unit_code="26041")
    assert ward is not None
    assert ward.name == "Phường Trấn Biên"
    legacy = service.get(session=session, unit_code="742")
    assert legacy is not None
    assert legacy.valid_to == date(2025, 6, 30)
    assert service.get(session=session, unit_code="00000") is None


def test_subtree_of_the_province_holds_its_communes_and_its_legacy_districts(
    session: Session,
) -> None:
    codes = service.get_subtree_codes(session=session, unit_code="75")
    assert "75" in codes
    assert "26041" in codes
    assert "731" in codes
    assert "689" not in codes  # a former Bình Phước district hangs under unit 70
    assert len(codes) == 1 + 95 + 11
    assert service.get_subtree_codes(session=session, unit_code="70") >= {"70", "689", "698"}
    assert service.get_subtree_codes(session=session, unit_code="26041") == {"26041"}
    assert service.get_subtree_codes(session=session, unit_code="nope") == frozenset()


def test_pilot_area_bien_hoa_is_exactly_the_wards_formed_from_731(session: Session) -> None:
    codes = service.get_area_unit_codes(session=session, area_code="bien-hoa-cu")
    assert codes is not None
    assert codes == service.get_successor_codes(session=session, legacy_codes=["731"])
    names = {service.get(session=session, unit_code=c).name for c in codes}  # type: ignore[union-attr]
    assert names == BIEN_HOA_WARDS
    long_khanh = service.get_area_unit_codes(session=session, area_code="long-khanh-cu")
    assert long_khanh == service.get_successor_codes(session=session, legacy_codes=["732"])
    assert "26080" in long_khanh
    assert service.get_area_unit_codes(session=session, area_code="missing") is None


def test_get_department(session: Session) -> None:
    health = service.get_department(session=session, department_code="SYT")
    assert health is not None
    assert (health.name, health.name_en, health.sectors) == (
        "Sở Y tế",
        "Department of Health",
        ["health"],
    )
    assert service.get_department(session=session, department_code="SXX") is None


def test_search_without_diacritics_ranks_the_closest_name_first(session: Session) -> None:
    rows, total = service.get_all(session=session, on=date(2026, 1, 1), q="long khanh")
    assert total >= 1
    assert rows[0].name == "Phường Long Khánh"
    rows, _ = service.get_all(session=session, on=date(2026, 1, 1), q="BIÊN HÒA")
    assert "Phường Biên Hòa" in [r.name for r in rows]
    rows, _ = service.get_all(session=session, on=None, q="bien hoa")
    assert {"Phường Biên Hòa", "Thành phố Biên Hòa"} <= {r.name for r in rows}
    rows, total = service.get_all(session=session, on=None, q="100%_")
    assert (rows, total) == ([], 0)


def test_update_merges_contact_and_clears_null_fields(session: Session) -> None:
    unit = service.get(session=session, unit_code="26041")
    assert unit is not None
    service.update(
        session=session,
        unit=unit,
        unit_in=UnitUpdate(contact=ContactIn(phone="0251 3822 000", head_name="Nguyễn Văn A")),
        clock=CLOCK,
    )
    service.update(
        session=session,
        unit=unit,
        unit_in=UnitUpdate.model_validate({"contact": {"head_name": None}, "population": 120000}),
        clock=CLOCK,
    )
    assert unit.contact == {"phone": "0251 3822 000"}
    assert unit.population == 120000


def test_area_lifecycle(session: Session) -> None:
    area = service.create_area(
        session=session,
        area_in=AreaCreate(code="nhon-trach", name="Nhơn Trạch", unit_codes=["26491", "26485"]),
        clock=CLOCK,
    )
    assert area.unit_codes == ["26485", "26491"]
    with pytest.raises(Conflict):
        service.create_area(
            session=session, area_in=AreaCreate(code="nhon-trach", name="Again"), clock=CLOCK
        )
    with pytest.raises(Invalid) as caught:
        service.update_area(
            session=session,
            area=area,
            area_in=AreaUpdate(unit_codes=["26485", "00001", "00002"]),
            clock=CLOCK,
        )
    assert [e["field"] for e in caught.value.errors] == ["unit_codes[1]", "unit_codes[2]"]
    service.update_area(
        session=session, area=area, area_in=AreaUpdate(unit_codes=["26485"]), clock=CLOCK
    )
    assert service.get_area_unit_codes(session=session, area_code="nhon-trach") == {"26485"}
    service.delete_area(session=session, area=area)
    assert service.get_area(session=session, area_code="nhon-trach") is None
    assert service.get(session=session, unit_code="26485") is not None


def test_a_sector_has_one_owner(session: Session) -> None:
    with pytest.raises(Conflict) as caught:
        service.create_department(
            session=session,
            department_in=DepartmentCreate(
                code="SGTVT", name="Sở Giao thông vận tải", sectors=["transport"]
            ),
            clock=CLOCK,
        )
    assert caught.value.params == {"sector": "transport", "department": "SXD"}
    construction = service.get_department(session=session, department_code="SXD")
    assert construction is not None
    service.update_department(
        session=session,
        department=construction,
        department_in=DepartmentUpdate(sectors=["construction"]),
        clock=CLOCK,
    )
    created = service.create_department(
        session=session,
        department_in=DepartmentCreate(
            code="SGTVT", name="Sở Giao thông vận tải", sectors=["transport"]
        ),
        clock=CLOCK,
    )
    assert created.sectors == ["transport"]
    owner = service.get_department_by_sector(session=session, sector="transport")
    assert owner is not None
    assert owner.code == "SGTVT"


def test_province_and_lineage_map(session: Session) -> None:
    province = service.get_province(session=session)
    assert province is not None
    assert (province.code, province.name) == ("75", "Thành phố Đồng Nai")
    lineage = service.get_lineage_map(session=session)
    assert len(lineage) == 95
    assert lineage["26041"] == ["731"]
    assert lineage["25220"] == ["688", "698"]
