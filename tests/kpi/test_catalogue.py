"""The indicator catalogue: seeded from the profile, edited through the API, and a formula
naming an unknown input refused with the field and the name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from cityops.kpi import flows, inputs, service

API = "/api/v1/kpi"

NEW: dict[str, Any] = {
    "code": "X1",
    "key": "environment.pm25_peak_share",
    "name": "Tỷ lệ ngày bụi mịn vượt chuẩn",
    "name_en": "PM2.5 exceedance share",
    "sector": "environment",
    "unit": "%",
    "direction": "down",
    "formula": "pm25_exceed_days / pm25_days * 100",
    "frequency": "M",
    "target_2025": 10,
    "target_2030": 5,
    "reference": "QCVN 05:2023",
}


def test_the_profile_catalogue_covers_every_sector_with_known_inputs() -> None:
    catalogue = flows.load_catalogue("dongnai")
    per_sector = Counter(str(i.sector) for i in catalogue)
    assert set(per_sector) == {
        "health", "education", "transport", "environment", "construction", "social",
        "public_order", "egov",
    }  # fmt: skip
    assert all(6 <= n <= 8 for s, n in per_sector.items() if s != "egov"), per_sector
    assert per_sector["egov"] >= 8
    for indicator in catalogue:
        assert service.check_formula(indicator.formula, list(inputs.INPUTS)) == [], indicator.code
        assert indicator.name
        assert indicator.name_en
        assert indicator.reference


def test_population_covers_the_95_units_and_sums_to_the_province() -> None:
    rows = flows.load_population("dongnai")
    by_year: dict[int, dict[str, int]] = {}
    for unit, year, population in rows:
        by_year.setdefault(year, {})[unit] = population
    assert set(by_year) == {2024, 2025, 2026}
    assert len(by_year[2025]) == 95
    assert sum(by_year[2025].values()) == 4_576_125  # facts.md, 2025


def test_a_formula_with_an_unknown_input_is_refused_naming_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = NEW | {"formula": "pm25_exceed_days / rainy_days * 100"}
    response = client.post(f"{API}/indicators", json=body, headers=admin)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "formula"
    assert "rainy_days" in error["message"]
    vi = client.post(f"{API}/indicators", json=body, headers={**admin, "Accept-Language": "vi"})
    assert "đầu vào không xác định: rainy_days" in vi.json()["errors"][0]["message"]
    assert client.get(f"{API}/indicators/X1", headers=admin).status_code == 404


def test_code_is_refused_in_a_formula(client: TestClient, admin: dict[str, str]) -> None:
    body = NEW | {"formula": "__import__('os').getpid()"}
    response = client.post(f"{API}/indicators", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "formula"


def test_create_change_and_delete_an_indicator(client: TestClient, admin: dict[str, str]) -> None:
    created = client.post(f"{API}/indicators", json=NEW, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["inputs"] == ["pm25_exceed_days", "pm25_days"]
    again = client.post(f"{API}/indicators", json=NEW, headers=admin)
    assert again.status_code == 409
    bad = client.patch(f"{API}/indicators/X1", json={"formula": "nothing / 2"}, headers=admin)
    assert bad.status_code == 422
    changed = client.patch(f"{API}/indicators/X1", json={"target_2030": 3}, headers=admin)
    assert changed.json()["target_2030"] == 3
    assert changed.json()["formula"] == NEW["formula"]
    assert client.delete(f"{API}/indicators/X1", headers=admin).status_code == 204
    assert client.get(f"{API}/indicators/X1", headers=admin).status_code == 404


def test_everyone_reads_only_administrators_edit(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    viewer = login_as("viewer")
    listed = client.get(f"{API}/indicators", params={"sector": "egov"}, headers=viewer)
    assert listed.status_code == 200
    assert {i["code"] for i in listed.json()["items"]} >= {"G1", "G5", "G6"}
    assert client.post(f"{API}/indicators", json=NEW, headers=viewer).status_code == 403
    leader = login_as("leader")
    assert (
        client.post(f"{API}/compute", json={"day": "2026-10-01"}, headers=leader).status_code == 403
    )
    registry = client.get(f"{API}/inputs", headers=leader).json()
    # Every source is connected now (the sector statistics last).
    assert not [i["name"] for i in registry if i["pending"]]
    sources = {i["name"]: i["source"] for i in registry}
    assert sources["physicians"] == sources["under5_deaths"] == "statistics"
    assert client.get(f"{API}/indicators").status_code == 401


def test_a_duplicate_key_is_a_conflict_naming_it(client: TestClient, admin: dict[str, str]) -> None:
    body = NEW | {"code": "X2", "key": "environment.pm25_mean"}
    response = client.post(f"{API}/indicators", json=body, headers=admin)
    assert response.status_code == 409
    assert "environment.pm25_mean" in response.json()["detail"]
