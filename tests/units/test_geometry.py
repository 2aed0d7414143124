"""Point → unit lookup and the official boundary import."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import box, mapping, shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from cityops.core.clock import FrozenClock
from cityops.core.errors import Invalid
from cityops.units import flows, service
from cityops.units import geometry as geo
from cityops.units.models import AdminUnit

CLOCK = FrozenClock(datetime(2026, 11, 20, 3, tzinfo=UTC))
# Demo map frame of the merged province, slightly enlarged (facts.md §2).
FRAME = (106.3, 10.4, 107.7, 12.4)


def _brute_force(loc: geo.Locator, lat: float, lon: float) -> str | None:
    for code, geom in zip(loc.codes, loc.geometries, strict=True):
        if shapely.intersects_xy(geom, lon, lat):
            return code
    return None


def test_bien_hoa_point_is_in_a_ward_formed_from_the_former_city(session: Session) -> None:
    unit = service.locate(session=session, lat=10.957, lon=106.843)
    assert unit is not None
    assert unit.unit_type == "phuong"
    assert unit.code in service.get_successor_codes(session=session, legacy_codes=["731"])


def test_every_centroid_locates_to_its_own_unit(session: Session, locator: geo.Locator) -> None:
    communes = session.scalars(select(AdminUnit).where(AdminUnit.level == "commune")).all()
    assert len(locator.codes) == 95
    for unit in communes:
        assert unit.lat is not None
        assert unit.lon is not None
        assert locator.locate(unit.lat, unit.lon) == unit.code


def test_points_outside_the_province_find_nothing(locator: geo.Locator) -> None:
    assert locator.locate(21.0, 105.8) is None  # Hà Nội
    assert locator.locate(10.78, 106.70) is None  # Ho Chi Minh City centre
    assert locator.locate(math.nan, 106.9) is None
    assert locator.locate(11.0, math.inf) is None


def test_grid_agrees_with_brute_force_on_random_points(locator: geo.Locator) -> None:
    rng = np.random.default_rng(75)
    lons = rng.uniform(FRAME[0], FRAME[2], 5000)
    lats = rng.uniform(FRAME[1], FRAME[3], 5000)
    expected = [_brute_force(locator, la, lo) for la, lo in zip(lats, lons, strict=True)]
    assert [locator.locate(la, lo) for la, lo in zip(lats, lons, strict=True)] == expected
    assert locator.locate_many(lats, lons) == expected
    assert sum(e is not None for e in expected) > 1500  # about a third of the frame is province


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lat=st.floats(min_value=FRAME[1], max_value=FRAME[3]),
    lon=st.floats(min_value=FRAME[0], max_value=FRAME[2]),
)
def test_grid_agrees_with_brute_force_everywhere(
    locator: geo.Locator, lat: float, lon: float
) -> None:
    expected = _brute_force(locator, lat, lon)
    assert locator.locate(lat, lon) == expected
    assert locator.locate_many([lat], [lon]) == [expected]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lat=st.floats(allow_nan=True, allow_infinity=True),
    lon=st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_float_is_answered_without_crashing(
    locator: geo.Locator, lat: float, lon: float
) -> None:
    answer = locator.locate(lat, lon)
    assert answer is None or answer in locator.codes
    assert locator.locate_many([lat], [lon]) == [answer]


def test_shared_boundaries_go_to_the_same_unit_in_both_forms(locator: geo.Locator) -> None:
    # Vertices of the cells lie on boundaries shared by two or three units.
    points = [p for g in locator.geometries[:20] for p in shapely.get_coordinates(g)[:10]]
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    single = [locator.locate(la, lo) for la, lo in zip(lats, lons, strict=True)]
    assert single == locator.locate_many(lats, lons)
    assert single == [_brute_force(locator, la, lo) for la, lo in zip(lats, lons, strict=True)]


def test_empty_locator_finds_nothing() -> None:
    empty = geo.Locator([], [])
    assert empty.locate(11.0, 107.0) is None
    assert empty.locate_many([11.0], [107.0]) == [None]


# --- boundary import -----------------------------------------------------------------------


def _square(lat: float, lon: float, half: float = 0.01) -> dict[str, Any]:
    return dict(mapping(box(lon - half, lat - half, lon + half, lat + half)))


def _feature(code: Any, geometry: dict[str, Any] | None, key: str = "code") -> dict[str, Any]:
    return {"type": "Feature", "properties": {key: code}, "geometry": geometry}


def _snapshot(session: Session) -> dict[str, tuple[Any, str]]:
    return {
        u.code: (copy.deepcopy(u.geometry), u.boundary_source)
        for u in session.scalars(select(AdminUnit))
    }


def test_valid_file_replaces_boundaries_and_flags_them_official(session: Session) -> None:
    caches: dict[str, Any] = {}
    tran_bien = service.get(session=session, unit_code="26041")
    assert tran_bien is not None
    assert service.locate(session=session, lat=10.938, lon=106.835, caches=caches) is not None
    # A far-away square: after the import the locator must answer from the new boundary.
    collection = {
        "type": "FeatureCollection",
        "features": [
            _feature("26041", _square(10.938, 106.835)),
            _feature(26068, _square(10.5, 106.5), key="ma_xa"),
        ],
    }
    result = flows.import_boundaries(session=session, geojson=collection, clock=CLOCK)
    assert result == {"features": 2, "updated": 2}
    assert tran_bien.boundary_source == "official"
    assert shape(tran_bien.geometry).equals(box(106.825, 10.928, 106.845, 10.948))
    assert tran_bien.bbox == pytest.approx([106.825, 10.928, 106.845, 10.948])
    moved = service.locate(session=session, lat=10.5, lon=106.5, caches=caches)
    assert moved is not None
    assert moved.code == "26068"


def test_a_bad_file_changes_nothing_and_reports_every_problem(session: Session) -> None:
    before = _snapshot(session)
    bowtie = {
        "type": "Polygon",
        "coordinates": [
            [[106.8, 10.9], [106.9, 11.0], [106.9, 10.9], [106.8, 11.0], [106.8, 10.9]]
        ],
    }
    collection = {
        "type": "FeatureCollection",
        "features": [
            _feature("26041", _square(10.938, 106.835)),  # fine on its own
            _feature("99999", _square(11.0, 107.0)),  # unknown code
            _feature("26068", bowtie),  # self-intersecting
            _feature("26080", {"type": "Point", "coordinates": [107.2, 10.9]}),  # not a polygon
            _feature("26041", _square(10.9, 106.8)),  # duplicate
            _feature("26170", {"type": "Polygon", "coordinates": [[[1, 2]]]}),  # broken
            _feature(None, _square(11.0, 107.0)),  # no code
            {
                "type": "Feature",
                "properties": {"unit_code": "26122"},
                "geometry": _square(1000, 5000),
            },
            "not a feature",
        ],
    }
    with pytest.raises(Invalid) as caught:
        flows.import_boundaries(session=session, geojson=collection, clock=CLOCK, lang="en")
    fields = [e["field"] for e in caught.value.errors]
    assert fields == [f"features[{i}]" for i in range(1, 9)]
    types = {e["field"]: e["type"] for e in caught.value.errors}
    assert types["features[1]"] == "units.boundaries.unknown_code"
    assert types["features[2]"] == "units.boundaries.invalid_polygon"
    assert types["features[3]"] == "units.boundaries.not_polygon"
    assert types["features[4]"] == "units.boundaries.duplicate_code"
    assert types["features[5]"] == "units.boundaries.broken"
    assert types["features[6]"] == "units.boundaries.no_code"
    assert types["features[7]"] == "units.boundaries.not_lonlat"
    assert types["features[8]"] == "units.boundaries.not_feature"
    assert "99999" in caught.value.errors[0]["message"]
    assert "Self-intersection" in caught.value.errors[1]["message"]
    assert _snapshot(session) == before


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"type": "Feature"},
        {"type": "FeatureCollection"},
        {"type": "FeatureCollection", "features": []},
    ],
)
def test_not_a_feature_collection_is_refused(session: Session, document: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as caught:
        flows.import_boundaries(session=session, geojson=document, clock=CLOCK)
    assert caught.value.errors
    assert all(e["message"] for e in caught.value.errors)
