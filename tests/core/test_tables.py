"""Table exports (cityops.core.tables): CSV, XLSX and PDF from one table description, the
format chosen by query or Accept header, and a 503 rather than a PDF with broken glyphs."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pypdf import PdfReader
from starlette.datastructures import Headers

from cityops.core import tables
from cityops.core.tables import Chart, Column, ExportFormat, Kind, Series, Table, Tr

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam


def sample(rows: int = 3, **extra: Any) -> Table:
    """A small table of wards with a text, a percent, an int, money and a date column."""
    names = ["Phường Trấn Biên", "Phường Long Khánh", "Xã Định Quán"]
    table = Table(
        title=Tr("Tỷ lệ hồ sơ đúng hạn theo phường, xã", "On-time dossiers by commune"),
        columns=[
            Column("code", "Mã", "Code"),
            Column("name", "Phường, xã", "Commune/ward"),
            Column("rate", "Tỷ lệ", "Rate", Kind.PERCENT),
            Column("dossiers", "Số hồ sơ", "Dossiers", Kind.INT),
            Column("budget", "Kinh phí (đồng)", "Budget (VND)", Kind.MONEY),
            Column("day", "Ngày", "Day", Kind.DATE),
            Column("late", "Chậm", "Late", Kind.BOOL),
        ],
        rows=[
            {
                "code": f"26{i:03d}",
                "name": names[i % 3],
                "rate": 46.666667 + i,
                "dossiers": 1200 + i,
                "budget": 1_100_000_000,
                "day": date(2026, 10, 1),
                "late": i % 2 == 0,
            }
            for i in range(rows)
        ],
        notes=[Tr("Phương pháp: khác biệt kép.", "Method: difference in differences.")],
        **extra,
    )
    return table


def charted() -> Table:
    table = sample()
    chart = tables.column_chart(
        table, title=Tr("Tỷ lệ đúng hạn", "On-time rate"), category="name", series=["rate"]
    )
    assert chart is not None
    table.charts = [chart]
    return table


def pdf_text(body: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(body))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def font_names(reader: PdfReader) -> set[str]:
    names = set()
    for page in reader.pages:
        for ref in page["/Resources"]["/Font"].values():
            names.add(str(ref.get_object()["/BaseFont"]))
    return names


# --- choosing the format ---------------------------------------------------------------------


def request_with(accept: str) -> Request:
    headers = Headers({"accept": accept})
    return Request({"type": "http", "headers": headers.raw, "query_string": b""})


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", ExportFormat.JSON),
        ("*/*", ExportFormat.JSON),
        ("text/csv", ExportFormat.CSV),
        ("application/pdf", ExportFormat.PDF),
        (tables.XLSX_MEDIA_TYPE, ExportFormat.XLSX),
        ("application/json, application/pdf;q=0.5", ExportFormat.JSON),
        ("application/json;q=0.2, application/pdf;q=0.5", ExportFormat.PDF),
        ("text/html,application/xhtml+xml,*/*;q=0.8", ExportFormat.JSON),
    ],
)
def test_the_accept_header_picks_the_format(accept: str, expected: ExportFormat) -> None:
    assert tables.wanted(request_with(accept), None) is expected


def test_the_format_query_beats_the_accept_header() -> None:
    assert tables.wanted(request_with("text/csv"), ExportFormat.JSON) is ExportFormat.JSON
    assert tables.wanted(request_with("text/csv"), ExportFormat.PDF) is ExportFormat.PDF


def test_file_names_are_ascii_safe() -> None:
    assert tables.ascii_filename("Đánh giá thí điểm 2026/10.pdf") == "Danh-gia-thi-diem-2026-10.pdf"
    assert tables.ascii_filename("***") == "export"


# --- CSV -------------------------------------------------------------------------------------


def test_csv_has_a_bom_the_column_keys_and_plain_values() -> None:
    table = sample(1)
    table.rows[0]["name"] = "=cmd|' /C calc'!A0"  # type: ignore[index]
    text = tables.render_csv(table).decode("utf-8")
    assert text.startswith("\ufeffcode,name,rate,dossiers,budget,day,late\r\n")
    assert "26000,'=cmd|' /C calc'!A0,46.666667,1200,1100000000,2026-10-01,true\r\n" in text


def test_columns_may_be_kept_out_of_csv_or_of_the_sheets() -> None:
    table = Table(
        title=Tr("Bảng", "Table"),
        columns=[Column("a", "A"), Column("b", "B", csv=False), Column("c", "C", sheet=False)],
        rows=[{"a": 1, "b": 2, "c": 3}],
    )
    assert tables.render_csv(table).decode("utf-8-sig").splitlines()[0] == "a,c"
    book = openpyxl.load_workbook(
        io.BytesIO(tables.render_xlsx(table, lang="vi", zone=ZONE, now=NOW))
    )
    assert [c.value for c in book.worksheets[0][1]] == ["A", "B"]


# --- XLSX ------------------------------------------------------------------------------------


def test_xlsx_has_labelled_frozen_headers_typed_cells_and_a_native_chart() -> None:
    body = tables.render_xlsx(charted(), lang="vi", zone=ZONE, now=NOW)
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["Dữ liệu", "Thông tin", "Biểu đồ"]
    data = book["Dữ liệu"]
    assert [c.value for c in data[1]] == [
        "Mã", "Phường, xã", "Tỷ lệ", "Số hồ sơ", "Kinh phí (đồng)", "Ngày", "Chậm",
    ]  # fmt: skip
    assert data["A1"].font.b
    assert data.freeze_panes == "A2"
    row = [c.value for c in data[2]]
    assert row[:5] == ["26000", "Phường Trấn Biên", 46.666667, 1200, 1_100_000_000]
    assert row[5] == datetime(2026, 10, 1)
    assert row[6] is True
    assert data["C2"].number_format == '0.00" %"'
    assert data["E2"].number_format == "#,##0"
    assert data["F2"].number_format == "yyyy-mm-dd"
    assert data.column_dimensions["B"].width >= len("Phường Long Khánh")
    about = book["Thông tin"]
    assert about["A1"].value == "Tỷ lệ hồ sơ đúng hạn theo phường, xã"
    assert about["B2"].value == "20/11/2026 10:00 (Asia/Ho_Chi_Minh)"
    assert about["A4"].value == "Phương pháp: khác biệt kép."
    (chart,) = book["Biểu đồ"]._charts
    assert chart.tagname == "barChart"
    assert len(chart.series) == 1


def test_xlsx_in_english() -> None:
    book = openpyxl.load_workbook(
        io.BytesIO(tables.render_xlsx(sample(), lang="en", zone=ZONE, now=NOW))
    )
    assert book.sheetnames == ["Data", "About"]
    assert [c.value for c in book["Data"][1]][:3] == ["Code", "Commune/ward", "Rate"]


# --- PDF -------------------------------------------------------------------------------------


def render_pdf(table: Table, lang: str = "vi") -> bytes:
    return tables.render_pdf(table, lang=lang, zone=ZONE, now=NOW, fonts=tables.load_fonts(None))


def test_pdf_sets_vietnamese_in_an_embedded_dejavu_font() -> None:
    body = render_pdf(charted())
    assert body.startswith(b"%PDF-")
    reader, text = pdf_text(body)
    assert "Tỷ lệ hồ sơ đúng hạn theo phường, xã" in text
    assert "Phường Trấn Biên" in text
    assert "Thời điểm xuất: 20/11/2026 10:00" in text
    assert "46,67 %" in text  # Vietnamese number format
    assert "1.100.000.000" in text
    assert "Trang 1/1" in text
    assert any(name.endswith("+DejaVuSans") for name in font_names(reader))
    assert reader.metadata is not None
    assert reader.metadata.title == "Tỷ lệ hồ sơ đúng hạn theo phường, xã"


def test_a_long_pdf_repeats_the_header_and_numbers_its_pages() -> None:
    body = render_pdf(sample(200), lang="en")
    reader, _ = pdf_text(body)
    pages = len(reader.pages)
    assert pages >= 3
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text()
        assert "Commune/ward" in text  # the header row on every page
        assert f"Page {number}/{pages}" in text


def test_a_wide_table_is_landscape_and_split_into_blocks_repeating_its_key_column() -> None:
    columns = [Column("place", "Địa bàn")] + [
        Column(f"c{i}", f"Chỉ số số {i} rất dài", kind=Kind.FLOAT) for i in range(40)
    ]
    rows = [{"place": "Phường Trấn Biên", **{f"c{i}": i * 1.5 for i in range(40)}}]
    body = render_pdf(Table(title=Tr("Rộng", "Wide"), columns=columns, rows=rows))
    reader, text = pdf_text(body)
    width, height = reader.pages[0].mediabox.width, reader.pages[0].mediabox.height
    assert width > height
    assert text.count("Phường Trấn Biên") >= 2  # the key column in every block
    assert "Chỉ số số 39 rất dài" in " ".join(text.split())


def test_pdf_charts_are_drawn() -> None:
    with_chart = render_pdf(charted())
    _, text = pdf_text(with_chart)
    assert "Tỷ lệ đúng hạn" in text  # the chart's title
    assert len(with_chart) > len(render_pdf(sample()))


def test_a_missing_or_unusable_font_is_refused(tmp_path: Path) -> None:
    with pytest.raises(tables.ServiceUnavailable) as missing:
        tables.load_fonts(tmp_path / "nope.ttf")
    assert missing.value.params["package"] == "fonts-dejavu-core"
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font at all" * 10)
    with pytest.raises(tables.ServiceUnavailable):
        tables.load_fonts(junk)


# --- respond ---------------------------------------------------------------------------------


@pytest.fixture
def export_client(app: FastAPI) -> TestClient:
    """The app with one extra route exporting the sample table."""

    @app.get("/test-export")
    def export(request: Request, fmt: tables.FormatQuery = None) -> Any:
        out = tables.wanted(request, fmt)
        if out is ExportFormat.JSON:
            return {"rows": 3}
        return tables.respond(request, charted(), out, None, "Tỷ lệ đúng hạn")

    return TestClient(app)


def test_respond_sets_media_types_and_attachment_names(export_client: TestClient) -> None:
    pdf = export_client.get("/test-export?format=pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == (
        "attachment; filename=\"Ty-le-dung-han.pdf\"; filename*=UTF-8''"
        "T%E1%BB%B7%20l%E1%BB%87%20%C4%91%C3%BAng%20h%E1%BA%A1n.pdf"
    )
    xlsx = export_client.get("/test-export", headers={"Accept": tables.XLSX_MEDIA_TYPE})
    assert xlsx.headers["content-type"] == tables.XLSX_MEDIA_TYPE
    assert xlsx.content[:2] == b"PK"
    csv = export_client.get("/test-export?format=csv")
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert export_client.get("/test-export").json() == {"rows": 3}
    english = export_client.get("/test-export?format=xlsx&lang=en")
    book = openpyxl.load_workbook(io.BytesIO(english.content))
    assert book.sheetnames[0] == "Data"


def test_a_bad_format_is_refused_naming_the_field(export_client: TestClient) -> None:
    response = export_client.get("/test-export?format=docx")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "format"


def test_without_a_font_the_pdf_is_a_503_naming_the_package(
    export_client: TestClient, app: FastAPI, tmp_path: Path
) -> None:
    app.state.runtime.settings.pdf_font = tmp_path / "missing.ttf"
    response = export_client.get("/test-export?format=pdf", headers={"Accept-Language": "vi"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "fonts-dejavu-core" in response.json()["detail"]
    assert "phông chữ" in response.json()["detail"]
    assert export_client.get("/test-export?format=xlsx").status_code == 200


def test_a_chart_with_its_own_data() -> None:
    chart = Chart(
        title=Tr("N1 – Nồng độ bụi PM2,5", "N1 – PM2.5"),
        categories=["Trước", "Sau"],
        series=[Series(Tr("Thí điểm", "Pilot"), [500.0, 46.7]), Series(Tr("Còn lại", "Rest"),
                [30.0, None])],
        unit="µg/m³",
    )  # fmt: skip
    table = sample(1, charts=[chart], charts_first=True)
    book = openpyxl.load_workbook(
        io.BytesIO(tables.render_xlsx(table, lang="vi", zone=ZONE, now=NOW))
    )
    sheet = book["Biểu đồ"]
    assert [c.value for c in sheet[2]] == [None, "Thí điểm", "Còn lại"]
    assert [c.value for c in sheet[3]] == ["Trước", 500, 30]
    _, text = pdf_text(render_pdf(table))
    assert text.index("N1 – Nồng độ bụi PM2,5") < text.index("Phường Trấn Biên")


def test_text_that_looks_like_a_formula_stays_text_in_xlsx() -> None:
    table = sample(1)
    table.rows[0]["name"] = '=HYPERLINK("http://x","y")'  # type: ignore[index]
    book = openpyxl.load_workbook(
        io.BytesIO(tables.render_xlsx(table, lang="vi", zone=ZONE, now=NOW))
    )
    cell = book.worksheets[0]["B2"]
    assert cell.value == '=HYPERLINK("http://x","y")'
    assert cell.data_type == "s"
