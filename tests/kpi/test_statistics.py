"""Yearly sector statistics: the import (CSV, XLSX, API, command line), reading them back, and
the indicators that used to be pending computed from them for a unit, an area and the province."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from cityops.cli import app as cli
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.kpi import service
from cityops.kpi.models import KpiStatistic

from .conftest import API, CONTROL, PILOT_BH, PILOT_LK

STATS = f"{API}/statistics"


def upload(client: TestClient, headers: dict[str, str], text: str, name: str = "stats.csv") -> Any:
    """POST a CSV text as a multipart file."""
    return client.post(
        STATS, files={"file": (name, text.encode("utf-8"), "text/csv")}, headers=headers
    )


def count(runtime: Runtime, year: int | None = None) -> int:
    """Statistics stored (in a year)."""
    with unit_of_work(runtime.session_factory) as session:
        query = select(func.count()).select_from(KpiStatistic)
        if year is not None:
            query = query.where(KpiStatistic.year == year)
        return int(session.scalar(query) or 0)


def test_the_seed_holds_demo_estimates_for_every_unit_and_year(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    # 95 communes/wards × 2024–2026 × 42 statistics.
    assert count(runtime) == 95 * 3 * 42
    got = client.get(
        STATS, params={"unit": PILOT_BH, "year": 2026, "name": "physicians"}, headers=admin
    ).json()
    assert got["total"] == 1
    item = got["items"][0]
    assert item["unit_code"] == PILOT_BH
    assert item["year"] == 2026
    assert "demo estimate" in item["source"]
    # Plausible: about 12 physicians per 10,000 inhabitants in a ward.
    population = service_population(runtime, PILOT_BH, 2026)
    assert 8 <= item["value"] / population * 10_000 <= 16


def service_population(runtime: Runtime, unit: str, year: int) -> int:
    """The stored population of a unit in a year."""
    with unit_of_work(runtime.session_factory) as session:
        return service.get_population_map(session=session, year=year)[unit]


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    text = (
        "# a comment line\n"
        "unit_code,year,name,value,source\n"  # line 2
        f"{PILOT_BH},2023,physicians,120,Sở Y tế\n"  # line 3: good
        f"99999,2023,physicians,10,\n"  # line 4: unknown unit
        f"{PILOT_BH},2023,doctors,10,\n"  # line 5: unknown name
        f"{PILOT_BH},1990,live_births,10,\n"  # line 6: year out of range
        f"{PILOT_BH},2023,live_births,mười,\n"  # line 7: not a number
        f"{PILOT_BH},2023,under5_deaths,-3,\n"  # line 8: negative
        f"{PILOT_BH},2023,physicians,121,\n"  # line 9: same as line 3
        f"{PILOT_BH},²⁰²³,households,10,\n"  # line 10: not a year
        f"{PILOT_BH},2023,households,nan,\n"  # line 11: not a number
    )
    response = upload(client, admin | {"Accept-Language": "en"}, text)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    found = {(e["line"], e["field"], e["type"]) for e in errors}
    assert found == {
        (4, "unit_code", "kpi.statistics.unknown_unit"),
        (5, "name", "kpi.statistics.unknown_name"),
        (6, "year", "kpi.statistics.bad_year"),
        (7, "value", "kpi.statistics.not_a_number"),
        (8, "value", "kpi.statistics.negative"),
        (9, "name", "kpi.statistics.duplicate"),
        (10, "year", "kpi.statistics.bad_year"),
        (11, "value", "kpi.statistics.not_a_number"),
    }
    by_line = {e["line"]: e["message"] for e in errors}
    assert by_line[4].startswith("Line 4:")
    assert "99999" in by_line[4]
    # The unknown name's message lists the valid names.
    assert "doctors" in by_line[5]
    assert "physicians" in by_line[5]
    assert "under5_deaths" in by_line[5]
    assert "line 3" in by_line[9]
    assert count(runtime, 2023) == 0  # not even the good line 3


def test_messages_are_in_vietnamese_too(client: TestClient, admin: dict[str, str]) -> None:
    text = f"unit_code,year,name,value\n{PILOT_BH},2025,bac_si,10\n"
    response = upload(client, admin | {"Accept-Language": "vi"}, text)
    assert response.status_code == 422
    message = response.json()["errors"][0]["message"]
    assert message.startswith("Dòng 2:")
    assert "không phải tên chỉ số thống kê" in message


def test_a_missing_column_or_an_unknown_format_refuses_the_file(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = upload(client, admin, f"unit_code,year,value\n{PILOT_BH},2025,1\n")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["name"]
    assert upload(client, admin, "x", name="stats.pdf").status_code == 415
    assert upload(client, admin, "# only a comment\n").status_code == 400


def test_re_importing_changes_nothing_and_a_correction_replaces_the_value(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    text = (
        "Unit_Code;Year;Name;Value;Source\n"  # another case and separator
        f"{PILOT_BH};2023;physicians;120;Sở Y tế\n"
        f"{PILOT_LK};2023;physicians;80;Sở Y tế\n"
    )
    first = upload(client, admin, text)
    assert first.status_code == 200, first.text
    assert first.json() == {"rows": 2, "imported": 2, "updated": 0, "unchanged": 0}
    again = upload(client, admin, text)
    assert again.json() == {"rows": 2, "imported": 0, "updated": 0, "unchanged": 2}
    assert count(runtime, 2023) == 2
    corrected = upload(client, admin, text.replace(";80;", ";85;"))
    assert corrected.json() == {"rows": 2, "imported": 0, "updated": 1, "unchanged": 1}
    got = client.get(STATS, params={"unit": PILOT_LK, "year": 2023}, headers=admin).json()
    assert [(i["name"], i["value"], i["source"]) for i in got["items"]] == [
        ("physicians", 85.0, "Sở Y tế")
    ]


def test_an_xlsx_sheet_imports_like_a_csv(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["unit_code", "year", "name", "value"])
    sheet.append([PILOT_BH, 2023, "households", 55000])
    sheet.append([CONTROL, 2023, "households", "nhiều"])  # row 3
    data = io.BytesIO()
    book.save(data)
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    files = {"file": ("stats.xlsx", data.getvalue(), xlsx)}
    refused = client.post(STATS, files=files, headers=admin)
    assert refused.status_code == 422
    assert [(e["line"], e["field"]) for e in refused.json()["errors"]] == [(3, "value")]
    sheet.delete_rows(3)
    data = io.BytesIO()
    book.save(data)
    files = {"file": ("stats.xlsx", data.getvalue(), xlsx)}
    response = client.post(STATS, files=files, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 1
    assert count(runtime, 2023) == 1


def test_everyone_reads_only_administrators_import(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    viewer, leader = login_as("viewer"), login_as("leader")
    listed = client.get(STATS, params={"year": 2025, "limit": 5, "offset": 5}, headers=viewer)
    assert listed.status_code == 200
    page = listed.json()
    assert page["total"] == 95 * 42
    assert len(page["items"]) == 5
    assert page["offset"] == 5
    text = f"unit_code,year,name,value\n{PILOT_BH},2023,physicians,1\n"
    assert upload(client, viewer, text).status_code == 403
    assert upload(client, leader, text).status_code == 403
    assert client.get(STATS).status_code == 401
    assert client.get(STATS, params={"year": 1800}, headers=viewer).status_code == 422


def test_the_command_line_imports_and_explains_bad_rows(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CITYOPS_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("CITYOPS_DEFAULT_LANGUAGE", "en")
    path = tmp_path / "stats.csv"
    path.write_text(
        f"unit_code,year,name,value\n{PILOT_BH},2023,labour_force,70000\n"
        f"{PILOT_BH},2023,unemployed,x\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["kpi", "import-statistics", str(path)])
    assert result.exit_code == 2
    assert "Line 3" in result.output
    assert "not a number" in result.output
    assert count(runtime, 2023) == 0
    path.write_text(path.read_text("utf-8").replace(",x\n", ",1500\n"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["kpi", "import-statistics", str(path)])
    assert result.exit_code == 0, result.output
    assert "imported: 2" in result.output
    result = CliRunner().invoke(cli, ["kpi", "import-statistics", str(path)])
    assert "imported: 0, updated: 0, unchanged: 2" in result.output
    assert count(runtime, 2023) == 2


# --- indicators computed from statistics ---------------------------------------------------------

# Hand-made 2026 statistics of the three fixture units (October fixture: populations 200,000,
# 100,000 and 50,000; every other unit without statistics).
HAND = {
    PILOT_BH: {"physicians": 240, "live_births": 3000, "under5_deaths": 45,
               "labour_force": 120_000, "unemployed": 2_400},
    PILOT_LK: {"physicians": 90, "live_births": 1500, "under5_deaths": 30,
               "labour_force": 60_000, "unemployed": 1_500},
    CONTROL: {"physicians": 30, "live_births": 700, "under5_deaths": 21,
              "labour_force": 30_000, "unemployed": 900},
}  # fmt: skip


def province_population() -> int:
    """The seeded 2026 population of the province with the fixture units overridden."""
    text = (resources.files("cityops.profiles") / "dongnai/kpi/population.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    fixture = {PILOT_BH: 200_000, PILOT_LK: 100_000, CONTROL: 50_000}
    return sum(
        fixture.get(r["unit_code"], int(r["population"])) for r in rows if r["year"] == "2026"
    )


@pytest.mark.usefixtures("october")
def test_physicians_under5_mortality_and_unemployment_for_a_unit_an_area_and_the_province(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    lines = ["unit_code,year,name,value"] + [
        f"{unit},2026,{name},{value}" for unit, row in HAND.items() for name, value in row.items()
    ]
    assert upload(client, admin, "\n".join(lines) + "\n").status_code == 200
    # A quarter (shorter than the year) reads the year's statistics, as population.
    body = {"period": "Q", "day": "2026-10-15", "indicators": ["H3", "H8", "S2"]}
    assert client.post(f"{API}/compute", json=body, headers=admin).status_code == 200

    def got(place: str, **params: Any) -> dict[str, Any]:
        params = {"period": "Q", "start": "2026-10-01", "end": "2026-10-01"} | params
        response = client.get(f"{API}/values", params={"place": place, **params}, headers=admin)
        return {v["indicator_code"]: v for v in response.json()["items"]}

    unit = got(PILOT_BH, level="unit")
    assert unit["H3"]["value"] == 120.0  # 240 / (200,000 / 100,000)
    assert unit["H8"]["value"] == 15.0  # 45 / 3,000 × 1,000
    assert unit["S2"]["value"] == 2.0  # 2,400 / 120,000 × 100
    assert unit["H8"]["inputs"] == {"under5_deaths": 45.0, "live_births": 3000.0}
    assert got(CONTROL, level="unit")["H8"]["value"] == 30.0  # 21 / 700 × 1,000
    # The area holds only Long Khánh ward's statistics (its other units have none).
    area = got("long-khanh-cu")
    assert area["H8"]["value"] == 20.0  # 30 / 1,500
    assert area["S2"]["value"] == 2.5
    # The province: ratios of sums over the three units.
    province = got("75", level="province")
    assert province["H8"]["value"] == pytest.approx(96 / 5200 * 1000, abs=1e-6)  # 18.461538
    assert province["S2"]["value"] == pytest.approx(4800 / 210_000 * 100, abs=1e-6)  # 2.285714
    assert province["H3"]["value"] == pytest.approx(
        360 / (province_population() / 100_000), abs=1e-6
    )
    assert province["H3"]["status"] == "not_met"  # target 190 per 100,000 after 2025


def test_a_statistic_never_imported_is_no_data_not_zero(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        session.execute(delete(KpiStatistic).where(KpiStatistic.name == "road_accidents"))
    body = {"period": "Y", "day": "2026-06-01", "indicators": ["T6", "S1"]}
    assert client.post(f"{API}/compute", json=body, headers=admin).status_code == 200
    params = {"period": "Y", "start": "2026-01-01", "end": "2026-01-01", "level": "province"}
    values = {
        v["indicator_code"]: v
        for v in client.get(f"{API}/values", params=params, headers=admin).json()["items"]
    }
    assert values["T6"]["value"] is None
    assert values["T6"]["status"] == "no_data"
    # The seeded poverty estimate: a plausible 1–3 % of households.
    assert 0.5 < values["S1"]["value"] < 3.5
