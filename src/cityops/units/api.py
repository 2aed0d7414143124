"""Routes of the units context: units, point lookup, boundaries, areas and departments.

Reads are public reference data (the public portal uses them); writes need a permission.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy.exc import IntegrityError

from cityops.core.deps import (
    ClockDep,
    LangDep,
    Limit,
    Offset,
    RuntimeDep,
    SessionDep,
    TranslatorDep,
)
from cityops.core.errors import Conflict, Forbidden, Invalid, NotFound
from cityops.core.etag import conditional
from cityops.core.schemas import SINGLE_LINE
from cityops.core.security import CurrentPrincipal, Permission, Principal, require
from cityops.units import flows, service
from cityops.units import geometry as geo
from cityops.units.models import AdminUnit, Area
from cityops.units.schemas import (
    AreaCreate,
    AreaDetail,
    AreaPage,
    AreaRead,
    AreaRef,
    AreaUpdate,
    DepartmentCreate,
    DepartmentPage,
    DepartmentRead,
    DepartmentUpdate,
    Feature,
    FeatureCollection,
    UnitDetail,
    UnitPage,
    UnitRead,
    UnitRef,
    UnitUpdate,
)

router = APIRouter()

SearchText = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=SINGLE_LINE,
        description="Name (with or without diacritics) or code.",
    ),
]
ValidAt = Annotated[
    str | None,
    Query(
        max_length=32,
        pattern=SINGLE_LINE,
        description="Units valid on this date (YYYY-MM-DD); default today; `all` for every unit.",
    ),
]
CodePath = Annotated[str, Path(max_length=64, pattern=SINGLE_LINE)]

UnitUpdater = Annotated[Principal, Depends(require(Permission.UNIT_UPDATE))]
UnitAdmin = Annotated[Principal, Depends(require(Permission.UNIT_ADMIN))]
DepartmentAdmin = Annotated[Principal, Depends(require(Permission.DEPARTMENT_ADMIN))]


async def valid_on_date(
    runtime: RuntimeDep,
    clock: ClockDep,
    translate: TranslatorDep,
    lang: LangDep,
    valid_at: ValidAt = None,
) -> date | None:
    """The date units must be valid on: today in the province by default, None for `all`."""
    if valid_at is None or not valid_at.strip():
        return flows.local_date(clock, runtime.settings.timezone)
    if valid_at.strip().lower() == "all":
        return None
    try:
        return date.fromisoformat(valid_at.strip())
    except ValueError:
        message = translate("units.valid_at.invalid", lang)
        raise Invalid(
            "units.valid_at.invalid",
            errors=[{"field": "valid_at", "in": "query", "message": message, "type": "date"}],
        ) from None


ValidOn = Annotated[date | None, Depends(valid_on_date)]


def _unit_detail(session: SessionDep, unit: AdminUnit) -> UnitDetail:
    formed_from, succeeded_by = service.get_lineage(session=session, unit_code=unit.code)
    areas = service.get_unit_areas(session=session, unit_code=unit.code)
    base = UnitRead.model_validate(unit).model_dump()
    return UnitDetail(
        **base,
        formed_from=[UnitRef.model_validate(u) for u in formed_from],
        succeeded_by=[UnitRef.model_validate(u) for u in succeeded_by],
        areas=[AreaRef.model_validate(a) for a in areas],
    )


def _feature(unit: AdminUnit, lang: str) -> Feature:
    official = unit.boundary_source == "official"
    note = (geo.OFFICIAL_NOTE if official else geo.DEMO_NOTE)[
        lang if lang in ("vi", "en") else "vi"
    ]
    return Feature(
        id=unit.code,
        geometry=unit.geometry,
        properties={
            "code": unit.code,
            "name": unit.name,
            "name_en": unit.name_en,
            "unit_type": unit.unit_type,
            "level": unit.level,
            "parent_code": unit.parent_code,
            "valid_from": unit.valid_from.isoformat() if unit.valid_from else None,
            "valid_to": unit.valid_to.isoformat() if unit.valid_to else None,
            "boundary_source": unit.boundary_source,
            "legal": official,
            "note": note,
        },
    )


# --- units -----------------------------------------------------------------------------------


@router.get("/units", response_model=UnitPage, tags=["units"], summary="List and search units")
def list_units(
    session: SessionDep,
    on: ValidOn,
    unit_type: Annotated[
        str | None, Query(alias="type", max_length=32, pattern=SINGLE_LINE)
    ] = None,
    level: Annotated[str | None, Query(max_length=16, pattern=SINGLE_LINE)] = None,
    parent: Annotated[str | None, Query(max_length=16, pattern=SINGLE_LINE)] = None,
    q: SearchText = None,
    area: Annotated[str | None, Query(max_length=64, pattern=SINGLE_LINE)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> UnitPage:
    """List units valid today (or on `valid_at`), filtered by type, level, parent, area or name."""
    if area and service.get_area(session=session, area_code=area) is None:
        raise NotFound("units.area.not_found", code=area)
    rows, total = service.get_all(
        session=session,
        on=on,
        unit_type=unit_type,
        level=level,
        parent_code=parent,
        q=q,
        area_code=area,
        limit=limit,
        offset=offset,
    )
    return UnitPage(
        items=[UnitRead.model_validate(u) for u in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/units/geometry",
    response_model=FeatureCollection,
    tags=["units"],
    summary="Boundaries of units as a GeoJSON FeatureCollection",
    responses={304: {"description": "Unchanged since the ETag sent in If-None-Match."}},
)
def units_geometry(
    request: Request,
    session: SessionDep,
    lang: LangDep,
    on: ValidOn,
    level: Annotated[str, Query(max_length=16, pattern=SINGLE_LINE)] = "commune",
    area: Annotated[str | None, Query(max_length=64, pattern=SINGLE_LINE)] = None,
) -> Response:
    """Return the boundaries of the units of a level valid today (the communes and wards).

    The answer carries an ETag: a client holding it gets 304 (the boundaries rarely change).
    """
    if area and service.get_area(session=session, area_code=area) is None:
        raise NotFound("units.area.not_found", code=area)
    rows, _ = service.get_all(
        session=session,
        on=on,
        level=level,
        area_code=area,
        limit=10_000,
        offset=0,
        with_geometry=True,
    )
    collection = FeatureCollection(
        features=[_feature(u, lang) for u in rows if u.geometry is not None]
    )
    # Revalidated after a minute: an edited boundary reaches open screens on their next load.
    return conditional(
        request,
        collection.model_dump_json(by_alias=True).encode(),
        cache_control="public, max-age=60",
    )


@router.get(
    "/units/locate",
    response_model=UnitRead,
    tags=["units"],
    summary="The commune or ward containing a point",
)
def locate_unit(
    session: SessionDep,
    runtime: RuntimeDep,
    lat: Annotated[float, Query(ge=-90, le=90, description="Latitude, WGS 84 degrees.")],
    lon: Annotated[float, Query(ge=-180, le=180, description="Longitude, WGS 84 degrees.")],
) -> UnitRead:
    """Return the current commune or ward containing a point; 404 outside the province."""
    unit = service.locate(session=session, lat=lat, lon=lon, caches=runtime.caches)
    if unit is None:
        raise NotFound("units.locate.outside", lat=lat, lon=lon)
    return UnitRead.model_validate(unit)


@router.get("/units/{code}", response_model=UnitDetail, tags=["units"], summary="One unit")
def get_unit(session: SessionDep, code: CodePath) -> UnitDetail:
    """Return a unit with the units it was formed from or succeeded by, and its areas."""
    return _unit_detail(session, service.get_or_raise(session=session, unit_code=code))


@router.patch("/units/{code}", response_model=UnitDetail, tags=["units"], summary="Edit a unit")
def update_unit(
    session: SessionDep,
    clock: ClockDep,
    principal: UnitUpdater,
    code: CodePath,
    unit_in: UnitUpdate,
) -> UnitDetail:
    """Edit a unit's contact details, population or English name (within the caller's scope)."""
    unit = service.get_or_raise(session=session, unit_code=code)
    principal.check_scope(unit_code=unit.code)
    service.update(session=session, unit=unit, unit_in=unit_in, clock=clock)
    return _unit_detail(session, unit)


@router.get(
    "/units/{code}/geometry",
    response_model=Feature,
    tags=["units"],
    summary="A unit's boundary as a GeoJSON Feature",
)
def unit_geometry(session: SessionDep, lang: LangDep, code: CodePath) -> Feature:
    """Return a unit's boundary; demo boundaries are flagged as not legal."""
    unit = service.get_or_raise(session=session, unit_code=code)
    return _feature(unit, lang)


