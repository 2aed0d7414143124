"""NGSI-LD geo-queries: distances around Biên Hòa, every georel, and strict validation."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityops.context.errors import BadRequestData
from cityops.context.query import EARTH_RADIUS, parse_geo

from .conftest import BASE

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
# Biên Hòa city centre, (lat, lon).
LAT, LON = 10.957, 106.843
POI = "urn:ngsi-ld:PointOfInterest:"


def _destination(distance_m: float, bearing_deg: float) -> tuple[float, float]:
    """Return (lon, lat) at a great-circle distance and bearing from Biên Hòa."""
    lat1, lon1 = math.radians(LAT), math.radians(LON)
    delta, theta = distance_m / EARTH_RADIUS, math.radians(bearing_deg)
    lat2 = math.asin(
        math.sin(lat1) * math.cos(delta) + math.cos(lat1) * math.sin(delta) * math.cos(theta)
    )
    lon2 = lon1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(lat1),
        math.cos(delta) - math.sin(lat1) * math.sin(lat2),
    )
    return round(math.degrees(lon2), 9), round(math.degrees(lat2), 9)


# name: (distance in metres, bearing in degrees)
PLACED = {
    "m500-east": (500, 90),
    "m1900-south": (1900, 180),
    "m1999-north": (1999, 0),  # inside 2 km by one metre, due north
    "m1999-west": (1999, 270),
    "m2001-north": (2001, 0),
    "m2100-west": (2100, 270),
    "m10000-northeast": (10_000, 45),
}
SQUARE = [[106.83, 10.95], [106.86, 10.95], [106.86, 10.97], [106.83, 10.97], [106.83, 10.95]]


def _entities() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, (distance, bearing) in PLACED.items():
        lon, lat = _destination(distance, bearing)
        out.append(
            {
                "id": POI + name,
                "type": "PointOfInterest",
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [lon, lat]},
                },
            }
        )
    out += [
        {
            "id": POI + "centre",
            "type": "PointOfInterest",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [LON, LAT]},
            },
        },
        {
            "id": POI + "park",
            "type": "PointOfInterest",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Polygon", "coordinates": [SQUARE]},
            },
        },
        {
            "id": POI + "road",
            "type": "PointOfInterest",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "LineString", "coordinates": [[106.80, 10.90], [106.90, 11.00]]},
            },
        },
        {
            "id": POI + "gauge",
            "type": "PointOfInterest",
            "observationSpace": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [LON, LAT]},
            },
        },
    ]
    return out


@pytest.fixture
def places(client: TestClient, admin: dict[str, str]) -> TestClient:
    """The client, its database holding points at known distances from Biên Hòa."""
    response = client.post(f"{BASE}/entityOperations/upsert", json=_entities(), headers=admin)
    assert response.status_code == 204, response.text
    return client


def _near(places: TestClient, admin: dict[str, str], georel: str, **extra: str) -> list[str]:
    params = {
        "type": "PointOfInterest",
        "georel": georel,
        "geometry": "Point",
        "coordinates": json.dumps([LON, LAT]),
        "limit": "100",
        **extra,
    }
    response = places.get(f"{BASE}/entities", params=params, headers=admin)
    assert response.status_code == 200, response.text
    return sorted(e["id"].removeprefix(POI) for e in response.json())


def test_near_max_distance_keeps_exactly_the_points_within(
    places: TestClient, admin: dict[str, str]
) -> None:
    # The park holds the centre (distance 0); the road passes 1.09 km from it.
    assert _near(places, admin, "near;maxDistance==2000") == [
        "centre",
        "m1900-south",
        "m1999-north",
        "m1999-west",
        "m500-east",
        "park",
        "road",
    ]
    assert _near(places, admin, "near;maxDistance==600") == ["centre", "m500-east", "park"]
    assert _near(places, admin, "near;maxDistance==0") == ["centre", "park"]


def test_near_min_distance_and_both_bounds(places: TestClient, admin: dict[str, str]) -> None:
    assert _near(places, admin, "near;minDistance==2000") == [
        "m10000-northeast",
        "m2001-north",
        "m2100-west",
    ]
    assert _near(places, admin, "near;minDistance==1000;maxDistance==5000") == [
        "m1900-south",
        "m1999-north",
        "m1999-west",
        "m2001-north",
        "m2100-west",
        "road",
    ]
    counted = places.get(
        f"{BASE}/entities",
        params={
            "type": "PointOfInterest",
            "georel": "near;maxDistance==2000",
            "geometry": "Point",
            "coordinates": json.dumps([LON, LAT]),
            "count": "true",
            "limit": "2",
        },
        headers=admin,
    )
    assert counted.headers["ngsild-results-count"] == "7"
    assert len(counted.json()) == 2


def _georel(
    places: TestClient, admin: dict[str, str], georel: str, geometry: str, coordinates: Any
) -> list[str]:
    response = places.get(
        f"{BASE}/entities",
        params={
            "type": "PointOfInterest",
            "georel": georel,
            "geometry": geometry,
            "coordinates": json.dumps(coordinates),
            "limit": "100",
        },
        headers=admin,
    )
    assert response.status_code == 200, (georel, geometry, response.text)
    return sorted(e["id"].removeprefix(POI) for e in response.json())


def test_relations_with_polygons_and_points(places: TestClient, admin: dict[str, str]) -> None:
    square = [SQUARE]
    bigger = [[[106.82, 10.94], [106.87, 10.94], [106.87, 10.98], [106.82, 10.98], [106.82, 10.94]]]
    half = [[[106.85, 10.94], [106.88, 10.94], [106.88, 10.96], [106.85, 10.96], [106.85, 10.94]]]
    # The square reaches 10.97 N and 106.83 E; 1999 m north is 10.975 and 1999 m west 106.825.
    # A geometry lies within itself: the park is the square.
    assert _georel(places, admin, "within", "Polygon", square) == ["centre", "m500-east", "park"]
    # 1900 m south (10.9399 N) is just outside the bigger square; the road leaves it.
    assert _georel(places, admin, "within", "Polygon", bigger) == [
        "centre",
        "m1999-north",
        "m1999-west",
        "m2001-north",
        "m2100-west",
        "m500-east",
        "park",
    ]
    assert _georel(places, admin, "contains", "Point", [LON, LAT]) == ["centre", "park"]
    assert _georel(places, admin, "intersects", "Polygon", square) == sorted(
        ["centre", "m500-east", "park", "road"]
    )
    assert _georel(places, admin, "equals", "Point", [LON, LAT]) == ["centre"]
    assert _georel(places, admin, "equals", "Polygon", square) == ["park"]
    assert _georel(places, admin, "overlaps", "Polygon", half) == ["park"]
    disjoint = _georel(places, admin, "disjoint", "Polygon", square)
    assert disjoint == sorted(
        [
            "m10000-northeast",
            "m1900-south",
            "m1999-north",
            "m1999-west",
            "m2001-north",
            "m2100-west",
        ]
    )


def test_geoproperty_other_than_location(places: TestClient, admin: dict[str, str]) -> None:
    response = places.get(
        f"{BASE}/entities",
        params={
            "type": "PointOfInterest",
            "georel": "near;maxDistance==10",
            "geometry": "Point",
            "coordinates": json.dumps([LON, LAT]),
            "geoproperty": "observationSpace",
        },
        headers=admin,
    )
    assert [e["id"] for e in response.json()] == [POI + "gauge"]


def test_geo_query_in_a_post_query_body(places: TestClient, admin: dict[str, str]) -> None:
    response = places.post(
        f"{BASE}/entityOperations/query",
        json={
            "type": "Query",
            "entities": [{"type": "PointOfInterest"}],
            "geoQ": {
                "georel": "near;maxDistance==600",
                "geometry": "Point",
                "coordinates": [LON, LAT],
            },
        },
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert sorted(e["id"].removeprefix(POI) for e in response.json()) == [
        "centre",
        "m500-east",
        "park",
    ]


BAD_GEO = [
    {"georel": "near", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "near;maxDistance==", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "near;maxDistance==abc", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "near;maxDistance==-1", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "near;maxDistance==nan", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "near;maxDistance==inf", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "near;maxDistance==1e400", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "near;distance==5", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "within;maxDistance==5", "geometry": "Polygon", "coordinates": json.dumps([SQUARE])},
    {"georel": "beside", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "", "geometry": "Point", "coordinates": "[106.843,10.957]"},
    {"georel": "within", "geometry": "Circle", "coordinates": "[106.843,10.957]"},
    {"georel": "within", "geometry": "point", "coordinates": "[106.843,10.957]"},
    {"georel": "within", "geometry": "Point", "coordinates": "[1000,10]"},
    {"georel": "within", "geometry": "Point", "coordinates": "[106.843,95]"},
    {"georel": "within", "geometry": "Point", "coordinates": "[106.843]"},
    {"georel": "within", "geometry": "Point", "coordinates": "[]"},
    {"georel": "within", "geometry": "Point", "coordinates": '["a","b"]'},
    {"georel": "within", "geometry": "Point", "coordinates": "not json"},
    {"georel": "within", "geometry": "Point", "coordinates": "[NaN, 1]"},
    {"georel": "within", "geometry": "Polygon", "coordinates": "[[[1,1],[2,2]]]"},
    {"georel": "within", "geometry": "Polygon", "coordinates": "[1,2]"},
    {"georel": "within", "geometry": "LineString", "coordinates": "[[1,1]]"},
    {"georel": "within", "geometry": "Point", "coordinates": "[" * 3000},
    {"georel": "within", "geometry": "Point", "coordinates": "[" * 5000 + "]" * 5000},
    {"georel": "within", "geometry": "Point"},
    {"georel": "within", "coordinates": "[1,1]"},
    {"geometry": "Point", "coordinates": "[1,1]"},
]


def test_bad_geo_queries_are_400(places: TestClient, admin: dict[str, str]) -> None:
    answers = []
    for params in BAD_GEO:
        response = places.get(
            f"{BASE}/entities", params={"type": "PointOfInterest", **params}, headers=admin
        )
        answers.append((response.status_code, response.json().get("type")))
    assert answers == [(400, ERR + "BadRequestData")] * len(BAD_GEO)


# --- properties ------------------------------------------------------------------------------

COORDINATES = st.recursive(
    st.floats() | st.integers(-1000, 1000) | st.text(max_size=3) | st.none(),
    lambda children: st.lists(children, max_size=5),
    max_leaves=16,
)
GEORELS = st.sampled_from(
    [
        "near;maxDistance==2000",
        "near;minDistance==10",
        "near;maxDistance==1e400",
        "near;maxDistance==0x10",
        "near;maxDistance==2000;minDistance==10",
        "within",
        "contains",
        "intersects",
        "disjoint",
        "equals",
        "overlaps",
    ]
) | st.text(max_size=25)
GEOMETRIES = st.sampled_from(
    ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
) | st.text(max_size=10)


@settings(max_examples=2000, deadline=None)
@given(
    st.none() | GEORELS,
    st.none() | GEOMETRIES,
    st.none() | COORDINATES | COORDINATES.map(json.dumps) | st.text(max_size=30),
    st.none() | st.text(max_size=10),
)
def test_parse_geo_never_crashes(georel: Any, geometry: Any, coordinates: Any, prop: Any) -> None:
    try:
        parsed = parse_geo(georel, geometry, coordinates, prop)
    except BadRequestData:
        return
    assert parsed is None or parsed.geometry.is_valid or parsed.geometry.geom_type != "Polygon"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(GEORELS, GEOMETRIES, COORDINATES.map(json.dumps) | st.text(max_size=30))
def test_any_geo_query_over_http_is_200_or_400(
    places: TestClient, admin: dict[str, str], georel: str, geometry: str, coordinates: str
) -> None:
    response = places.get(
        f"{BASE}/entities",
        params={
            "type": "PointOfInterest",
            "georel": georel,
            "geometry": geometry,
            "coordinates": coordinates,
        },
        headers=admin,
    )
    assert response.status_code in (200, 400), (georel, geometry, coordinates, response.text)
    if response.status_code == 400:
        assert response.json()["type"] == ERR + "BadRequestData"
