"""Database work of the units context: units, lineage, areas, departments, point lookup.

Services flush, never commit; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session, undefer

from cityops.core import refcache
from cityops.core.clock import Clock
from cityops.core.errors import Conflict, Invalid, NotFound
from cityops.core.text import fold
from cityops.units import geometry as geo
from cityops.units.models import (
    AdminUnit,
    Area,
    AreaMember,
    Department,
    DepartmentSector,
    UnitLineage,
)
from cityops.units.schemas import (
    AreaCreate,
    AreaUpdate,
    ContactIn,
    DepartmentCreate,
    DepartmentUpdate,
    UnitUpdate,
)

LOCATOR_CACHE_KEY = "units.locator"
# The level whose units tile the province and answer point lookups.
LOCATE_LEVEL = "commune"


# --- units -----------------------------------------------------------------------------------


def get(*, session: Session, unit_code: str) -> AdminUnit | None:
    """Return a unit by code (any validity), or None."""
    return session.get(AdminUnit, unit_code)


def get_or_raise(*, session: Session, unit_code: str) -> AdminUnit:
    """Return a unit by code, or raise 404."""
    unit = get(session=session, unit_code=unit_code)
    if unit is None:
        raise NotFound("units.unit.not_found", code=unit_code)
    return unit


def get_province(*, session: Session) -> AdminUnit | None:
    """Return the current top-level unit (the province, or centrally governed city), if seeded."""
    return session.scalars(
        select(AdminUnit)
        .where(
            AdminUnit.level == "province",
            AdminUnit.parent_code.is_(None),
            AdminUnit.valid_to.is_(None),
        )
        .order_by(AdminUnit.code)
        .limit(1)
    ).first()


def valid_on(on: date) -> ColumnElement[bool]:
    """A SQL condition keeping units valid on a date."""
    return and_(
        or_(AdminUnit.valid_from.is_(None), AdminUnit.valid_from <= on),
        or_(AdminUnit.valid_to.is_(None), AdminUnit.valid_to >= on),
    )


def get_subtree_codes(*, session: Session, unit_code: str) -> frozenset[str]:
    """Return the unit and all its descendants (any validity); empty if the unit is unknown."""
    if get(session=session, unit_code=unit_code) is None:
        return frozenset()
    children: dict[str, list[str]] = {}
    for code, parent in session.execute(
        select(AdminUnit.code, AdminUnit.parent_code).where(AdminUnit.parent_code.is_not(None))
    ):
        children.setdefault(str(parent), []).append(code)
    found = {unit_code}
    stack = [unit_code]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return frozenset(found)


def get_all(
    *,
    session: Session,
    on: date | None = None,
    unit_type: str | None = None,
    level: str | None = None,
    parent_code: str | None = None,
    q: str | None = None,
    area_code: str | None = None,
    limit: int = 100,
    offset: int = 0,
    with_geometry: bool = False,
) -> tuple[list[AdminUnit], int]:
    """Return one page of units matching the filters and how many match in all.

    `on` keeps units valid on that date (None: every unit, current and historical). `q` matches
    the code, or the name with or without diacritics; closer matches come first.
    """
    conditions: list[ColumnElement[bool]] = []
    if on is not None:
        conditions.append(valid_on(on))
    if unit_type:
        conditions.append(AdminUnit.unit_type == unit_type)
    if level:
        conditions.append(AdminUnit.level == level)
    if parent_code:
        conditions.append(AdminUnit.parent_code == parent_code)
    if area_code:
        members = select(AreaMember.unit_code).where(AreaMember.area_code == area_code)
        conditions.append(AdminUnit.code.in_(members))
    order: list[Any] = []
    folded = fold(q or "")
    if folded:
        conditions.append(
            or_(
                AdminUnit.name_folded.contains(folded, autoescape=True),
                AdminUnit.code == (q or "").strip(),
            )
        )
        # Exact name, then name ending with the words typed ("long khanh" → "phuong long khanh").
        order.append(
            case(
                (AdminUnit.name_folded == folded, 0),
                (AdminUnit.name_folded.endswith(" " + folded, autoescape=True), 1),
                (AdminUnit.name_folded.startswith(folded, autoescape=True), 2),
                else_=3,
            )
        )
    level_rank = case(
        (AdminUnit.level == "province", 0), (AdminUnit.level == "district", 1), else_=2
    )
    order.extend([level_rank, AdminUnit.code])
    # One round trip: the window count rides along with the page (search is a hot path).
    query = (
        select(AdminUnit, func.count().over())
        .where(*conditions)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    )
    if with_geometry:
        query = query.options(undefer(AdminUnit.geometry))
    rows = session.execute(query).all()
    if rows:
        return [row[0] for row in rows], int(rows[0][1])
    if offset == 0:
        return [], 0
    total = session.scalar(select(func.count()).select_from(AdminUnit).where(*conditions)) or 0
    return [], total


def get_lineage(*, session: Session, unit_code: str) -> tuple[list[AdminUnit], list[AdminUnit]]:
    """Return (the legacy units this unit was formed from, the units that succeeded it)."""
    formed_from = session.scalars(
        select(AdminUnit)
        .join(UnitLineage, UnitLineage.legacy_code == AdminUnit.code)
        .where(UnitLineage.unit_code == unit_code)
        .order_by(AdminUnit.code)
    ).all()
    succeeded_by = session.scalars(
        select(AdminUnit)
        .join(UnitLineage, UnitLineage.unit_code == AdminUnit.code)
        .where(UnitLineage.legacy_code == unit_code)
        .order_by(AdminUnit.code)
    ).all()
    return list(formed_from), list(succeeded_by)


def get_lineage_map(*, session: Session) -> dict[str, list[str]]:
    """Return, for every unit formed from legacy units, the sorted legacy codes."""
    out: dict[str, list[str]] = {}
    rows = session.execute(
        select(UnitLineage.unit_code, UnitLineage.legacy_code).order_by(
            UnitLineage.unit_code, UnitLineage.legacy_code
        )
    )
    for unit_code, legacy_code in rows:
        out.setdefault(unit_code, []).append(legacy_code)
    return out


def get_successor_codes(*, session: Session, legacy_codes: Sequence[str]) -> frozenset[str]:
    """Return the codes of the units formed (wholly or partly) from any of the legacy units."""
    if not legacy_codes:
        return frozenset()
    rows = session.scalars(
        select(UnitLineage.unit_code).where(UnitLineage.legacy_code.in_(list(legacy_codes)))
    )
    return frozenset(rows)


def get_unit_areas(*, session: Session, unit_code: str) -> list[Area]:
    """Return the areas a unit belongs to."""
    rows = session.scalars(
        select(Area)
        .join(AreaMember, AreaMember.area_code == Area.code)
        .where(AreaMember.unit_code == unit_code)
        .order_by(Area.code)
    ).all()
    return list(rows)


def _merge_contact(current: dict[str, Any] | None, contact_in: ContactIn) -> dict[str, Any]:
    merged = dict(current or {})
    for key, value in contact_in.model_dump(exclude_unset=True).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def update(*, session: Session, unit: AdminUnit, unit_in: UnitUpdate, clock: Clock) -> AdminUnit:
    """Update a unit's editable fields (English name, population, contact)."""
    data = unit_in.model_dump(exclude_unset=True, exclude={"contact"})
    for field, value in data.items():
        setattr(unit, field, value)
    if unit_in.contact is not None:
        # A new dict, so the change is seen (JSON columns do not track in-place mutation).
        unit.contact = _merge_contact(unit.contact, unit_in.contact)
    unit.updated_at = clock.now()
    session.flush()
    return unit


