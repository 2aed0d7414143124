"""Spreadsheet import: a good workbook in Vietnamese, bad rows located by sheet, row and column
with nothing written, idempotent re-import, CSV files, dry runs and the command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cityops.cli import app as cli
from cityops.core.config import Settings
from cityops.programme.models import (
    ProgrammeBudget,
    ProgrammeItem,
    ProgrammeItemUnit,
    ProgrammeMilestone,
    ProgrammePhase,
)

from .conftest import API, XLSX, workbook

pytestmark = pytest.mark.usefixtures("empty_programme")

Counter = Callable[[type[Any]], int]
TABLES = (ProgrammePhase, ProgrammeItem, ProgrammeItemUnit, ProgrammeBudget, ProgrammeMilestone)

# A workbook as a department would fill it in: Vietnamese sheet names and headers, Vietnamese
# status and source words, DD/MM/YYYY dates, amounts with thousands separators, an area code.
GOOD: dict[str, list[list[Any]]] = {
    "Hướng dẫn": [["Điền các trang Giai đoạn, Hạng mục, Ngân sách, Mốc tiến độ."]],
    "Giai đoạn": [
        ["Mã", "Tên giai đoạn", "Năm bắt đầu", "Năm kết thúc", "Tỷ lệ vốn sự nghiệp"],
        ["2022-2025", "Giai đoạn 2022–2025", 2022, 2025, 40],
    ],
    "Hạng mục": [
        [
            "Mã hạng mục",
            "Tên hạng mục",
            "Giai đoạn",
            "Lĩnh vực",
            "Đơn vị chủ trì",
            "Đơn vị phối hợp",
            "Địa bàn",
            "Trạng thái",
            "Tiến độ (%)",
            "Ngày bắt đầu",
            "Ngày kết thúc",
        ],
        [
            "IOC-BH",
            "IOC thí điểm Biên Hòa",
            "2022-2025",
            "egov",
            "SKHCN",
            "SXD; CAT",
            "bien-hoa-cu",
            "Hoàn thành",
            100,
            "01/10/2022",
            "31/03/2025",
        ],
        [
            "IOC-LK",
            "IOC thí điểm Long Khánh",
            "2022-2025",
            "egov",
            "SKHCN",
            "",
            "26080",
            "Chậm tiến độ",
            "85%",
            "01/10/2022",
            "31/12/2025",
        ],
    ],
    "Ngân sách": [
        ["Mã hạng mục", "Năm", "Nguồn vốn", "Phân bổ", "Giải ngân"],
        ["IOC-BH", 2023, "Vốn sự nghiệp", "12.000.000.000", "11.500.000.000"],
        ["IOC-BH", 2023, "Vốn đầu tư phát triển", 18_000_000_000, 17_000_000_000],
        ["IOC-LK", 2024, "đầu tư phát triển", "9,000,000,000", 9_500_000_000],
    ],
    "Mốc tiến độ": [
        ["Mã hạng mục", "Tên mốc", "Hạn hoàn thành", "Ngày hoàn thành", "Trọng số"],
        ["IOC-BH", "Nghiệm thu thí điểm", "31/03/2025", "25/03/2025", 2],
        ["IOC-LK", "Nghiệm thu, đưa vào vận hành", "2025-09-30", None, 2],
    ],
}


def send(client: TestClient, headers: dict[str, str], data: bytes, **params: Any) -> Any:
    return client.post(
        f"{API}/import",
        files={"workbook": ("ke-hoach.xlsx", data, XLSX)},
        params=params,
        headers=headers,
    )


def test_a_good_workbook_imports_everything(
    client: TestClient, admin: dict[str, str], count: Counter
) -> None:
    response = send(client, admin, workbook(GOOD))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["rows"] == {"phases": 1, "items": 2, "budget": 3, "milestones": 2}
    assert report["created"] == {"phases": 1, "items": 2, "budget_lines": 3, "milestones": 2}
    # The instructions sheet is ignored, and the over-disbursed line is a warning, not an error.
    warnings = {(w["sheet"], w["row"], w["type"]) for w in report["warnings"]}
    assert warnings == {
        ("Hướng dẫn", None, "programme.import.unknown_sheet"),
        ("Ngân sách", 4, "programme.budget.over_disbursed"),
    }
    item = client.get(f"{API}/items/IOC-BH", headers=admin).json()
    assert item["status"] == "done"
    assert item["progress"] == 100
    assert item["supporting_department_codes"] == ["CAT", "SXD"]
    # The area stands for the wards formed from the former city of Biên Hòa.
    assert len(item["unit_codes"]) == 10
    assert "26041" in item["unit_codes"]
    assert item["allocated"] == 30_000_000_000
    assert (item["start_date"], item["end_date"]) == ("2022-10-01", "2025-03-31")
    lk = client.get(f"{API}/items/IOC-LK", headers=admin).json()
    assert (lk["status"], lk["progress"], lk["late"]) == ("delayed", 85, True)
    assert [(m["name"], m["weight"]) for m in lk["milestones"]] == [
        ("Nghiệm thu, đưa vào vận hành", 2)
    ]
    phase = client.get(f"{API}/phases/2022-2025", headers=admin).json()
    assert (phase["planned_recurrent_pct"], phase["planned_investment_pct"]) == (40, 60)
    assert count(ProgrammeBudget) == 3


def test_re_importing_the_same_workbook_duplicates_nothing(
    client: TestClient, admin: dict[str, str], count: Counter
) -> None:
    data = workbook(GOOD)
    assert send(client, admin, data).status_code == 200
    before = [count(t) for t in TABLES]
    again = send(client, admin, data)
    assert again.status_code == 200, again.text
    report = again.json()
    assert (
        report["created"]
        == report["updated"]
        == report["deleted"]
        == {
            "phases": 0,
            "items": 0,
            "budget_lines": 0,
            "milestones": 0,
        }
    )
    assert report["unchanged"] == {"phases": 1, "items": 2, "budget_lines": 3, "milestones": 2}
    assert [count(t) for t in TABLES] == before
    # A changed sheet updates by item code: progress moves, a budget line goes, one comes.
    changed = {**GOOD}
    changed["Hạng mục"] = [row[:] for row in GOOD["Hạng mục"]]
    changed["Hạng mục"][2][8] = 90
    changed["Ngân sách"] = [
        GOOD["Ngân sách"][0],
        GOOD["Ngân sách"][1],
        ["IOC-BH", 2024, "vốn sự nghiệp", 5_000_000_000, 0],
        GOOD["Ngân sách"][3],
    ]
    third = send(client, admin, workbook(changed)).json()
    assert third["updated"]["items"] == 1
    assert third["unchanged"]["items"] == 1
    assert (third["created"]["budget_lines"], third["deleted"]["budget_lines"]) == (1, 1)
    assert count(ProgrammeItem) == 2
    assert count(ProgrammeBudget) == 3
    assert client.get(f"{API}/items/IOC-LK", headers=admin).json()["progress"] == 90


def test_bad_rows_are_reported_by_sheet_row_and_column_and_nothing_is_written(
    client: TestClient, admin: dict[str, str], count: Counter
) -> None:
    bad = {
        "Hạng mục": [
            GOOD["Hạng mục"][0],
            GOOD["Hạng mục"][1],
            # Row 3: unknown owner department, progress over 100.
            ["IOC-LK", "IOC Long Khánh", "2022-2025", "egov", "SO-X", "", "", "", 120, "", ""],
            # Row 4: a date that is no date, a phase that does not exist.
            ["IOC-X", "Khác", "2031-2035", "egov", "SKHCN", "", "", "", 0, "31/02/2024", ""],
            # Row 5: the code of row 2 again.
            ["IOC-BH", "Trùng", "2022-2025", "egov", "SKHCN", "", "", "", 0, "", ""],
        ],
        "Giai đoạn": GOOD["Giai đoạn"],
        "Ngân sách": [
            GOOD["Ngân sách"][0],
            ["IOC-BH", 2027, "vốn sự nghiệp", 1_000_000_000, 0],  # outside 2022–2025
            ["IOC-BH", 2023, "vốn vay", 1_000_000_000, 0],  # unknown source
            ["IOC-BH", 2024, "đầu tư", "1,5 tỷ", 0],  # not an amount in đồng
        ],
        "Mốc tiến độ": [
            GOOD["Mốc tiến độ"][0],
            ["KHONG-CO", "Mốc", "2025-01-01", None, 1],  # unknown item
            ["IOC-BH", "Mốc", None, None, 1],  # no due date
        ],
    }
    before = [count(t) for t in TABLES]
    response = client.post(
        f"{API}/import",
        files={"workbook": ("ke-hoach.xlsx", workbook(bad), XLSX)},
        headers={**admin, "Accept-Language": "en"},
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "urn:cityops:problem:validation-error"
    found = {(e["sheet"], e["row"], e["column"], e["type"]) for e in body["errors"]}
    assert found == {
        ("Hạng mục", 3, "Đơn vị chủ trì", "programme.department.unknown"),
        ("Hạng mục", 3, "Tiến độ (%)", "programme.import.out_of_range"),
        ("Hạng mục", 4, "Ngày bắt đầu", "programme.import.bad_date"),
        ("Hạng mục", 4, "Giai đoạn", "programme.phase.unknown"),
        ("Hạng mục", 5, "Mã hạng mục", "programme.import.duplicate"),
        ("Ngân sách", 2, "Năm", "programme.budget.outside_phase"),
        ("Ngân sách", 3, "Nguồn vốn", "programme.import.bad_source"),
        ("Ngân sách", 4, "Phân bổ", "programme.import.bad_amount"),
        ("Mốc tiến độ", 2, "Mã hạng mục", "programme.import.unknown_item"),
        ("Mốc tiến độ", 3, "Hạn hoàn thành", "programme.import.required"),
    }
    assert str(len(body["errors"])) in body["detail"]
    messages = {(e["row"], e["column"]): e["message"] for e in body["errors"]}
    assert messages[(3, "Đơn vị chủ trì")] == "There is no department with code SO-X."
    assert "2027" in messages[(2, "Năm")]
    assert "2022–2025" in messages[(2, "Năm")]
    assert [count(t) for t in TABLES] == before  # all or nothing
    # The same refusal in Vietnamese.
    vi = send(client, admin, workbook(bad)).json()
    assert "Không có sở, ngành nào mang mã SO-X." in {e["message"] for e in vi["errors"]}


def test_the_phase_row_is_checked_too(client: TestClient, admin: dict[str, str]) -> None:
    bad = {
        "phases": [
            ["code", "name", "start_year", "end_year", "planned_recurrent_pct",
             "planned_investment_pct"],
            ["P", "Giai đoạn", 2026, 2025, 40, 60],
            ["Q", "Giai đoạn", 2026, 2030, 45, 60],
            ["R", "", 2026, 2030, "", ""],
        ],
    }  # fmt: skip
    body = send(client, admin, workbook(bad)).json()
    found = {(e["row"], e["column"], e["type"]) for e in body["errors"]}
    assert found == {
        (2, "end_year", "programme.phase.years_reversed"),
        (3, "planned_investment_pct", "programme.import.split_not_100"),
        (4, "name", "programme.import.required"),
    }


def test_csv_files_in_utf8_with_semicolons_and_a_dry_run(
    client: TestClient, admin: dict[str, str], count: Counter
) -> None:
    phases = "code,name,start_year,end_year\n2026-2030,Giai đoạn 2026–2030,2026,2030\n"
    # Excel in a Vietnamese locale writes ';' and a byte-order mark.
    items = (
        "\ufeff# Dữ liệu thử\n"
        "mã;tên;giai đoạn;lĩnh vực;chủ trì;trạng thái;tiến độ\n"
        "TT-YT;Trung tâm điều hành y tế;2026-2030;health;SYT;đang triển khai;30\n"
    )
    budget = "item,year,source,allocated,disbursed\nTT-YT,2026,recurrent,2000000000,500000000\n"
    files = {
        "phases": ("giai_doan.csv", phases.encode(), "text/csv"),
        "items": ("hang_muc.csv", items.encode(), "text/csv"),
        "budget": ("ngan_sach.csv", budget.encode(), "text/csv"),
    }
    dry = client.post(f"{API}/import", files=files, params={"dry_run": "true"}, headers=admin)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert dry.json()["created"]["items"] == 1
    assert count(ProgrammeItem) == 0
    assert count(ProgrammePhase) == 0
    done = client.post(f"{API}/import", files=files, headers=admin)
    assert done.status_code == 200, done.text
    item = client.get(f"{API}/items/TT-YT", headers=admin).json()
    assert (item["status"], item["progress"], item["allocated"]) == (
        "in_progress",
        30,
        2_000_000_000,
    )
    # Lines are numbered as in the file: the comment is line 2 (after the BOM), header 3.
    bad_items = items.replace(";30\n", ";trăm\n")
    refused = client.post(
        f"{API}/import",
        files={"items": ("hang_muc.csv", bad_items.encode(), "text/csv")},
        headers=admin,
    )
    assert refused.status_code == 422
    assert [(e["row"], e["column"]) for e in refused.json()["errors"]] == [(3, "tiến độ")]


# What Excel writes as plain "CSV" on a Vietnamese Windows: code page 1258, not UTF-8.
WINDOWS_1258 = "code,name\nA,Biên Hòa\n".encode("cp1258", errors="replace")


def test_files_that_are_not_spreadsheets_are_refused(
    client: TestClient, admin: dict[str, str]
) -> None:
    garbage = client.post(
        f"{API}/import",
        files={"workbook": ("x.xlsx", b"PK\x03\x04 not really", XLSX)},
        headers=admin,
    )
    assert garbage.status_code == 422
    assert garbage.json()["errors"][0]["type"] == "programme.import.bad_workbook"
    latin = client.post(
        f"{API}/import",
        files={"items": ("items.csv", WINDOWS_1258, "text/csv")},
        headers=admin,
    )
    assert latin.json()["errors"][0]["type"] == "programme.import.not_utf8"
    missing = client.post(
        f"{API}/import",
        files={"budget": ("budget.csv", b"item,year\nA,2026\n", "text/csv")},
        headers=admin,
    )
    assert {e["column"] for e in missing.json()["errors"]} == {"source", "allocated"}
    nothing = client.post(f"{API}/import", headers=admin)
    assert nothing.status_code == 422


def test_the_command_line_imports_a_workbook_with_a_report(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    client: TestClient,
    admin: dict[str, str],
) -> None:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CITYOPS_SECRET_KEY", settings.secret_key)
    file = tmp_path / "ke-hoach.xlsx"
    file.write_bytes(workbook(GOOD))
    runner = CliRunner()
    first = runner.invoke(cli, ["import", "programme", str(file)])
    assert first.exit_code == 0, first.output
    assert "created: phases=1, items=2, budget_lines=3, milestones=2" in first.output
    assert "Ngân sách, row 4, column Giải ngân" in first.output  # the over-disbursed warning
    again = runner.invoke(cli, ["import", "programme", str(file)])
    assert "unchanged: phases=1, items=2, budget_lines=3, milestones=2" in again.output
    assert "created:" not in again.output
    broken = {**GOOD, "Hạng mục": [*GOOD["Hạng mục"], ["IOC-X", "X", "2022-2025", "egov", "??"]]}
    file.write_bytes(workbook(broken))
    refused = runner.invoke(cli, ["import", "programme", str(file)])
    assert refused.exit_code == 2
    assert "Hạng mục[4].Đơn vị chủ trì" in refused.output
    assert client.get(f"{API}/items/IOC-X", headers=admin).status_code == 404
