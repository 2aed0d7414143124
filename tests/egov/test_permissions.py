"""Who may read and import dossiers, and the agency/unit scope of what they see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import API, DOSSIERS_CSV

SXD_ONLY = "\n".join(
    [
        "agency,code,procedure,received_at,due_at",
        "SXD,PERM-1,1.009972,2026-11-02T08:00+07:00,2026-11-30T17:00+07:00",
    ]
).encode()

# role, scope → (read indicators, read dossiers, import the SXD file)
MATRIX: list[tuple[str | None, dict[str, str], tuple[int, int, int]]] = [
    ("admin", {}, (200, 200, 200)),
    ("leader", {}, (200, 200, 403)),
    ("leader", {"unit_code": "75"}, (200, 200, 403)),
    ("operator", {}, (200, 200, 403)),
    ("viewer", {}, (200, 200, 403)),
    ("unit_officer", {"unit_code": "26041"}, (200, 200, 403)),
    ("department_officer", {"department_code": "SXD"}, (200, 200, 200)),
    # Another department's officer may import, but not SXD's dossiers: the row is refused.
    ("department_officer", {"department_code": "SYT"}, (200, 200, 422)),
    (None, {}, (401, 401, 401)),
]


@pytest.mark.parametrize(("role", "scope", "expected"), MATRIX)
@pytest.mark.usefixtures("no_dossiers")
def test_permission_matrix(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    upload: Callable[..., Any],
    role: str | None,
    scope: dict[str, str],
    expected: tuple[int, int, int],
) -> None:
    headers = login_as(role, **scope) if role else {}
    indicators = client.get(f"{API}/egov/indicators", headers=headers)
    dossiers = client.get(f"{API}/egov/dossiers", headers=headers)
    imported = upload(headers, SXD_ONLY)
    assert (indicators.status_code, dossiers.status_code, imported.status_code) == expected
    if imported.status_code == 422:
        assert imported.json()["errors"][0]["type"] == "egov.import.out_of_scope"


@pytest.mark.usefixtures("fixture_imported")
def test_a_department_officer_sees_and_imports_only_its_department(
    client: TestClient, login_as: Callable[..., dict[str, str]], upload: Callable[..., Any]
) -> None:
    sxd = login_as("department_officer", department_code="SXD")
    listed = client.get(f"{API}/egov/dossiers", params={"limit": 100}, headers=sxd).json()
    assert listed["total"] == 10
    assert {d["agency_code"] for d in listed["items"]} == {"SXD"}
    indicators = client.get(
        f"{API}/egov/indicators", params={"period": "2026-10"}, headers=sxd
    ).json()
    assert [i["code"] for i in indicators["items"]] == ["SXD"]
    by_unit = client.get(
        f"{API}/egov/indicators", params={"period": "2026-10", "group_by": "unit"}, headers=sxd
    ).json()
    assert by_unit["items"] == []
    assert client.get(f"{API}/egov/scorecard/SXD", headers=sxd).status_code == 200
    other = client.get(f"{API}/egov/scorecard/26041", headers=sxd)
    assert other.status_code == 403
    commune_dossier = next(
        d
        for d in client.get(
            f"{API}/egov/dossiers", params={"agency": "26041"}, headers=login_as("admin")
        ).json()["items"]
    )
    hidden = client.get(f"{API}/egov/dossiers/{commune_dossier['id']}", headers=sxd)
    assert hidden.status_code == 404
    # The whole fixture holds other agencies' dossiers: refused, all of it.
    refused = upload(sxd, DOSSIERS_CSV.read_bytes(), update="true")
    assert refused.status_code == 422
    lines = {e["line"] for e in refused.json()["errors"]}
    assert lines == set(range(12, 27))  # every commune row; the SXD rows were fine


@pytest.mark.usefixtures("fixture_imported")
def test_a_unit_officer_sees_what_its_commune_handles_or_received(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    tran_bien = login_as("unit_officer", unit_code="26041")
    listed = client.get(f"{API}/egov/dossiers", params={"limit": 100}, headers=tran_bien).json()
    # T1–T8 (its committee's, T8 received at Biên Hòa) and S1, S2 (SXD's, received here).
    assert listed["total"] == 10
    assert {d["code"] for d in listed["items"]} >= {"26041-008", "SXD-001", "SXD-002"}
    agencies = client.get(
        f"{API}/egov/indicators", params={"period": "2026-10"}, headers=tran_bien
    ).json()
    assert [i["code"] for i in agencies["items"]] == ["26041"]
    units = client.get(
        f"{API}/egov/indicators",
        params={"period": "2026-10", "group_by": "unit"},
        headers=tran_bien,
    ).json()
    assert [i["code"] for i in units["items"]] == ["26041"]


@pytest.mark.usefixtures("fixture_imported")
def test_dossier_list_filters_paging_and_csv(client: TestClient, admin: dict[str, str]) -> None:
    page = client.get(
        f"{API}/egov/dossiers", params={"agency": "SXD", "limit": 3}, headers=admin
    ).json()
    assert (page["total"], len(page["items"]), page["limit"]) == (10, 3, 3)
    assert page["items"][0]["code"] == "SXD-009"  # newest received first
    open_ = client.get(
        f"{API}/egov/dossiers", params={"agency": "SXD", "open": "true"}, headers=admin
    ).json()
    assert {d["code"] for d in open_["items"]} == {"SXD-007", "SXD-009"}
    late = client.get(
        f"{API}/egov/dossiers", params={"agency": "SXD", "overdue": "true"}, headers=admin
    ).json()
    assert {d["code"] for d in late["items"]} == {"SXD-002", "SXD-003"}
    october = client.get(
        f"{API}/egov/dossiers",
        params={"received_from": "2026-10-20", "received_to": "2026-11-01", "agency": "SXD"},
        headers=admin,
    ).json()
    assert {d["code"] for d in october["items"]} == {"SXD-007", "SXD-010"}
    as_csv = client.get(
        f"{API}/egov/dossiers", params={"unit": "26068", "format": "csv"}, headers=admin
    )
    assert as_csv.status_code == 200
    assert len(as_csv.content.decode("utf-8-sig").splitlines()) == 1 + 6
    procedures = client.get(
        f"{API}/egov/procedures", params={"level": "commune"}, headers=admin
    ).json()
    assert procedures["total"] == 20
    search = client.get(f"{API}/egov/procedures", params={"q": "khai sinh"}, headers=admin)
    assert [p["code"] for p in search.json()["items"]] == ["1.001193"]
    procedures_csv = client.get(
        f"{API}/egov/procedures", headers={**admin, "Accept": "text/csv"}
    ).content.decode("utf-8-sig")
    assert procedures_csv.splitlines()[0].startswith("code,name,name_en,field")
    imports_csv = client.get(f"{API}/egov/imports", params={"format": "csv"}, headers=admin)
    assert imports_csv.status_code == 200
    assert "dossiers.csv" in imports_csv.text