def set_geometry(
    *, session: Session, unit: AdminUnit, geometry: Any, source: str, clock: Clock
) -> None:
    """Replace a unit's boundary (a shapely geometry) and its bounding box."""
    unit.geometry = geo.to_geojson(geometry)
    unit.min_lon, unit.min_lat, unit.max_lon, unit.max_lat = geo.bbox_of(geometry)
    unit.boundary_source = source
    unit.boundary_version = (unit.boundary_version or 0) + 1
    now = clock.now()
    unit.boundary_updated_at = now
    unit.updated_at = now


# --- point lookup ----------------------------------------------------------------------------


def _locatable(on: date | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        AdminUnit.level == LOCATE_LEVEL,
        AdminUnit.geometry.is_not(None),
    ]
    # Without a date, "current" means open-ended: no end of validity recorded.
    conditions.append(valid_on(on) if on is not None else AdminUnit.valid_to.is_(None))
    return conditions


def boundary_revision(*, session: Session, on: date | None = None) -> str:
    """Return a token that changes whenever the boundaries used for point lookup change."""
    count, versions = session.execute(
        select(func.count(), func.sum(AdminUnit.boundary_version)).where(*_locatable(on))
    ).one()
    return f"{on.isoformat() if on else 'open'}|{count}|{versions or 0}"


