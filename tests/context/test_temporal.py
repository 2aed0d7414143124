"""The NGSI-LD temporal API against hand-computed values: timerel, lastN, aggregation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import BASE

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
ST = "urn:ngsi-ld:AirQualityObserved:temporal-1"
URL = f"{BASE}/temporal/entities/{ST}"
# pm25 instances (time, value): three in 00h, one in 01h, none in 02h, two in 03h, one next day.
PM25 = [
    ("2026-11-20T00:10:00Z", 10.0),
    ("2026-11-20T00:30:00Z", 20.0),
    ("2026-11-20T00:50:00Z", 30.0),
    ("2026-11-20T01:05:00Z", 5.0),
    ("2026-11-20T03:15:00Z", 40.0),
    ("2026-11-20T03:45:00Z", 60.0),
    ("2026-11-21T12:00:00Z", 100.0),
]
DAY1 = [v for t, v in PM25 if t.startswith("2026-11-20")]


def _stddev(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@pytest.fixture
def history(client: TestClient, admin: dict[str, str]) -> TestClient:
    """The client, its database holding the pm25 history of one station (and one no2 value)."""
    first_at, first = PM25[0]
    entity = {
        "id": ST,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": first, "observedAt": first_at, "unitCode": "GQ"},
        "no2": {"type": "Property", "value": 7, "observedAt": first_at},
        "dateObserved": {"type": "Property", "value": first_at},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.84, 10.95]},
        },
    }
    assert client.post(f"{BASE}/entities", json=entity, headers=admin).status_code == 201
    instances = [{"type": "Property", "value": v, "observedAt": t} for t, v in PM25[1:]]
    added = client.post(f"{URL}/attrs", json={"pm25": instances}, headers=admin)
    assert added.status_code == 204, added.text
    return client


def _get(client: TestClient, admin: dict[str, str], **params: str) -> Any:
    response = client.get(URL, params={"attrs": "pm25", **params}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def _values(client: TestClient, admin: dict[str, str], **params: str) -> list[float]:
    return [i["value"] for i in _get(client, admin, **params)["pm25"]]


def test_full_history_in_time_order(history: TestClient, admin: dict[str, str]) -> None:
    body = _get(history, admin)
    assert body["id"] == ST
    assert [(i["observedAt"], i["value"]) for i in body["pm25"]] == [
        (t.replace(":00Z", ":00.000Z"), v) for t, v in PM25
    ]
    assert "no2" not in body
    both = history.get(URL, params={"attrs": "pm25,no2"}, headers=admin).json()
    assert [i["value"] for i in both["no2"]] == [7]


def test_timerel_before_after_between(history: TestClient, admin: dict[str, str]) -> None:
    assert _values(history, admin, timerel="before", timeAt="2026-11-20T00:45:00Z") == [10, 20]
    assert _values(history, admin, timerel="after", timeAt="2026-11-20T03:00:00Z") == [40, 60, 100]
    assert _values(
        history,
        admin,
        timerel="between",
        timeAt="2026-11-20T00:20:00Z",
        endTimeAt="2026-11-20T03:20:00Z",
    ) == [20, 30, 5, 40]
    # Offsets are honoured: 07:20 in Đồng Nai is 00:20 UTC.
    assert _values(history, admin, timerel="before", timeAt="2026-11-20T07:20:00+07:00") == [10]


def test_last_n(history: TestClient, admin: dict[str, str]) -> None:
    assert _values(history, admin, lastN="2") == [60, 100]
    assert _values(history, admin, lastN="100") == [v for _, v in PM25]
    assert _values(history, admin, lastN="2", timerel="before", timeAt="2026-11-20T03:00:00Z") == [
        30,
        5,
    ]


def test_temporal_values(history: TestClient, admin: dict[str, str]) -> None:
    body = _get(
        history,
        admin,
        options="temporalValues",
        timerel="between",
        timeAt="2026-11-20T01:00:00Z",
        endTimeAt="2026-11-20T04:00:00Z",
    )
    assert body["pm25"] == {
        "type": "Property",
        "values": [
            [5.0, "2026-11-20T01:05:00.000Z"],
            [40.0, "2026-11-20T03:15:00.000Z"],
            [60.0, "2026-11-20T03:45:00.000Z"],
        ],
    }


def _aggregated(client: TestClient, admin: dict[str, str], **params: str) -> dict[str, Any]:
    body = _get(client, admin, aggrMethods="totalCount,sum,avg,min,max,stddev", **params)
    pm25: dict[str, Any] = body["pm25"]
    return pm25


def test_hourly_aggregation(history: TestClient, admin: dict[str, str]) -> None:
    pm25 = _aggregated(
        history,
        admin,
        aggrPeriodDuration="PT1H",
        timerel="between",
        timeAt="2026-11-20T00:00:00Z",
        endTimeAt="2026-11-20T04:00:00Z",
    )
    hours = [
        ["2026-11-20T00:00:00.000Z", "2026-11-20T01:00:00.000Z"],
        ["2026-11-20T01:00:00.000Z", "2026-11-20T02:00:00.000Z"],
        ["2026-11-20T03:00:00.000Z", "2026-11-20T04:00:00.000Z"],
    ]
    assert [a[1:] for a in pm25["avg"]] == hours  # 02h holds no instance
    assert [a[0] for a in pm25["totalCount"]] == [3, 1, 2]
    assert [a[0] for a in pm25["sum"]] == [60, 5, 100]
    assert [a[0] for a in pm25["avg"]] == [20, 5, 50]
    assert [a[0] for a in pm25["min"]] == [10, 5, 40]
    assert [a[0] for a in pm25["max"]] == [30, 5, 60]
    assert [a[0] for a in pm25["stddev"]] == pytest.approx(
        [math.sqrt(200 / 3), 0.0, 10.0], abs=1e-9
    )


def test_daily_aggregation(history: TestClient, admin: dict[str, str]) -> None:
    pm25 = _aggregated(
        history,
        admin,
        aggrPeriodDuration="P1D",
        timerel="between",
        timeAt="2026-11-20T00:00:00Z",
        endTimeAt="2026-11-22T00:00:00Z",
    )
    assert [a[1:] for a in pm25["sum"]] == [
        ["2026-11-20T00:00:00.000Z", "2026-11-21T00:00:00.000Z"],
        ["2026-11-21T00:00:00.000Z", "2026-11-22T00:00:00.000Z"],
    ]
    assert [a[0] for a in pm25["totalCount"]] == [6, 1]
    assert [a[0] for a in pm25["sum"]] == [165, 100]
    assert [a[0] for a in pm25["avg"]] == [27.5, 100]
    assert [a[0] for a in pm25["min"]] == [5, 100]
    assert [a[0] for a in pm25["max"]] == [60, 100]
    assert [a[0] for a in pm25["stddev"]] == pytest.approx([_stddev(DAY1), 0.0], abs=1e-9)
    assert _stddev(DAY1) == pytest.approx(18.6525, abs=1e-4)


def test_aggregation_over_a_query_of_entities(history: TestClient, admin: dict[str, str]) -> None:
    response = history.get(
        f"{BASE}/temporal/entities",
        params={
            "type": "AirQualityObserved",
            "attrs": "pm25",
            "aggrMethods": "max",
            "aggrPeriodDuration": "P1D",
            "timerel": "after",
            "timeAt": "2026-11-20T00:00:00Z",
        },
        headers=admin,
    )
    assert response.status_code == 200, response.text
    (station,) = response.json()
    assert station["id"] == ST
    assert [a[0] for a in station["pm25"]["max"]] == [60, 100]


BAD = [
    {"timerel": "during", "timeAt": "2026-11-20T00:00:00Z"},
    {"timerel": "before"},
    {"timeAt": "2026-11-20T00:00:00Z"},
    {"timerel": "between", "timeAt": "2026-11-20T00:00:00Z"},
    {"timerel": "between", "timeAt": "2026-11-20T04:00:00Z", "endTimeAt": "2026-11-20T00:00:00Z"},
    {"timerel": "before", "timeAt": "yesterday"},
    {"timerel": "before", "timeAt": "2026-11-20T25:00:00Z"},
    {"lastN": "0"},
    {"lastN": "-1"},
    {"lastN": "abc"},
    {"aggrMethods": "median", "aggrPeriodDuration": "PT1H"},
    {"aggrMethods": "avg", "aggrPeriodDuration": "PT"},
    {"aggrMethods": "avg", "aggrPeriodDuration": "1H"},
    {"aggrMethods": "avg", "aggrPeriodDuration": "P-1D"},
    {"aggrMethods": "avg", "aggrPeriodDuration": "PT0S"},
    {"aggrMethods": "", "aggrPeriodDuration": "PT1H"},
    {"options": "temporalValues,nonsense"},
    {"unknownParameter": "1"},
]


def test_bad_temporal_parameters_are_400(history: TestClient, admin: dict[str, str]) -> None:
    answers = []
    for params in BAD:
        response = history.get(URL, params={"attrs": "pm25", **params}, headers=admin)
        answers.append((response.status_code, response.json().get("type")))
    assert answers == [(400, ERR + "BadRequestData")] * len(BAD)
    missing = history.get(f"{BASE}/temporal/entities/urn:ngsi-ld:X:none", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["type"] == ERR + "ResourceNotFound"