# --- areas -----------------------------------------------------------------------------------


def _area_detail(session: SessionDep, area: Area) -> AreaDetail:
    units = service.get_area_units(session=session, area_code=area.code)
    return AreaDetail(
        **AreaRead.model_validate(area).model_dump(),
        units=[UnitRef.model_validate(u) for u in units],
    )


@router.get("/areas", response_model=AreaPage, tags=["areas"], summary="List and search areas")
def list_areas(
    session: SessionDep,
    q: SearchText = None,
    kind: Annotated[str | None, Query(max_length=32, pattern=SINGLE_LINE)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AreaPage:
    """List areas, optionally by kind or by name (Vietnamese or English, diacritics optional)."""
    rows, total = service.get_all_areas(session=session, q=q, kind=kind, limit=limit, offset=offset)
    return AreaPage(
        items=[AreaRead.model_validate(a) for a in rows], total=total, limit=limit, offset=offset
    )


@router.get("/areas/{code}", response_model=AreaDetail, tags=["areas"], summary="One area")
def get_area(session: SessionDep, code: CodePath) -> AreaDetail:
    """Return an area with its member units."""
    return _area_detail(session, service.get_area_or_raise(session=session, area_code=code))


@router.post(
    "/areas",
    response_model=AreaDetail,
    status_code=status.HTTP_201_CREATED,
    tags=["areas"],
    summary="Create an area",
)
def create_area(
    session: SessionDep,
    clock: ClockDep,
    _principal: UnitAdmin,
    area_in: AreaCreate,
    request: Request,
    response: Response,
) -> AreaDetail:
    """Create a named group of units."""
    area = service.create_area(session=session, area_in=area_in, clock=clock)
    response.headers["Location"] = str(request.url_for("get_area", code=area.code))
    return _area_detail(session, area)


@router.patch("/areas/{code}", response_model=AreaDetail, tags=["areas"], summary="Edit an area")
def update_area(
    session: SessionDep,
    clock: ClockDep,
    _principal: UnitAdmin,
    code: CodePath,
    area_in: AreaUpdate,
) -> AreaDetail:
    """Edit an area's names, kind, description or member list."""
    area = service.get_area_or_raise(session=session, area_code=code)
    service.update_area(session=session, area=area, area_in=area_in, clock=clock)
    return _area_detail(session, area)


@router.delete(
    "/areas/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["areas"],
    summary="Delete an area",
)
def delete_area(session: SessionDep, _principal: UnitAdmin, code: CodePath) -> Response:
    """Delete an area (its units stay)."""
    area = service.get_area_or_raise(session=session, area_code=code)
    try:
        service.delete_area(session=session, area=area)
    except IntegrityError:
        # Users (or later, other records) scoped to this area still refer to it.
        raise Conflict("units.area.in_use", code=code) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- departments -----------------------------------------------------------------------------


@router.get(
    "/departments", response_model=DepartmentPage, tags=["departments"], summary="List departments"
)
def list_departments(
    session: SessionDep,
    q: SearchText = None,
    sector: Annotated[str | None, Query(max_length=32, pattern=SINGLE_LINE)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DepartmentPage:
    """List departments, optionally the owner of a sector or by name."""
    rows, total = service.get_all_departments(
        session=session, q=q, sector=sector, limit=limit, offset=offset
    )
    return DepartmentPage(
        items=[DepartmentRead.model_validate(d) for d in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/departments/{code}",
    response_model=DepartmentRead,
    tags=["departments"],
    summary="One department",
)
def get_department(session: SessionDep, code: CodePath) -> DepartmentRead:
    """Return a department and the sectors it owns."""
    department = service.get_department_or_raise(session=session, department_code=code)
    return DepartmentRead.model_validate(department)


@router.post(
    "/departments",
    response_model=DepartmentRead,
    status_code=status.HTTP_201_CREATED,
    tags=["departments"],
    summary="Create a department",
)
def create_department(
    session: SessionDep,
    clock: ClockDep,
    _principal: DepartmentAdmin,
    department_in: DepartmentCreate,
    request: Request,
    response: Response,
) -> DepartmentRead:
    """Create a department with the sectors it owns."""
    department = service.create_department(
        session=session, department_in=department_in, clock=clock
    )
    response.headers["Location"] = str(request.url_for("get_department", code=department.code))
    return DepartmentRead.model_validate(department)


@router.patch(
    "/departments/{code}",
    response_model=DepartmentRead,
    tags=["departments"],
    summary="Edit a department",
)
def update_department(
    session: SessionDep,
    clock: ClockDep,
    principal: CurrentPrincipal,
    code: CodePath,
    department_in: DepartmentUpdate,
) -> DepartmentRead:
    """Edit a department: names and sectors need department admin; contact, its own officers."""
    department = service.get_department_or_raise(session=session, department_code=code)
    structural = department_in.model_fields_set & {"name", "name_en", "sectors"}
    if not principal.can(Permission.DEPARTMENT_ADMIN):
        principal.check(Permission.DEPARTMENT_UPDATE)
        if structural:
            raise Forbidden("units.department.contact_only")
        principal.check_scope(department_code=department.code)
    service.update_department(
        session=session, department=department, department_in=department_in, clock=clock
    )
    return DepartmentRead.model_validate(department)


@router.delete(
    "/departments/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["departments"],
    summary="Delete a department",
)
def delete_department(session: SessionDep, _principal: DepartmentAdmin, code: CodePath) -> Response:
    """Delete a department; 409 while other records still refer to it."""
    department = service.get_department_or_raise(session=session, department_code=code)
    try:
        service.delete_department(session=session, department=department)
    except IntegrityError:
        raise Conflict("units.department.in_use", code=code) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