def build_locator(*, session: Session, on: date | None = None) -> geo.Locator:
    """Build a point locator over the current commune-level units' boundaries."""
    rows = session.execute(
        select(AdminUnit.code, AdminUnit.geometry).where(*_locatable(on)).order_by(AdminUnit.code)
    ).all()
    return geo.Locator([code for code, _ in rows], [geo.from_geojson(g) for _, g in rows])


def get_locator(
    *, session: Session, caches: MutableMapping[str, Any] | None = None, on: date | None = None
) -> geo.Locator:
    """Return the point locator, rebuilt only when the boundaries changed since it was cached."""
    reference = caches.get(refcache.CACHES_KEY) if caches is not None else None
    if reference is not None and on is None:
        # Current boundaries: kept until the unit table changes (or, for another process's
        # change, the reference cache's age), without asking the database each time.
        located: geo.Locator = reference.get(
            session,
            LOCATOR_CACHE_KEY,
            ("admin_unit",),
            lambda: build_locator(session=session),
            lambda: boundary_revision(session=session),
        )
        return located
    revision = boundary_revision(session=session, on=on)
    if caches is not None:
        cached = caches.get(LOCATOR_CACHE_KEY)
        if cached is not None and cached[0] == revision:
            locator: geo.Locator = cached[1]
            return locator
    locator = build_locator(session=session, on=on)
    if caches is not None:
        caches[LOCATOR_CACHE_KEY] = (revision, locator)
    return locator


def locate(
    *,
    session: Session,
    lat: float,
    lon: float,
    caches: MutableMapping[str, Any] | None = None,
    on: date | None = None,
) -> AdminUnit | None:
    """Return the current commune-level unit containing a point, or None outside the province.

    Pass `caches` (the runtime's) so the grid index is built once per boundary revision;
    without it every call builds the index afresh (fine for a one-off, not for a hot path).
    """
    code = locate_code(session=session, lat=lat, lon=lon, caches=caches, on=on)
    return None if code is None else get(session=session, unit_code=code)


def locate_code(
    *,
    session: Session,
    lat: float,
    lon: float,
    caches: MutableMapping[str, Any] | None = None,
    on: date | None = None,
) -> str | None:
    """Return the code of the current commune-level unit containing a point (`locate` without
    loading the unit: the hot paths only route by code)."""
    return get_locator(session=session, caches=caches, on=on).locate(lat, lon)


def get_unit_codes(*, session: Session) -> frozenset[str]:
    """Return the code of every unit, current or not."""
    return frozenset(session.scalars(select(AdminUnit.code)))


def unit_exists(
    *, session: Session, unit_code: str, caches: MutableMapping[str, Any] | None = None
) -> bool:
    """Whether a unit code is known (any validity), from the reference cache when given."""
    reference = caches.get(refcache.CACHES_KEY) if caches is not None else None
    if reference is None:
        return get(session=session, unit_code=unit_code) is not None
    codes: frozenset[str] = reference.get(
        session, "units:codes", ("admin_unit",), lambda: get_unit_codes(session=session)
    )
    return unit_code in codes


# --- areas -----------------------------------------------------------------------------------


def get_area(*, session: Session, area_code: str) -> Area | None:
    """Return an area by code, or None."""
    return session.get(Area, area_code)


def get_area_or_raise(*, session: Session, area_code: str) -> Area:
    """Return an area by code, or raise 404."""
    area = get_area(session=session, area_code=area_code)
    if area is None:
        raise NotFound("units.area.not_found", code=area_code)
    return area


