"""NGSI-LD 1.8 projection (pick, omit) and GeoJSON output of GET /entities and /entities/{id}."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .conftest import BASE

BH = "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1"
QL1A = "urn:ngsi-ld:TrafficFlowObserved:ql1a-km1850"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
GEO = {"Accept": "application/geo+json"}


def _load(client: TestClient, admin: dict[str, str], entities: list[dict[str, Any]]) -> None:
    response = client.post(f"{BASE}/entityOperations/upsert", json=entities, headers=admin)
    assert response.status_code == 204, response.text


def test_pick_keeps_only_the_members_named(
    client: TestClient, admin: dict[str, str], entities: Any
) -> None:
    _load(client, admin, entities)
    one = client.get(f"{BASE}/entities/{BH}", params={"pick": "id,pm25"}, headers=admin).json()
    assert set(one) == {"id", "pm25"}
    assert one["pm25"]["value"] == 35.2
    listed = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved", "pick": "type,name", "options": "keyValues"},
        headers=admin,
    ).json()
    assert len(listed) == 3
    assert all(set(item) <= {"type", "name"} for item in listed)
    assert {"type": "AirQualityObserved", "name": "Trạm quan trắc Biên Hòa 1"} in listed
    # pick projects; it does not select: the station without a name is still listed.
    assert {"type": "AirQualityObserved"} in listed
    # A member may be named by its IRI.
    by_iri = client.get(
        f"{BASE}/entities/{BH}",
        params={"pick": "https://uri.etsi.org/ngsi-ld/default-context/pm10"},
        headers=admin,
    ).json()
    assert set(by_iri) == {"pm10"}


def test_omit_drops_the_members_named(
    client: TestClient, admin: dict[str, str], entities: Any
) -> None:
    _load(client, admin, entities)
    one = client.get(
        f"{BASE}/entities/{BH}",
        params={"omit": "location,name,dateObserved", "options": "keyValues"},
        headers=admin,
    ).json()
    assert one == {
        "id": BH,
        "type": "AirQualityObserved",
        "pm25": 35.2,
        "pm10": 61.0,
        "airQualityLevel": "moderate",
    }
    # attrs still selects and projects; omit applies after it.
    listed = client.get(
        f"{BASE}/entities",
        params={"attrs": "pm25,pm10", "omit": "pm10,type", "options": "keyValues"},
        headers=admin,
    ).json()
    assert listed[0] == {"id": BH, "pm25": 35.2}
    both = client.get(f"{BASE}/entities/{BH}", params={"pick": "id", "omit": "type"}, headers=admin)
    assert both.status_code == 400
    assert both.json()["type"] == ERR + "BadRequestData"
    empty = client.get(f"{BASE}/entities/{BH}", params={"pick": ","}, headers=admin)
    assert empty.status_code == 400


def test_geojson_feature_and_collection(
    client: TestClient, admin: dict[str, str], entities: Any
) -> None:
    _load(client, admin, entities)
    one = client.get(f"{BASE}/entities/{BH}", headers={**admin, **GEO})
    assert one.status_code == 200
    assert one.headers["content-type"].startswith("application/geo+json")
    assert "ngsi-ld-core-context" in one.headers["link"]
    feature = one.json()
    assert feature["type"] == "Feature"
    assert feature["id"] == BH
    assert feature["geometry"] == {"type": "Point", "coordinates": [106.843, 10.957]}
    assert feature["properties"]["type"] == "AirQualityObserved"
    assert feature["properties"]["pm25"]["value"] == 35.2
    listed = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved,TrafficFlowObserved", "options": "keyValues"},
        headers={**admin, **GEO},
    )
    collection = listed.json()
    assert collection["type"] == "FeatureCollection"
    by_id = {f["id"]: f for f in collection["features"]}
    assert len(by_id) == 4
    assert by_id[QL1A]["geometry"]["type"] == "LineString"
    assert by_id[BH]["properties"]["pm25"] == 35.2
    # pick projects the properties; the geometry still comes from location.
    picked = client.get(
        f"{BASE}/entities/{BH}", params={"pick": "pm25"}, headers={**admin, **GEO}
    ).json()
    assert set(picked["properties"]) == {"pm25"}
    assert picked["geometry"]["type"] == "Point"
    # Concise and count work as for JSON.
    counted = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved", "count": "true", "options": "concise"},
        headers={**admin, **GEO},
    )
    assert counted.headers["ngsild-results-count"] == "3"
    assert all(f["geometry"]["type"] == "Point" for f in counted.json()["features"])


def test_geometry_property_chooses_another_geoproperty(
    client: TestClient, admin: dict[str, str]
) -> None:
    entity = {
        "id": "urn:ngsi-ld:Vehicle:dn-ambulance-1",
        "type": "Vehicle",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.84, 10.95]},
        },
        "destination": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.86, 10.96]},
        },
    }
    assert client.post(f"{BASE}/entities", json=entity, headers=admin).status_code == 201
    url = f"{BASE}/entities/{entity['id']}"
    feature = client.get(url, params={"geometryProperty": "destination"}, headers={**admin, **GEO})
    assert feature.json()["geometry"]["coordinates"] == [106.86, 10.96]
    none = client.get(url, params={"geometryProperty": "nowhere"}, headers={**admin, **GEO})
    assert none.json()["geometry"] is None
    listed = client.get(
        f"{BASE}/entities",
        params={"type": "Vehicle", "geometryProperty": "destination"},
        headers={**admin, **GEO},
    ).json()
    assert listed["features"][0]["geometry"]["coordinates"] == [106.86, 10.96]


def test_geojson_only_where_it_is_offered(
    client: TestClient, admin: dict[str, str], entities: Any
) -> None:
    _load(client, admin, entities)
    types = client.get(f"{BASE}/types", headers={**admin, **GEO})
    assert types.status_code == 406
    temporal = client.get(f"{BASE}/temporal/entities/{BH}", headers={**admin, **GEO})
    assert temporal.status_code == 406
    preferred = client.get(
        f"{BASE}/entities/{BH}",
        headers={**admin, "Accept": "application/json;q=0.5, application/geo+json"},
    )
    assert preferred.headers["content-type"].startswith("application/geo+json")
