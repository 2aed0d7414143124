"""Rules as data: the seeded Đồng Nai pack, the API (with every refusal explained), YAML import
over HTTP and on the command line (all or nothing), and who may change rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cityops.cli import app as cli
from cityops.core.config import Settings

from .conftest import API

YAML = {"Content-Type": "application/yaml"}

GOOD_YAML = """
rules:
  - code: noise-night
    name_vi: "Tiếng ồn ban đêm vượt 55 dB(A)"
    name_en: "Night noise above 55 dB(A)"
    kind: threshold
    entity_type: NoiseLevelObserved
    attribute: LAeq
    condition: {op: ">", value: 55, hysteresis: 3, min_duration_seconds: 900}
    area_code: bien-hoa-cu
    schedule: {days: [1, 2, 3, 4, 5, 6, 7], start: "22:00", end: "06:00"}
    severity: low
    sector: environment
    policy: {incident: null, notify: [ioc]}
  - code: noise-and-heat
    name_vi: "Ồn và nóng"
    name_en: "Noise and heat"
    kind: composite
    condition: {mode: all, rules: [noise-night, aqi-poor]}
    severity: medium
"""


def _errors(response: Any) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = response.json()["errors"]
    return errors


def test_the_seeded_pack_matches_the_simulator(client: TestClient, admin: dict[str, str]) -> None:
    page = client.get(f"{API}/rules", params={"limit": 100}, headers=admin).json()
    rules = {r["code"]: r for r in page["items"]}
    assert page["total"] == len(rules) >= 14
    aqi = rules["aqi-bad"]
    assert (aqi["entity_type"], aqi["attribute"]) == ("AirQualityObserved", "airQualityIndex")
    assert aqi["condition"]["value"] == 150
    assert aqi["policy"] == {
        "incident": {"category": "air_pollution", "department_code": "SNNMT"},
        "notify": ["ioc"],
    }
    assert [rules[f"aqi-{b}"]["severity"] for b in ("poor", "bad", "very-bad", "hazardous")] == [
        "low",
        "medium",
        "high",
        "critical",
    ]
    river = rules["river-bien-hoa-alarm-3"]
    assert (river["entity_type"], river["attribute"], river["unit_codes"]) == (
        "WaterObserved",
        "waterLevel",
        ["26068"],
    )
    assert river["policy"]["incident"]["category"] == "flooding"
    assert rules["reservoir-tri-an-below-dead"]["condition"]["value"] == 50.0
    assert rules["traffic-congestion"]["attribute"] == "travelTimeIndex"
    assert rules["traffic-congestion"]["policy"]["incident"]["department_code"] == "SXD"
    hospital = rules["hospital-bed-occupancy"]
    assert (hospital["entity_type"], hospital["attribute"]) == ("PointOfInterest", "bedOccupancy")
    assert hospital["policy"]["incident"] == {
        "category": "hospital_overload",
        "department_code": "SYT",
    }
    waste = rules["waste-container-full"]
    assert (waste["attribute"], waste["condition"]["value"]) == ("fillingLevel", 0.9)
    offline = rules["device-offline"]
    assert (offline["kind"], offline["severity"], offline["policy"]["incident"]) == (
        "missing_data",
        "low",
        None,
    )
    only = client.get(f"{API}/rules", params={"kind": "missing_data"}, headers=admin).json()
    assert [r["code"] for r in only["items"]] == ["device-offline"]


def test_create_read_change_and_delete(
    client: TestClient, admin: dict[str, str], make_rule: Callable[..., dict[str, Any]]
) -> None:
    rule = make_rule(unit_codes=["731"])  # the former Biên Hòa city
    assert rule["unit_codes"] == ["731"]
    assert rule["enabled"] is True
    again = client.post(f"{API}/rules", json={**_body(), "code": "test-level-high"}, headers=admin)
    assert again.status_code == 409
    url = f"{API}/rules/{rule['id']}"
    assert client.get(url, headers=admin).json()["code"] == "test-level-high"
    changed = client.patch(url, json={"severity": "critical", "unit_codes": None}, headers=admin)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["severity"], changed.json()["unit_codes"]) == ("critical", None)
    refused = client.patch(url, json={"condition": {"op": ">"}}, headers=admin)
    assert refused.status_code == 422
    assert [e["field"] for e in _errors(refused)] == ["condition.value"]
    assert client.get(url, headers=admin).json()["condition"]["value"] == 10
    assert client.delete(url, headers=admin).status_code == 204
    assert client.get(url, headers=admin).status_code == 404
    audit = client.get(
        f"{API}/audit",
        params={"resource_type": "alert_rule", "resource_id": str(rule["id"])},
        headers=admin,
    ).json()
    assert sorted(e["action"] for e in audit["items"]) == ["create", "delete", "update"]


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "t-rule",
        "name_vi": "Quy tắc thử",
        "name_en": "Test rule",
        "kind": "threshold",
        "entity_type": "TestSensor",
        "attribute": "level",
        "condition": {"op": ">", "value": 1},
        "severity": "low",
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    ("overrides", "field", "needle_en"),
    [
        ({"kind": "sometimes"}, "kind", "choose one of"),
        ({"condition": {"value": 3}}, "condition.op", "required"),
        ({"condition": {"op": ">", "value": "high"}}, "condition", "needs a number"),
        ({"condition": {"op": ">", "value": 3, "window": 5}}, "condition.window", "not accepted"),
        (
            {"condition": {"op": ">", "value": 3, "hysteresis": -1}},
            "condition.hysteresis",
            "at least",
        ),
        ({"entity_type": None}, "entity_type", "Required for a rule of kind threshold"),
        ({"unit_codes": ["99999"]}, "unit_codes", "no administrative unit with code 99999"),
        ({"area_code": "nowhere"}, "area_code", "no area with code nowhere"),
        ({"sector": "space"}, "sector", "No department owns the sector space"),
        (
            {"policy": {"incident": {"category": "alien_landing"}}},
            "policy.incident.category",
            "Unknown incident category alien_landing",
        ),
        (
            {"policy": {"incident": {"category": "other", "department_code": "SXYZ"}}},
            "policy.incident.department_code",
            "no department with code SXYZ",
        ),
        ({"schedule": {"start": "08:00"}}, "schedule", "both start and end"),
        ({"schedule": {"start": "25:00", "end": "26:00"}}, "schedule.start", "format"),
        (
            {
                "kind": "rate_of_change",
                "condition": {"window_minutes": 10, "limit": 1, "hysteresis": 2},
            },
            "condition",
            "smaller than the limit",
        ),
        (
            {"kind": "geo_fence", "condition": {"trigger": "enter"}},
            "condition",
            "area_code or as unit_codes",
        ),
        (
            {
                "kind": "composite",
                "entity_type": None,
                "attribute": None,
                "condition": {"mode": "all", "rules": ["aqi-bad", "no-such-rule"]},
            },
            "condition.rules[1]",
            "no rule with code no-such-rule",
        ),
        ({"kind": "missing_data", "condition": {}}, "attribute", "Not used by a rule of kind"),
    ],
)
def test_an_invalid_rule_is_refused_with_the_reason(
    client: TestClient,
    admin: dict[str, str],
    overrides: dict[str, Any],
    field: str,
    needle_en: str,
) -> None:
    response = client.post(
        f"{API}/rules", json=_body(**overrides), headers={**admin, "Accept-Language": "en"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = _errors(response)
    match = [e for e in errors if e["field"] == field]
    assert match, errors
    assert needle_en.lower() in match[0]["message"].lower(), errors
    vietnamese = client.post(f"{API}/rules", json=_body(**overrides), headers=admin)
    assert vietnamese.status_code == 422
    assert client.get(f"{API}/rules", params={"q": "t-rule"}, headers=admin).json()["total"] == 0


def test_composites_refuse_cycles_and_protect_their_members(
    client: TestClient, admin: dict[str, str], make_rule: Callable[..., dict[str, Any]]
) -> None:
    composite = {"kind": "composite", "entity_type": None, "attribute": None}
    inner = make_rule(
        code="c-inner", **composite, condition={"mode": "any", "rules": ["aqi-bad", "aqi-poor"]}
    )
    make_rule(
        code="c-outer", **composite, condition={"mode": "all", "rules": ["c-inner", "aqi-poor"]}
    )
    looped = client.patch(
        f"{API}/rules/{inner['id']}",
        json={"condition": {"mode": "any", "rules": ["c-outer", "aqi-bad"]}},
        headers={**admin, "Accept-Language": "en"},
    )
    assert looped.status_code == 422
    (error,) = _errors(looped)
    assert error["field"] == "condition.rules"
    assert "c-inner → c-outer → c-inner" in error["message"]
    member = client.get(f"{API}/rules", params={"q": "aqi-bad"}, headers=admin).json()["items"][0]
    blocked = client.delete(
        f"{API}/rules/{member['id']}", headers={**admin, "Accept-Language": "vi"}
    )
    assert blocked.status_code == 409
    assert "c-inner" in blocked.json()["detail"]
    self_loop = client.post(
        f"{API}/rules",
        json=_body(
            code="c-self", **composite, condition={"mode": "all", "rules": ["c-self", "aqi-bad"]}
        ),
        headers=admin,
    )
    assert self_loop.status_code == 422


def test_yaml_import_creates_then_updates_and_is_idempotent(
    client: TestClient, admin: dict[str, str]
) -> None:
    first = client.post(f"{API}/rules/import", content=GOOD_YAML, headers={**admin, **YAML})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "created": ["noise-night", "noise-and-heat"],
        "updated": [],
        "unchanged": [],
    }
    again = client.post(f"{API}/rules/import", content=GOOD_YAML, headers={**admin, **YAML})
    assert again.json()["unchanged"] == ["noise-night", "noise-and-heat"]
    louder = GOOD_YAML.replace("value: 55", "value: 60")
    third = client.post(
        f"{API}/rules/import", content=louder, headers={**admin, "Content-Type": "text/yaml"}
    )
    assert third.json()["updated"] == ["noise-night"]
    night = client.get(f"{API}/rules", params={"q": "noise-night"}, headers=admin).json()
    assert night["items"][0]["condition"]["value"] == 60
    assert night["items"][0]["schedule"] == {
        "days": [1, 2, 3, 4, 5, 6, 7],
        "start": "22:00",
        "end": "06:00",
    }


def test_yaml_import_is_all_or_nothing_and_names_each_bad_rule(
    client: TestClient, admin: dict[str, str]
) -> None:
    bad = (
        GOOD_YAML
        + """
  - code: broken-kind
    name_vi: "Hỏng"
    name_en: "Broken"
    kind: sometimes
    severity: low
  - code: broken-unit
    name_vi: "Hỏng"
    name_en: "Broken"
    kind: threshold
    entity_type: T
    attribute: a
    condition: {op: ">", value: 1}
    unit_codes: ["00000"]
    severity: low
  - code: loop-a
    name_vi: "Vòng"
    name_en: "Loop"
    kind: composite
    condition: {mode: all, rules: [loop-b, aqi-bad]}
    severity: low
  - code: loop-b
    name_vi: "Vòng"
    name_en: "Loop"
    kind: composite
    condition: {mode: all, rules: [loop-a, aqi-bad]}
    severity: low
  - code: noise-night
    name_vi: "Trùng"
    name_en: "Duplicate"
    kind: missing_data
    severity: low