def get_area_unit_codes(*, session: Session, area_code: str) -> frozenset[str] | None:
    """Return the codes of an area's member units, or None if there is no such area."""
    if get_area(session=session, area_code=area_code) is None:
        return None
    rows = session.scalars(select(AreaMember.unit_code).where(AreaMember.area_code == area_code))
    return frozenset(rows)


def get_area_units(*, session: Session, area_code: str) -> list[AdminUnit]:
    """Return an area's member units, ordered by code."""
    rows = session.scalars(
        select(AdminUnit)
        .join(AreaMember, AreaMember.unit_code == AdminUnit.code)
        .where(AreaMember.area_code == area_code)
        .order_by(AdminUnit.code)
    ).all()
    return list(rows)


def get_all_areas(
    *,
    session: Session,
    q: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Area], int]:
    """Return one page of areas (optionally by kind, or by name with or without diacritics)."""
    conditions: list[ColumnElement[bool]] = []
    folded = fold(q or "")
    if folded:
        conditions.append(
            or_(
                Area.name_folded.contains(folded, autoescape=True),
                Area.code == (q or "").strip(),
            )
        )
    if kind:
        conditions.append(Area.kind == kind)
    total = session.scalar(select(func.count()).select_from(Area).where(*conditions)) or 0
    rows = session.scalars(
        select(Area).where(*conditions).order_by(Area.code).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def field_error(field: str, key: str, /, **params: Any) -> dict[str, Any]:
    """Describe one field's problem by message key; the edge renders it in the caller's language.

    `core.errors.translate_error` turns `key` and `params` into `message` when the error is
    rendered (API and command line).
    """
    return {"field": field, "key": key, "params": params}


def _check_unit_codes(*, session: Session, unit_codes: Sequence[str]) -> list[str]:
    codes = list(dict.fromkeys(unit_codes))
    known = set(session.scalars(select(AdminUnit.code).where(AdminUnit.code.in_(codes))))
    errors = [
        field_error(f"unit_codes[{i}]", "units.area.unknown_unit", code=code)
        for i, code in enumerate(unit_codes)
        if code not in known
    ]
    if errors:
        raise Invalid("units.area.unknown_units", errors=errors, count=len(errors))
    return codes


def _area_folded(name: str, name_en: str | None) -> str:
    return fold(f"{name} {name_en or ''}")


def create_area(*, session: Session, area_in: AreaCreate, clock: Clock) -> Area:
    """Create an area with its member units."""
    if get_area(session=session, area_code=area_in.code) is not None:
        raise Conflict("units.area.exists", code=area_in.code)
    codes = _check_unit_codes(session=session, unit_codes=area_in.unit_codes)
    now = clock.now()
    area = Area(
        code=area_in.code,
        name=area_in.name,
        name_en=area_in.name_en,
        name_folded=_area_folded(area_in.name, area_in.name_en),
        kind=area_in.kind,
        description=area_in.description,
        created_at=now,
        updated_at=now,
    )
    area.members = [AreaMember(area_code=area.code, unit_code=code) for code in codes]
    session.add(area)
    session.flush()
    return area


def update_area(*, session: Session, area: Area, area_in: AreaUpdate, clock: Clock) -> Area:
    """Update an area; a member list, when given, replaces the old one."""
    data = area_in.model_dump(exclude_unset=True, exclude={"unit_codes"})
    for field, value in data.items():
        if field in ("name", "kind") and value is None:
            raise Invalid(
                "units.field.required",
                errors=[field_error(field, "units.field.required", field=field)],
                field=field,
            )
        setattr(area, field, value)
    if area_in.unit_codes is not None:
        codes = _check_unit_codes(session=session, unit_codes=area_in.unit_codes)
        keep = [m for m in area.members if m.unit_code in codes]
        have = {m.unit_code for m in keep}
        area.members = keep + [
            AreaMember(area_code=area.code, unit_code=c) for c in codes if c not in have
        ]
    area.name_folded = _area_folded(area.name, area.name_en)
    area.updated_at = clock.now()
    session.flush()
    return area


def delete_area(*, session: Session, area: Area) -> None:
    """Delete an area and its membership list (the units stay)."""
    session.delete(area)
    session.flush()


# --- departments -----------------------------------------------------------------------------


def get_department_codes(*, session: Session) -> frozenset[str]:
    """Return the code of every department."""
    return frozenset(session.scalars(select(Department.code)))


def get_department(*, session: Session, department_code: str) -> Department | None:
    """Return a department by code, or None."""
    return session.get(Department, department_code)


def get_department_or_raise(*, session: Session, department_code: str) -> Department:
    """Return a department by code, or raise 404."""
    department = get_department(session=session, department_code=department_code)
    if department is None:
        raise NotFound("units.department.not_found", code=department_code)
    return department


def get_department_by_sector(*, session: Session, sector: str) -> Department | None:
    """Return the department that owns a sector, or None."""
    row = session.get(DepartmentSector, sector)
    return (
        None
        if row is None
        else get_department(session=session, department_code=row.department_code)
    )


def get_all_departments(
    *,
    session: Session,
    q: str | None = None,
    sector: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Department], int]:
    """Return one page of departments (optionally by sector, or by name without diacritics)."""
    conditions: list[ColumnElement[bool]] = []
    folded = fold(q or "")
    if folded:
        conditions.append(
            or_(
                Department.name_folded.contains(folded, autoescape=True),
                func.lower(Department.code) == folded,
            )
        )
    if sector:
        owners = select(DepartmentSector.department_code).where(DepartmentSector.sector == sector)
        conditions.append(Department.code.in_(owners))
    total = session.scalar(select(func.count()).select_from(Department).where(*conditions)) or 0
    rows = session.scalars(
        select(Department).where(*conditions).order_by(Department.code).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def _claim_sectors(*, session: Session, department_code: str, sectors: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(sectors))
    if not wanted:
        return wanted
    owners = session.execute(
        select(DepartmentSector.sector, DepartmentSector.department_code).where(
            DepartmentSector.sector.in_(wanted), DepartmentSector.department_code != department_code
        )
    ).first()
    if owners is not None:
        raise Conflict("units.department.sector_taken", sector=owners[0], department=owners[1])
    return wanted


def _department_folded(name: str, name_en: str | None) -> str:
    return fold(f"{name} {name_en or ''}")


def create_department(
    *, session: Session, department_in: DepartmentCreate, clock: Clock
) -> Department:
    """Create a department with the sectors it owns."""
    if get_department(session=session, department_code=department_in.code) is not None:
        raise Conflict("units.department.exists", code=department_in.code)
    sectors = _claim_sectors(
        session=session, department_code=department_in.code, sectors=department_in.sectors
    )
    now = clock.now()
    department = Department(
        code=department_in.code,
        name=department_in.name,
        name_en=department_in.name_en,
        name_folded=_department_folded(department_in.name, department_in.name_en),
        contact=_merge_contact({}, department_in.contact) if department_in.contact else {},
        created_at=now,
        updated_at=now,
    )
    department.sector_rows = [
        DepartmentSector(sector=s, department_code=department.code) for s in sectors
    ]
    session.add(department)
    session.flush()
    return department


def update_department(
    *, session: Session, department: Department, department_in: DepartmentUpdate, clock: Clock
) -> Department:
    """Update a department's names, sectors (replacing the list) or contact details."""
    data = department_in.model_dump(exclude_unset=True, exclude={"sectors", "contact"})
    for field, value in data.items():
        if field == "name" and value is None:
            raise Invalid(
                "units.field.required",
                errors=[field_error(field, "units.field.required", field=field)],
                field=field,
            )
        setattr(department, field, value)
    if department_in.sectors is not None:
        sectors = _claim_sectors(
            session=session, department_code=department.code, sectors=department_in.sectors
        )
        keep = [row for row in department.sector_rows if row.sector in sectors]
        have = {row.sector for row in keep}
        department.sector_rows = keep + [
            DepartmentSector(sector=s, department_code=department.code)
            for s in sectors
            if s not in have
        ]
    if department_in.contact is not None:
        department.contact = _merge_contact(department.contact, department_in.contact)
    department.name_folded = _department_folded(department.name, department.name_en)
    department.updated_at = clock.now()
    session.flush()
    return department


def delete_department(*, session: Session, department: Department) -> None:
    """Delete a department and its sector ownership."""
    session.delete(department)
    session.flush()
