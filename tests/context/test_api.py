"""The NGSI-LD API: entities, attributes, queries, batch, temporal, discovery, tenancy, scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.context.models import Entity
from cityops.core.clock import FrozenClock
from cityops.core.events import Event
from cityops.core.runtime import Runtime

from .conftest import BASE

BH = "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1"
HN = "urn:ngsi-ld:AirQualityObserved:ha-noi-1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"


def _load(client: TestClient, admin: dict[str, str], entities: list[dict[str, Any]]) -> None:
    response = client.post(f"{BASE}/entityOperations/upsert", json=entities, headers=admin)
    assert response.status_code == 204, response.text


def test_create_get_and_conflict(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    response = client.post(f"{BASE}/entities", json=entities[0], headers=admin)
    assert response.status_code == 201
    assert response.headers["location"] == f"{BASE}/entities/{BH}"
    again = client.post(f"{BASE}/entities/", json=entities[0], headers=admin)
    assert again.status_code == 409
    assert again.json()["type"] == ERR + "AlreadyExists"
    got = client.get(f"{BASE}/entities/{BH}", headers=admin)
    assert got.status_code == 200
    assert got.json()["pm25"]["value"] == 35.2
    assert got.json()["pm25"]["unitCode"] == "GQ"
    assert "ngsi-ld-core-context" in got.headers["link"]
    missing = client.get(f"{BASE}/entities/urn:ngsi-ld:X:none", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["type"] == ERR + "ResourceNotFound"


def test_representations(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    _load(client, admin, entities)
    key_values = client.get(f"{BASE}/entities/{BH}?options=keyValues", headers=admin).json()
    assert key_values["pm25"] == 35.2
    concise = client.get(f"{BASE}/entities/{BH}?options=concise", headers=admin).json()
    assert concise["name"] == "Trạm quan trắc Biên Hòa 1"
    assert concise["pm25"] == {
        "value": 35.2,
        "unitCode": "GQ",
        "observedAt": "2026-11-20T03:00:00.000Z",
    }
    road = client.get(
        f"{BASE}/entities/urn:ngsi-ld:TrafficFlowObserved:ql1a-km1850?lang=en", headers=admin
    ).json()["roadName"]
    assert road["value"] == "National Road 1A"
    assert road["lang"] == "en"
    sys = client.get(f"{BASE}/entities/{BH}?options=sysAttrs", headers=admin).json()
    assert sys["createdAt"] == "2026-11-20T03:00:00.000Z"
    ld = client.get(f"{BASE}/entities/{BH}", headers={**admin, "Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json")
    assert "@context" in ld.json()


def test_media_types(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    xml = client.post(
        f"{BASE}/entities", content=b"<x/>", headers={**admin, "Content-Type": "application/xml"}
    )
    assert xml.status_code == 415
    no = client.get(f"{BASE}/entities?type=A", headers={**admin, "Accept": "text/csv"})
    assert no.status_code == 406
    broken = client.post(
        f"{BASE}/entities", content=b"{", headers={**admin, "Content-Type": "application/json"}
    )
    assert broken.status_code == 400


def test_user_context_in_body_and_link(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    ctx = {"sdm": "https://smartdatamodels.org/", "pm25": "sdm:pm25"}
    entity = {"id": "urn:ngsi-ld:X:1", "type": "X", "pm25": 1, "@context": ctx}
    response = client.post(
        f"{BASE}/entities", json=entity, headers={**admin, "Content-Type": "application/ld+json"}
    )
    assert response.status_code == 201, response.text
    plain = client.get(f"{BASE}/entities/urn:ngsi-ld:X:1", headers=admin).json()
    assert plain["https://smartdatamodels.org/pm25"]["value"] == 1
    posted = client.post(f"{BASE}/jsonldContexts", json={"@context": ctx}, headers=admin)
    assert posted.status_code == 201
    url = "http://testserver" + posted.headers["location"]
    link = f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    linked = client.get(f"{BASE}/entities/urn:ngsi-ld:X:1", headers={**admin, "Link": link})
    assert linked.json()["pm25"]["value"] == 1
    served = client.get(f"{BASE}{posted.headers['location'].removeprefix(BASE)}", headers=admin)
    assert served.json() == {"@context": ctx}


def test_unreachable_context_is_503(client: TestClient, admin: dict[str, str]) -> None:
    # Port 9 on localhost refuses: no internet is needed for the failure.
    link = '<http://127.0.0.1:9/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
    response = client.get(f"{BASE}/entities?type=A", headers={**admin, "Link": link})
    assert response.status_code == 503
    assert response.json()["type"] == ERR + "LdContextNotAvailable"


def test_query_q_and_count(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    _load(client, admin, entities)

    def ids(**params: str) -> list[str]:
        response = client.get(f"{BASE}/entities", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()]

    assert ids(type="AirQualityObserved", q="pm25>20") == [BH, HN]
    assert ids(type="AirQualityObserved", q="pm25==18..36") == [
        BH,
        "urn:ngsi-ld:AirQualityObserved:dn-long-khanh-1",
    ]
    assert ids(type="AirQualityObserved", q='airQualityLevel=="good","moderate";pm25<30') == [
        "urn:ngsi-ld:AirQualityObserved:dn-long-khanh-1"
    ]
    assert ids(type="AirQualityObserved", q="!airQualityLevel") == [HN]
    assert ids(type="AirQualityObserved,WaterObserved", q="height|pm10") == [
        BH,
        "urn:ngsi-ld:WaterObserved:tri-an-reservoir",
    ]
    assert ids(q="name~=Trị") == ["urn:ngsi-ld:WaterObserved:tri-an-reservoir"]
    assert ids(type="UnknownType") == []
    assert ids(idPattern=".*long-khanh.*") == ["urn:ngsi-ld:AirQualityObserved:dn-long-khanh-1"]
    counted = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved", "limit": "0", "count": "true"},
        headers=admin,
    )
    assert counted.headers["ngsild-results-count"] == "3"
    assert counted.json() == []
    too_many = client.get(
        f"{BASE}/entities", params={"type": "A", "limit": "100000"}, headers=admin
    )
    assert too_many.status_code == 400
    assert too_many.json()["type"] == ERR + "TooManyResults"
    posted = client.post(
        f"{BASE}/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "WaterObserved"}], "q": "height>60"},
        headers=admin,
    )
    assert [e["id"] for e in posted.json()] == ["urn:ngsi-ld:WaterObserved:tri-an-reservoir"]


def test_geo_queries(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    _load(client, admin, entities)
    near = client.get(
        f"{BASE}/entities",
        params={
            "type": "AirQualityObserved",
            "georel": "near;maxDistance==2000",
            "geometry": "Point",
            "coordinates": "[106.84,10.955]",
        },
        headers=admin,
    )
    assert [e["id"] for e in near.json()] == [BH]
    within = client.get(
        f"{BASE}/entities",
        params={
            "type": "TrafficFlowObserved,AirQualityObserved",
            "georel": "intersects",
            "geometry": "Polygon",
            "coordinates": "[[[106.8,10.9],[106.9,10.9],[106.9,11.0],[106.8,11.0],[106.8,10.9]]]",
        },
        headers=admin,
    )
    assert [e["id"] for e in within.json()] == [BH, "urn:ngsi-ld:TrafficFlowObserved:ql1a-km1850"]
    for bad in (
        {"georel": "near", "geometry": "Point", "coordinates": "[106.8,10.9]"},
        {"georel": "within", "geometry": "Point", "coordinates": "[1000,10]"},
        {"georel": "near;maxDistance==-1", "geometry": "Point", "coordinates": "[1,1]"},
        {"georel": "within", "geometry": "Circle", "coordinates": "[1,1]"},
        {"georel": "within", "geometry": "Point", "coordinates": "not json"},
    ):
        response = client.get(f"{BASE}/entities", params={"type": "A", **bad}, headers=admin)
        assert response.status_code == 400, bad
        assert response.json()["type"] == ERR + "BadRequestData"


def test_batch_partial_and_delete(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    body = [
        entities[0],
        {"id": "not a uri", "type": "X"},
        {"id": "urn:x:2", "type": "X", "a": None},
    ]
    response = client.post(f"{BASE}/entityOperations/create", json=body, headers=admin)
    assert response.status_code == 207
    assert response.json()["success"] == [BH]
    assert len(response.json()["errors"]) == 2
    deleted = client.post(f"{BASE}/entityOperations/delete", json=[BH, "urn:x:none"], headers=admin)
    assert deleted.status_code == 207
    assert deleted.json()["success"] == [BH]
    too_big = [{"id": f"urn:x:{i}", "type": "X"} for i in range(1001)]
    assert (
        client.post(f"{BASE}/entityOperations/upsert", json=too_big, headers=admin).status_code
        == 400
    )


def test_attribute_operations(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    _load(client, admin, entities)
    url = f"{BASE}/entities/{BH}"
    assert (
        client.post(f"{url}/attrs", json={"no2": {"value": 12}}, headers=admin).status_code == 204
    )
    partial = client.patch(
        f"{url}/attrs", json={"pm25": {"value": 40}, "o3": {"value": 1}}, headers=admin
    )
    assert partial.status_code == 207
    assert partial.json()["updated"] == ["pm25"]
    assert client.patch(f"{url}/attrs/pm10", json={"value": 70}, headers=admin).status_code == 204
    assert (
        client.put(
            f"{url}/attrs/no2", json={"type": "Property", "value": 13}, headers=admin
        ).status_code
        == 204
    )
    assert client.delete(f"{url}/attrs/airQualityLevel", headers=admin).status_code == 204
    assert client.delete(f"{url}/attrs/airQualityLevel", headers=admin).status_code == 404
    got = client.get(url, params={"options": "keyValues"}, headers=admin).json()
    assert (got["pm25"], got["pm10"], got["no2"]) == (40, 70, 13)
    assert "airQualityLevel" not in got
    merged = client.patch(url, json={"no2": "urn:ngsi-ld:null", "pm25": 9}, headers=admin)
    assert merged.status_code == 204
    got = client.get(url, params={"options": "keyValues"}, headers=admin).json()
    assert "no2" not in got
    assert got["pm25"] == 9
    # A replacement is a whole entity: the model's required members must be there.
    incomplete = client.put(url, json={"type": "AirQualityObserved", "pm25": 1}, headers=admin)
    assert incomplete.status_code == 400
    whole = {
        "type": "AirQualityObserved",
        "pm25": 1,
        "dateObserved": "2026-11-20T04:00:00Z",
        "location": {"type": "Point", "coordinates": [106.843, 10.957]},
    }
    replaced = client.put(url, json=whole, headers=admin)
    assert replaced.status_code == 204
    assert set(client.get(url, params={"options": "keyValues"}, headers=admin).json()) == {
        "id",
        "type",
        "pm25",
        "dateObserved",
        "location",
    }
    assert client.delete(url, headers=admin).status_code == 204
    assert client.get(url, headers=admin).status_code == 404


def test_unit_tagging(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime
) -> None:
    _load(client, admin, entities)
    with runtime.session_factory() as session:
        units = dict(session.execute(select(Entity.entity_id, Entity.unit_code)).all())
    assert units[BH] is not None
    assert units[BH].startswith("26")
    assert units[HN] is None


def test_scope_and_auth(
    client: TestClient,
    admin: dict[str, str],
    entities: Any,
    runtime: Runtime,
    login_as: Callable[..., dict[str, str]],
) -> None:
    _load(client, admin, entities)
    assert client.get(f"{BASE}/entities?type=AirQualityObserved").status_code == 401
    with runtime.session_factory() as session:
        ward = session.execute(select(Entity.unit_code).where(Entity.entity_id == BH)).scalar_one()
    officer = login_as("unit_officer", unit_code=ward)
    seen = client.get(f"{BASE}/entities?type=AirQualityObserved", headers=officer).json()
    assert [e["id"] for e in seen] == [BH]
    hidden = client.get(f"{BASE}/entities/{HN}", headers=officer)
    assert hidden.status_code == 404
    write = client.post(
        f"{BASE}/entities",
        json={"id": "urn:x:1", "type": "X"},
        headers={**officer, "Content-Type": "application/json"},
    )
    assert write.status_code == 403


def test_tenants(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    other = {**admin, "NGSILD-Tenant": "bien-hoa"}
    assert client.get(f"{BASE}/entities?type=AirQualityObserved", headers=other).status_code == 404
    _load(client, other, entities[:1])
    assert len(client.get(f"{BASE}/entities?type=AirQualityObserved", headers=other).json()) == 1
    assert client.get(f"{BASE}/entities?type=AirQualityObserved", headers=admin).json() == []


def test_temporal(
    client: TestClient, admin: dict[str, str], entities: Any, clock: FrozenClock
) -> None:
    _load(client, admin, entities[:1])
    values = [(f"2026-11-20T03:{m:02d}:00Z", v) for m, v in ((10, 30.0), (40, 40.0))] + [
        (f"2026-11-20T04:{m:02d}:00Z", v) for m, v in ((5, 10.0), (20, 20.0), (50, 60.0))
    ]
    for at, value in values:
        body = [
            {
                "id": BH,
                "type": "AirQualityObserved",
                "pm25": {"type": "Property", "value": value, "observedAt": at},
            }
        ]
        assert (
            client.post(f"{BASE}/entityOperations/upsert", json=body, headers=admin).status_code
            == 204
        )
    url = f"{BASE}/temporal/entities/{BH}"
    aggregated = client.get(
        url,
        params={
            "attrs": "pm25",
            "aggrMethods": "avg,min,max,sum,totalCount,stddev",
            "aggrPeriodDuration": "PT1H",
            "timerel": "between",
            "timeAt": "2026-11-20T03:00:00Z",
            "endTimeAt": "2026-11-20T05:00:00Z",
        },
        headers=admin,
    ).json()["pm25"]
    # 03:00-04:00 holds 35.2 (fixture), 30, 40; 04:00-05:00 holds 10, 20, 60.
    assert [a[0] for a in aggregated["totalCount"]] == [3, 3]
    assert [round(a[0], 4) for a in aggregated["avg"]] == [round(105.2 / 3, 4), 30.0]
    assert [a[0] for a in aggregated["min"]] == [30.0, 10.0]
    assert [a[0] for a in aggregated["max"]] == [40.0, 60.0]
    assert round(aggregated["stddev"][1][0], 4) == round(
        (((10 - 30) ** 2 + (20 - 30) ** 2 + (60 - 30) ** 2) / 3) ** 0.5, 4
    )
    assert aggregated["avg"][1][1:] == ["2026-11-20T04:00:00.000Z", "2026-11-20T05:00:00.000Z"]
    last = client.get(url, params={"attrs": "pm25", "lastN": "2"}, headers=admin).json()["pm25"]
    assert [i["value"] for i in last] == [20.0, 60.0]
    values_only = client.get(
        url,
        params={
            "attrs": "pm25",
            "options": "temporalValues",
            "timerel": "before",
            "timeAt": "2026-11-20T03:30:00Z",
        },
        headers=admin,
    ).json()["pm25"]
    assert values_only["values"] == [
        [35.2, "2026-11-20T03:00:00.000Z"],
        [30.0, "2026-11-20T03:10:00.000Z"],
    ]
    bad = client.get(
        url, params={"aggrMethods": "median", "aggrPeriodDuration": "PT1H"}, headers=admin
    )
    assert bad.status_code == 400


def test_discovery(client: TestClient, admin: dict[str, str], entities: Any) -> None:
    _load(client, admin, entities)
    types = client.get(f"{BASE}/types", headers=admin).json()
    assert types["typeList"] == ["AirQualityObserved", "TrafficFlowObserved", "WaterObserved"]
    info = client.get(f"{BASE}/types/AirQualityObserved", headers=admin).json()
    assert info["entityCount"] == 3
    attr = client.get(f"{BASE}/attributes/pm25", headers=admin).json()
    assert attr["attributeCount"] == 3
    assert attr["typeNames"] == ["AirQualityObserved"]
    assert client.get(f"{BASE}/types/Nothing", headers=admin).status_code == 404


def test_events_after_commit_and_only_on_change(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime
) -> None:
    seen: list[Event] = []
    runtime.bus.subscribe("*", seen.append)
    _load(client, admin, entities[:1])
    changed = [e for e in seen if e.type == "context.attribute_changed"]
    assert {e.data["attribute"] for e in changed} == {
        "name",
        "location",
        "pm25",
        "pm10",
        "airQualityLevel",
        "dateObserved",
    }
    pm25 = next(e for e in changed if e.data["attribute"] == "pm25")
    assert pm25.data["entity_type"] == "AirQualityObserved"
    assert pm25.data["unit_code"] is not None
    assert pm25.data["unitCode"] == "GQ"
    seen.clear()
    _load(client, admin, entities[:1])
    assert seen == []