"""
    )
    response = client.post(
        f"{API}/rules/import", content=bad, headers={**admin, **YAML, "Accept-Language": "en"}
    )
    assert response.status_code == 422, response.text
    found = {(e["index"], e["code"], e["field"]) for e in _errors(response)}
    assert (2, "broken-kind", "rules[2].kind") in found
    assert (3, "broken-unit", "rules[3].unit_codes") in found
    assert (4, "loop-a", "rules[4].condition.rules") in found
    assert (5, "loop-b", "rules[5].condition.rules") in found
    assert (6, "noise-night", "rules[6].code") in found
    assert "Nothing was imported" in response.json()["detail"]
    listed = client.get(f"{API}/rules", params={"q": "noise"}, headers=admin).json()
    assert listed["total"] == 0


@pytest.mark.parametrize(
    ("content", "headers", "status", "needle"),
    [
        ("rules: [", YAML, 422, "not valid YAML (line"),
        ("just text", YAML, 422, "a list of rules"),
        ("a: &x [1]\nb: *x\n", YAML, 422, "aliases are not allowed"),
        ("- code: x", {"Content-Type": "application/json"}, 415, "YAML"),
        (b"\xff\xfe- x", YAML, 422, "UTF-8"),
        ("- 42", YAML, 422, "mapping of fields"),
    ],
)
def test_unreadable_imports_are_refused(
    client: TestClient,
    admin: dict[str, str],
    content: str | bytes,
    headers: dict[str, str],
    status: int,
    needle: str,
) -> None:
    response = client.post(
        f"{API}/rules/import",
        content=content,
        headers={**admin, **headers, "Accept-Language": "en"},
    )
    assert response.status_code == status, response.text
    body = response.json()
    text = body.get("detail", "") + " ".join(e.get("message", "") for e in body.get("errors", []))
    assert needle in text


def test_only_rule_administrators_change_rules(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    viewer = login_as("viewer")
    assert client.get(f"{API}/rules", headers=viewer).status_code == 200
    assert client.post(f"{API}/rules", json=_body(), headers=viewer).status_code == 403
    operator = login_as("operator")
    assert (
        client.post(
            f"{API}/rules/import", content=GOOD_YAML, headers={**operator, **YAML}
        ).status_code
        == 403
    )
    assert client.get(f"{API}/rules").status_code == 401
    # An administrator scoped to one ward writes rules for that ward only.
    ward_admin = login_as("admin", unit_code="26041")
    assert client.post(f"{API}/rules", json=_body(), headers=ward_admin).status_code == 403
    ok = client.post(f"{API}/rules", json=_body(unit_codes=["26041"]), headers=ward_admin)
    assert ok.status_code == 201, ok.text


def test_command_line_import(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CITYOPS_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("CITYOPS_DEFAULT_LANGUAGE", "en")
    good = tmp_path / "good.yaml"
    good.write_text(GOOD_YAML, encoding="utf-8")
    runner = CliRunner()
    done = runner.invoke(cli, ["rules", "import", str(good)])
    assert done.exit_code == 0, done.output
    assert "2 created, 0 updated, 0 unchanged" in done.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD_YAML.replace("severity: medium", "severity: apocalyptic"), "utf-8")
    refused = runner.invoke(cli, ["rules", "import", str(bad)])
    assert refused.exit_code == 2
    assert "rules[1].severity (noise-and-heat)" in refused.output
