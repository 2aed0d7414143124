"""Orchestration of the units context: seeding a profile and importing official boundaries."""

from __future__ import annotations

import math
from datetime import date
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.errors import Invalid
from cityops.core.i18n import Translator, load_catalogs
from cityops.core.text import fold
from cityops.units import geometry as geo
from cityops.units import service
from cityops.units.models import (
    AdminUnit,
    Area,
    AreaMember,
    Department,
    DepartmentSector,
    UnitLineage,
)
from cityops.units.profile import Profile, UnitSeed, load_profile

# Property names under which boundary files carry the unit code (NSO code "mã").
CODE_PROPERTIES = ("code", "ma", "ma_xa", "unit_code")
POLYGON_TYPES = ("Polygon", "MultiPolygon")


def local_date(clock: Clock, timezone: str) -> date:
    """Return today's date in a time zone, by the given clock."""
    return clock.now().astimezone(ZoneInfo(timezone)).date()


def _demo_geometries(profile: Profile) -> dict[str, BaseGeometry]:
    """Generate the demo boundaries of every unit of a profile, deterministically."""
    points = [(c.lon or 0.0, c.lat or 0.0) for c in profile.communes]
    areas = [c.area_km2 or 1.0 for c in profile.communes]
    outline = geo.demo_outline(points, areas)
    cells = geo.demo_cells(points, outline)
    out: dict[str, BaseGeometry] = {profile.province_code: outline}
    by_legacy: dict[str, list[BaseGeometry]] = {}
    for commune, cell in zip(profile.communes, cells, strict=True):
        out[commune.code] = cell
        for legacy in commune.formed_from:
            by_legacy.setdefault(legacy, []).append(cell)
    by_province: dict[str, list[BaseGeometry]] = {}
    for district in profile.legacy:
        parts = by_legacy.get(district.code, [])
        if parts:
            out[district.code] = geo.rounded(shapely.union_all(parts))
            if district.parent_code:
                by_province.setdefault(district.parent_code, []).extend(parts)
    for province in profile.legacy_provinces:
        parts = by_province.get(province.code, [])
        if parts:
            out[province.code] = geo.rounded(shapely.union_all(parts))
    return out


def _new_unit(seed: UnitSeed, now: Any) -> AdminUnit:
    return AdminUnit(
        code=seed.code,
        name=seed.name,
        name_en=seed.name_en,
        name_folded=fold(seed.name),
        unit_type=seed.unit_type,
        level=seed.level,
        parent_code=seed.parent_code,
        valid_from=seed.valid_from,
        valid_to=seed.valid_to,
        lat=seed.lat,
        lon=seed.lon,
        area_km2=seed.area_km2,
        population=seed.population,
        contact={},
        boundary_source="demo",
        boundary_version=0,
        created_at=now,
        updated_at=now,
    )


def seed_profile(*, session: Session, profile: str, clock: Clock) -> dict[str, int]:
    """Seed a profile's units, lineage, areas and departments; a second run changes nothing.

    Rows already present are left as they are (operators may have edited them, or imported
    official boundaries), except the province's dated name and type, which follow the profile.
    """
    loaded = load_profile(profile)
    today = local_date(clock, loaded.config.get("timezone", "Asia/Ho_Chi_Minh"))
    now = clock.now()
    counts = dict.fromkeys(
        ("units", "units_updated", "boundaries", "lineage", "areas", "departments", "sectors"), 0
    )
    existing = {u.code: u for u in session.scalars(select(AdminUnit))}
    province = loaded.province(today)
    # Parents before children: provinces, then legacy districts, then communes.
    seeds = [province, *loaded.legacy_provinces, *loaded.legacy, *loaded.communes]
    for seed in seeds:
        unit = existing.get(seed.code)
        if unit is None:
            unit = _new_unit(seed, now)
            session.add(unit)
            existing[seed.code] = unit
            counts["units"] += 1
        elif seed.code == province.code and (
            (unit.name, unit.unit_type, unit.name_en) != (seed.name, seed.unit_type, seed.name_en)
        ):
            unit.name, unit.unit_type, unit.name_en = seed.name, seed.unit_type, seed.name_en
            unit.name_folded = fold(seed.name)
            unit.updated_at = now
            counts["units_updated"] += 1
        session.flush()

    missing = [s.code for s in seeds if existing[s.code].geometry is None]
    if missing:
        shapes = _demo_geometries(loaded)
        for code in missing:
            if code in shapes:
                service.set_geometry(
                    session=session,
                    unit=existing[code],
                    geometry=shapes[code],
                    source="demo",
                    clock=clock,
                )
                counts["boundaries"] += 1
        session.flush()

    lineage = {
        (row[0], row[1])
        for row in session.execute(select(UnitLineage.unit_code, UnitLineage.legacy_code))
    }
    for commune in loaded.communes:
        for legacy in commune.formed_from:
            if (commune.code, legacy) not in lineage:
                session.add(UnitLineage(unit_code=commune.code, legacy_code=legacy))
                lineage.add((commune.code, legacy))
                counts["lineage"] += 1
    session.flush()

    for area_cfg in loaded.areas:
        if session.get(Area, area_cfg["code"]) is not None:
            continue
        members = sorted(
            {c.code for c in loaded.communes if set(c.formed_from) & set(area_cfg["formed_from"])}
        )
        area = Area(
            code=area_cfg["code"],
            name=area_cfg["name"],
            name_en=area_cfg.get("name_en"),
            name_folded=fold(f"{area_cfg['name']} {area_cfg.get('name_en') or ''}"),
            kind=area_cfg.get("kind", "custom"),
            description=area_cfg.get("description"),
            created_at=now,
            updated_at=now,
        )
        area.members = [AreaMember(area_code=area.code, unit_code=code) for code in members]
        session.add(area)
        counts["areas"] += 1
    session.flush()

    owned = set(session.scalars(select(DepartmentSector.sector)))
    for dept_cfg in loaded.departments:
        if session.get(Department, dept_cfg["code"]) is not None:
            continue
        department = Department(
            code=dept_cfg["code"],
            name=dept_cfg["name"],
            name_en=dept_cfg.get("name_en"),
            name_folded=fold(f"{dept_cfg['name']} {dept_cfg.get('name_en') or ''}"),
            contact=dict(dept_cfg.get("contact") or {}),
            created_at=now,
            updated_at=now,
        )
        # A sector already given to another department (by an operator) stays where it is.
        free = [s for s in dept_cfg.get("sectors", []) if s not in owned]
        department.sector_rows = [
            DepartmentSector(sector=s, department_code=department.code) for s in free
        ]
        owned.update(free)
        session.add(department)
        counts["departments"] += 1
        counts["sectors"] += len(free)
    session.flush()
    return counts


