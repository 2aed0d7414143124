"""NGSI-LD tenancy: keys bound to a tenant, unknown tenants, and isolation between tenants."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .conftest import BASE

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
BH = "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1"


def _key(client: TestClient, admin: dict[str, str], tenant: str | None) -> dict[str, str]:
    body: dict[str, Any] = {
        "name": f"gateway {tenant}",
        "permissions": ["context:read", "context:write"],
    }
    if tenant is not None:
        body["tenant"] = tenant
    response = client.post("/api/v1/api-keys", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return {"X-API-Key": response.json()["key"], "Content-Type": "application/json"}


def _station(value: float) -> dict[str, Any]:
    return {
        "id": BH,
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.843, 10.957]},
        },
        "pm25": {"type": "Property", "value": value, "observedAt": "2026-11-20T03:00:00Z"},
        "dateObserved": {"type": "Property", "value": "2026-11-20T03:00:00Z"},
    }


def test_key_bound_to_a_tenant_cannot_use_another(
    client: TestClient, admin: dict[str, str]
) -> None:
    key = _key(client, admin, "bien-hoa")
    other = {**key, "NGSILD-Tenant": "long-khanh"}
    calls = [
        client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers=other),
        client.get(f"{BASE}/entities/{BH}", headers=other),
        client.post(f"{BASE}/entities", json=_station(1), headers=other),
        client.post(f"{BASE}/entityOperations/upsert", json=[_station(1)], headers=other),
        client.get(f"{BASE}/temporal/entities/{BH}", headers=other),
        client.get(f"{BASE}/types", headers=other),
        client.delete(f"{BASE}/entities/{BH}", headers=other),
    ]
    assert [(r.status_code, r.json()["type"]) for r in calls] == [(403, ERR + "Forbidden")] * len(
        calls
    )
    # Nothing was written anywhere: the default tenant holds nothing either.
    assert client.get(f"{BASE}/entities/{BH}", headers=admin).status_code == 404


def test_key_bound_to_a_tenant_without_header_uses_its_tenant(
    client: TestClient, admin: dict[str, str]
) -> None:
    key = _key(client, admin, "bien-hoa")
    assert client.post(f"{BASE}/entities", json=_station(35.2), headers=key).status_code == 201
    # Written to bien-hoa, not to the default tenant.
    assert client.get(f"{BASE}/entities/{BH}", headers=admin).status_code == 404
    mine = client.get(f"{BASE}/entities/{BH}", headers={**admin, "NGSILD-Tenant": "bien-hoa"})
    assert mine.json()["pm25"]["value"] == 35.2
    same = client.get(f"{BASE}/entities/{BH}", headers={**key, "NGSILD-Tenant": "bien-hoa"})
    assert same.status_code == 200
    assert client.get(f"{BASE}/entities/{BH}", headers=key).json()["pm25"]["value"] == 35.2
    # Naming the default tenant explicitly is another tenant for a bound key.
    default = client.get(f"{BASE}/entities/{BH}", headers={**key, "NGSILD-Tenant": "default"})
    assert default.status_code == 403


def test_unbound_key_may_use_any_tenant(client: TestClient, admin: dict[str, str]) -> None:
    key = _key(client, admin, None)
    a = {**key, "NGSILD-Tenant": "tenant-a"}
    assert client.post(f"{BASE}/entities", json=_station(1), headers=a).status_code == 201
    assert client.get(f"{BASE}/entities/{BH}", headers=a).status_code == 200
    assert client.get(f"{BASE}/entities/{BH}", headers=key).status_code == 404


def test_unknown_tenant_reads_are_404_nonexistent_tenant(
    client: TestClient, admin: dict[str, str]
) -> None:
    ghost = {**admin, "NGSILD-Tenant": "ghost"}
    reads = [
        client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers=ghost),
        client.get(f"{BASE}/entities/{BH}", headers=ghost),
        client.post(
            f"{BASE}/entityOperations/query",
            json={"type": "Query", "entities": [{"type": "AirQualityObserved"}]},
            headers=ghost,
        ),
        client.get(f"{BASE}/temporal/entities/{BH}", headers=ghost),
        client.get(
            f"{BASE}/temporal/entities", params={"type": "AirQualityObserved"}, headers=ghost
        ),
        client.get(f"{BASE}/types", headers=ghost),
        client.get(f"{BASE}/types/AirQualityObserved", headers=ghost),
        client.get(f"{BASE}/attributes", headers=ghost),
        client.get(f"{BASE}/attributes/pm25", headers=ghost),
    ]
    assert [(r.status_code, r.json()["type"]) for r in reads] == [
        (404, ERR + "NonexistentTenant")
    ] * len(reads)
    # The first write creates the tenant; reads then answer normally.
    assert client.post(f"{BASE}/entities", json=_station(1), headers=ghost).status_code == 201
    listed = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers=ghost)
    assert [e["id"] for e in listed.json()] == [BH]


def test_bad_tenant_name_is_400(client: TestClient, admin: dict[str, str]) -> None:
    for name in ("a b", "x" * 200, "<script>", "tên-có-dấu"):
        response = client.get(
            f"{BASE}/entities",
            params={"type": "AirQualityObserved"},
            headers={**admin, "NGSILD-Tenant": name.encode()},  # type: ignore[dict-item]
        )
        assert response.status_code == 400, name
        assert response.json()["type"] == ERR + "BadRequestData"


def test_tenants_are_isolated(client: TestClient, admin: dict[str, str]) -> None:
    a = {**admin, "NGSILD-Tenant": "bien-hoa"}
    b = {**admin, "NGSILD-Tenant": "long-khanh"}
    assert (
        client.post(f"{BASE}/entityOperations/upsert", json=[_station(80)], headers=a).status_code
        == 204
    )
    assert (
        client.post(f"{BASE}/entityOperations/upsert", json=[_station(10)], headers=b).status_code
        == 204
    )
    later = {
        **_station(90),
        "pm25": {"type": "Property", "value": 90, "observedAt": "2026-11-20T04:00:00Z"},
    }
    assert (
        client.post(f"{BASE}/entityOperations/upsert", json=[later], headers=a).status_code == 204
    )

    def ids(headers: dict[str, str], **params: str) -> list[str]:
        response = client.get(
            f"{BASE}/entities", params={"type": "AirQualityObserved", **params}, headers=headers
        )
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()]

    assert ids(a, q="pm25>50") == [BH]
    assert ids(b, q="pm25>50") == []
    assert ids(b, q="pm25<50") == [BH]
    assert ids(a, q="pm25<50") == []
    near = {
        "georel": "near;maxDistance==100",
        "geometry": "Point",
        "coordinates": "[106.843,10.957]",
    }
    assert ids(a, **near) == ids(b, **near) == [BH]
    assert ids(admin) == []
    assert client.get(f"{BASE}/entities/{BH}", headers=a).json()["pm25"]["value"] == 90
    assert client.get(f"{BASE}/entities/{BH}", headers=b).json()["pm25"]["value"] == 10
    history_a = client.get(f"{BASE}/temporal/entities/{BH}", params={"attrs": "pm25"}, headers=a)
    history_b = client.get(f"{BASE}/temporal/entities/{BH}", params={"attrs": "pm25"}, headers=b)
    assert [i["value"] for i in history_a.json()["pm25"]] == [80, 90]
    assert [i["value"] for i in history_b.json()["pm25"]] == [10]
    counted = client.get(f"{BASE}/types/AirQualityObserved", headers=b).json()["entityCount"]
    assert counted == 1
    # Deleting in one tenant leaves the other's entity alone.
    assert client.delete(f"{BASE}/entities/{BH}", headers=a).status_code == 204
    assert client.get(f"{BASE}/entities/{BH}", headers=a).status_code == 404
    assert client.get(f"{BASE}/entities/{BH}", headers=b).json()["pm25"]["value"] == 10
