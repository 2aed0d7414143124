"""Every list and view as CSV: UTF-8 with a byte-order mark, chosen by `format=csv` or the
Accept header, and safe to open in a spreadsheet; and as XLSX and PDF."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import openpyxl
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from .conftest import API, BN

pytestmark = pytest.mark.usefixtures("known")

VIEWS = ["/phases", "/items", "/matrix", "/roadmap", "/budget", "/late", "/progress"]


def rows(body: bytes) -> list[dict[str, str]]:
    assert body.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


@pytest.fixture
def viewer(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a viewer."""
    return login_as("viewer")


def test_every_view_answers_csv_by_query_or_accept_header(
    client: TestClient, viewer: dict[str, str]
) -> None:
    for path in VIEWS:
        by_query = client.get(f"{API}{path}", params={"format": "csv"}, headers=viewer)
        assert by_query.status_code == 200, path
        assert by_query.headers["content-type"] == "text/csv; charset=utf-8"
        assert by_query.headers["content-disposition"].startswith("attachment; filename=")
        assert rows(by_query.content), path
        by_accept = client.get(f"{API}{path}", headers={**viewer, "Accept": "text/csv"})
        assert by_accept.content == by_query.content, path
        json_first = client.get(
            f"{API}{path}", headers={**viewer, "Accept": "application/json, text/csv;q=0.5"}
        )
        assert json_first.headers["content-type"] == "application/json", path
        forced = client.get(
            f"{API}{path}", params={"format": "json"}, headers={**viewer, "Accept": "text/csv"}
        )
        assert forced.headers["content-type"] == "application/json", path


def test_items_csv_holds_every_matching_row_with_vietnamese_text(
    client: TestClient, viewer: dict[str, str]
) -> None:
    response = client.get(
        f"{API}/items", params={"format": "csv", "limit": 1, "sector": "egov"}, headers=viewer
    )
    table = rows(response.content)
    assert [r["code"] for r in table] == ["B", "C"]  # an export is not paged
    assert table[0]["name"] == "Nền tảng LGSP"
    assert table[0]["late"] == "true"
    assert table[0]["days_late"] == "143"
    a = rows(client.get(f"{API}/items", params={"format": "csv"}, headers=viewer).content)[0]
    assert a["supporting_department_codes"] == "SKHCN;SNV"
    assert a["allocated"] == str(1100 * BN)


def test_matrix_budget_and_late_csv_shapes(client: TestClient, viewer: dict[str, str]) -> None:
    matrix = rows(client.get(f"{API}/matrix?format=csv", headers=viewer).content)
    syt = next(r for r in matrix if r["department_code"] == "SYT")
    assert (syt["A"], syt["B"], syt["C"], syt["owned"]) == ("owner", "supporting", "", "1")
    assert matrix[-1]["department_name"] == "participating_units"
    assert (matrix[-1]["A"], matrix[-1]["B"]) == ("2", "1")
    budget = rows(client.get(f"{API}/budget?format=csv", headers=viewer).content)
    assert [(r["scope"], r["phase_code"], r["year"]) for r in budget] == [
        ("year", "P1", "2024"),
        ("year", "P1", "2025"),
        ("year", "P1", "2026"),
        ("phase", "P1", ""),
        ("year", "P2", "2027"),
        ("phase", "P2", ""),
        ("overall", "", ""),
    ]
    assert budget[3]["recurrent_variance_pp"] == "2.31"
    assert budget[1]["recurrent_variance_pp"] == "-30.0"  # a number, not an escaped formula
    late = rows(client.get(f"{API}/late?format=csv", headers=viewer).content)
    assert [(r["item_code"], r["milestone"], r["days_late"]) for r in late] == [
        ("B", "Kết nối NDXP", "143"),
        ("B", "Kết nối sở, ngành", "51"),
        ("A", "Bảng điều hành", "50"),
    ]


def test_text_a_spreadsheet_would_run_as_a_formula_is_neutralised(
    client: TestClient, admin: dict[str, str]
) -> None:
    client.patch(f"{API}/items/C", json={"name": '=HYPERLINK("http://x","y")'}, headers=admin)
    table = rows(client.get(f"{API}/items?format=csv", headers=admin).content)
    assert next(r for r in table if r["code"] == "C")["name"] == '\'=HYPERLINK("http://x","y")'
    assert client.get(f"{API}/items/C", headers=admin).json()["name"].startswith("=")


# --- XLSX and PDF (cityops.core.tables) --------------------------------------------------------

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_every_view_answers_xlsx_and_pdf(client: TestClient, viewer: dict[str, str]) -> None:
    for path in VIEWS:
        xlsx = client.get(f"{API}{path}", params={"format": "xlsx"}, headers=viewer)
        assert xlsx.status_code == 200, path
        assert xlsx.headers["content-type"] == XLSX, path
        book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
        assert book.worksheets[0].max_row >= 2, path
        pdf = client.get(f"{API}{path}", headers={**viewer, "Accept": "application/pdf"})
        assert pdf.status_code == 200, path
        assert pdf.content.startswith(b"%PDF-"), path
        assert pdf.headers["content-disposition"].startswith("attachment; filename="), path
    bad = client.get(f"{API}/items", params={"format": "odt"}, headers=viewer)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "format"


def test_items_xlsx_keeps_numbers_and_dates_typed(
    client: TestClient, viewer: dict[str, str]
) -> None:
    response = client.get(f"{API}/items", params={"format": "xlsx", "limit": 1}, headers=viewer)
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["Mã", "Nhiệm vụ", "Tên tiếng Anh"]
    rows = [dict(zip(header, r, strict=True)) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert len(rows) == 5  # an export is not paged
    a = next(r for r in rows if r["Mã"] == "A")
    assert a["Kinh phí bố trí (đồng)"] == 1100 * BN
    assert a["Cơ quan phối hợp"] == "SKHCN, SNV"
    b = next(r for r in rows if r["Mã"] == "B")
    assert b["Nhiệm vụ"] == "Nền tảng LGSP"
    assert b["Số ngày chậm"] == 143
    assert sheet["M2"].number_format == "#,##0"


def test_progress_and_budget_pdfs_carry_vietnamese_text_and_charts(
    client: TestClient, viewer: dict[str, str]
) -> None:
    progress = client.get(f"{API}/progress", params={"format": "xlsx"}, headers=viewer)
    assert len(openpyxl.load_workbook(io.BytesIO(progress.content))["Biểu đồ"]._charts) == 1
    budget = client.get(f"{API}/budget", params={"format": "pdf"}, headers=viewer)
    text = " ".join(
        " ".join(
            page.extract_text() for page in PdfReader(io.BytesIO(budget.content)).pages
        ).split()
    )
    assert "Kinh phí theo nguồn và giai đoạn" in text
    assert "Bố trí và giải ngân (đồng)" in text  # the chart
    late = client.get(f"{API}/late", params={"format": "pdf", "lang": "en"}, headers=viewer)
    late_text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(late.content)).pages)
    assert "Kết nối NDXP" in late_text
    assert "Items late against their milestones" in " ".join(late_text.split())
