"""KPI exports: values, ranking and the pilot evaluation as XLSX and PDF (the evaluation PDF is
a report with the method, the numbers and a chart per indicator); CSV is covered with the
values and evaluation tests."""

from __future__ import annotations

import io
from collections.abc import Callable

import openpyxl
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from .conftest import API, PILOT_BH

pytestmark = pytest.mark.usefixtures("october")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EVALUATION = {"go_live": "2026-10-01", "before": 1, "after": 1, "indicator": ["N1", "N3", "G1"]}


def compute(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post(
        f"{API}/compute", json={"period": "M", "day": "2026-10-15"}, headers=admin
    )
    assert response.status_code == 200, response.text


def pdf_text(body: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(body))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def test_the_pilot_evaluation_downloads_as_a_pdf_report(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.get(
        f"{API}/evaluation", params={**EVALUATION, "format": "pdf", "lang": "vi"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert (
        'filename="kpi-pilot-evaluation-2026-10-01.pdf"' in response.headers["content-disposition"]
    )
    reader, text = pdf_text(response.content)
    flat = " ".join(text.split())
    # Title and method: difference in differences, the two pilot areas, go-live and windows.
    assert "Đánh giá thí điểm – vận hành từ 01/10/2026" in flat
    assert "khác biệt kép" in flat
    assert "Biên Hòa (thành phố cũ)" in flat
    assert "Giai đoạn trước: 2026-09..2026-09, giai đoạn sau: 2026-10..2026-10" in flat
    # The table with its numbers (Vietnamese format) and the sums they come from.
    assert "Tỷ lệ ngày có VN_AQI từ mức Kém trở lên" in flat
    assert "46,67" in flat
    assert "500" in flat
    assert "pm25_sum = 140" in flat
    # A chart per indicator: before/after, pilot against the rest.
    assert "N1 – Nồng độ bụi PM2,5 trung bình" in flat
    assert "Phần còn lại" in flat
    assert "Trước" in flat
    assert "Sau" in flat
    fonts = {
        str(ref.get_object()["/BaseFont"])
        for page in reader.pages
        for ref in page["/Resources"]["/Font"].values()
    }
    assert any(name.endswith("+DejaVuSans") for name in fonts)
    english = client.get(
        f"{API}/evaluation", params={**EVALUATION, "format": "pdf", "lang": "en"}, headers=admin
    )
    _, text_en = pdf_text(english.content)
    assert "Difference in differences" in " ".join(text_en.split())
    assert "Share of days with poor or worse air" in " ".join(text_en.split())


def test_the_pilot_evaluation_as_xlsx_has_numbers_and_a_chart_per_indicator(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.get(
        f"{API}/evaluation",
        params=EVALUATION,
        headers={
            **admin,
            "Accept": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        },
    )
    assert response.status_code == 200, response.text
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    data = book.worksheets[0]
    header = [c.value for c in data[1]]
    assert header[:3] == ["Mã", "Chỉ tiêu", "Đơn vị tính"]
    assert "Khác biệt kép (DiD)" in header
    rows = {
        r[0]: dict(zip(header, r, strict=True)) for r in data.iter_rows(min_row=2, values_only=True)
    }
    assert set(rows) == {"N1", "N3", "G1"}
    assert rows["N1"]["Thí điểm – trước"] == 500
    assert rows["N1"]["Thí điểm – sau"] == pytest.approx(46.666667)
    assert rows["N3"]["Khác biệt kép (DiD)"] == -50
    assert rows["N1"]["Cải thiện"] is True
    assert rows["G1"]["Thí điểm – trước"] is None
    assert len(book.worksheets[2]._charts) == 3


def test_values_export_every_row_with_names_as_xlsx_and_pdf(
    client: TestClient, admin: dict[str, str]
) -> None:
    compute(client, admin)
    params = {"indicator": "N1", "level": "unit", "limit": 1}
    xlsx = client.get(f"{API}/values", params={**params, "format": "xlsx"}, headers=admin)
    assert xlsx.status_code == 200, xlsx.text
    assert 'filename="kpi-values.xlsx"' in xlsx.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:5] == ["Mã chỉ tiêu", "Chỉ tiêu", "Cấp", "Mã địa bàn", "Địa bàn"]
    rows = [dict(zip(header, r, strict=True)) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert len(rows) == 95  # not paged
    bh = next(r for r in rows if r["Mã địa bàn"] == PILOT_BH)
    assert bh["Địa bàn"] == "Phường Trấn Biên"
    assert bh["Chỉ tiêu"] == "Nồng độ bụi PM2,5 trung bình"
    assert bh["Giá trị"] == pytest.approx(46.666667)
    assert len(book.worksheets[2]._charts) == 1  # one indicator, one period: a bar per place
    pdf = client.get(f"{API}/values", params={**params, "format": "pdf"}, headers=admin)
    assert pdf.status_code == 200, pdf.text
    _, text = pdf_text(pdf.content)
    assert "Phường Trấn Biên" in text
    assert "Giá trị chỉ tiêu KPI" in text


def test_the_ranking_exports_in_english(client: TestClient, admin: dict[str, str]) -> None:
    compute(client, admin)
    params = {"indicator": "N1", "day": "2026-10-15", "lang": "en"}
    xlsx = client.get(f"{API}/ranking", params={**params, "format": "xlsx"}, headers=admin)
    assert xlsx.status_code == 200, xlsx.text
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert [c.value for c in book["Data"][1]] == [
        "Rank", "Place code", "Commune/ward", "Value", "Status",
    ]  # fmt: skip
    first = [c.value for c in book["Data"][2]]
    assert first[0] == 1
    assert isinstance(first[3], (int, float))  # a number, not text
    assert len(book["Charts"]._charts) == 1
    pdf = client.get(f"{API}/ranking", params={**params, "format": "pdf"}, headers=admin)
    _, text = pdf_text(pdf.content)
    assert "Ranking of communes and wards: N1" in " ".join(text.split())
    csv = client.get(f"{API}/ranking", params={**params, "format": "csv"}, headers=admin)
    assert csv.text.lstrip("\ufeff").startswith("rank,place_code,name,value,status")


def test_bad_format_or_language_is_refused_naming_the_field(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    viewer = login_as("viewer")
    for params, field in (({"format": "docx"}, "format"), ({"lang": "fr"}, "lang")):
        response = client.get(f"{API}/values", params=params, headers=viewer)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["field"] == field
    assert client.get(f"{API}/values", params={"format": "pdf"}).status_code == 401