@lru_cache(maxsize=1)
def _messages() -> Translator:
    return load_catalogs(["cityops.core", "cityops.units"], "vi")


def _feature_code(properties: dict[str, Any]) -> str | None:
    for key in CODE_PROPERTIES:
        value = properties.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | str) and str(value).strip():
            return str(value).strip()
    return None


def _lonlat_ok(geom: BaseGeometry) -> bool:
    min_x, min_y, max_x, max_y = geom.bounds
    return all(math.isfinite(v) for v in (min_x, min_y, max_x, max_y)) and (
        -180.0 <= min_x <= max_x <= 180.0 and -90.0 <= min_y <= max_y <= 90.0
    )


def import_boundaries(
    *, session: Session, geojson: dict[str, Any], clock: Clock, lang: str = "vi"
) -> dict[str, int]:
    """Replace unit boundaries with official ones from a GeoJSON FeatureCollection.

    Everything is checked first; if any feature is wrong nothing is imported and `Invalid` lists
    every problem by feature (`features[3]`). Returns how many units were updated.
    """
    translate = _messages()
    errors: list[dict[str, Any]] = []

    def problem(field: str, key: str, **params: Any) -> None:
        """Record one feature's problem, rendered in the requested language."""
        errors.append(
            {"field": field, "message": translate(key, lang, **params), "type": key, **params}
        )

    if not isinstance(geojson, dict) or geojson.get("type") != "FeatureCollection":
        problem("type", "units.boundaries.not_collection")
        raise Invalid("units.boundaries.invalid", errors=errors, count=len(errors))
    features = geojson.get("features")
    if not isinstance(features, list) or not features:
        problem("features", "units.boundaries.no_features")
        raise Invalid("units.boundaries.invalid", errors=errors, count=len(errors))

    known = set(session.scalars(select(AdminUnit.code)))
    seen: dict[str, int] = {}
    accepted: list[tuple[str, BaseGeometry]] = []
    for index, feature in enumerate(features):
        field = f"features[{index}]"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problem(field, "units.boundaries.not_feature")
            continue
        properties = feature.get("properties")
        code = _feature_code(properties) if isinstance(properties, dict) else None
        if code is None:
            problem(field, "units.boundaries.no_code", keys=", ".join(CODE_PROPERTIES))
        elif code in seen:
            problem(field, "units.boundaries.duplicate_code", code=code, first=seen[code])
        elif code not in known:
            problem(field, "units.boundaries.unknown_code", code=code)
        if code is not None:
            seen.setdefault(code, index)
        raw = feature.get("geometry")
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in POLYGON_TYPES:
            problem(field, "units.boundaries.not_polygon", kind=str(kind))
            continue
        try:
            shape = geo.from_geojson(raw) if isinstance(raw, dict) else None
        except Exception:  # noqa: BLE001 - any malformed coordinate structure means: broken
            shape = None
        if shape is None or shape.is_empty:
            problem(field, "units.boundaries.broken")
            continue
        if not _lonlat_ok(shape):
            problem(field, "units.boundaries.not_lonlat")
            continue
        if not shape.is_valid:
            problem(
                field, "units.boundaries.invalid_polygon", reason=shapely.is_valid_reason(shape)
            )
            continue
        if code is not None and code in known and seen.get(code) == index:
            accepted.append((code, shape))
    if errors:
        raise Invalid("units.boundaries.invalid", errors=errors, count=len(errors))
    for code, shape in accepted:
        unit = service.get(session=session, unit_code=code)
        if unit is not None:
            service.set_geometry(
                session=session,
                unit=unit,
                geometry=geo.rounded(shape),
                source="official",
                clock=clock,
            )
    session.flush()
    return {"features": len(features), "updated": len(accepted)}
