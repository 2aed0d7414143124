"""egov exports as XLSX and PDF: labelled columns, typed cells, the caller's scope kept in
every format."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import openpyxl
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from .conftest import API

pytestmark = pytest.mark.usefixtures("fixture_imported")


def sheet_rows(body: bytes) -> list[dict[str, object]]:
    sheet = openpyxl.load_workbook(io.BytesIO(body)).worksheets[0]
    header = [c.value for c in sheet[1]]
    return [dict(zip(header, r, strict=True)) for r in sheet.iter_rows(min_row=2, values_only=True)]


def pdf_text(body: bytes) -> str:
    assert body.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


def test_a_commune_officer_exports_only_the_commune_dossiers(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    commune = login_as("unit_officer", unit_code="26068")
    seen = client.get(f"{API}/egov/dossiers", headers=commune).json()
    codes = sorted(d["code"] for d in seen["items"])
    assert codes
    assert {d["unit_code"] for d in seen["items"]} == {"26068"}
    as_csv = client.get(f"{API}/egov/dossiers", params={"format": "csv"}, headers=commune)
    csv_rows = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert sorted(r["code"] for r in csv_rows) == codes
    xlsx = client.get(f"{API}/egov/dossiers", params={"format": "xlsx"}, headers=commune)
    rows = sheet_rows(xlsx.content)
    assert sorted(str(r["Mã"]) for r in rows) == codes
    assert {r["Phường, xã"] for r in rows} == {"26068"}
    pdf = pdf_text(
        client.get(f"{API}/egov/dossiers", params={"format": "pdf"}, headers=commune).content
    )
    others = client.get(f"{API}/egov/dossiers", params={"agency": "SXD"}, headers=login_as("admin"))
    assert all(code in pdf for code in codes)
    assert not any(d["code"] in pdf for d in others.json()["items"])


def test_dossier_times_are_local_datetimes_in_xlsx(
    client: TestClient, admin: dict[str, str]
) -> None:
    json_first = client.get(f"{API}/egov/dossiers", params={"limit": 1}, headers=admin).json()
    xlsx = client.get(f"{API}/egov/dossiers", params={"limit": 1, "format": "xlsx"}, headers=admin)
    (row,) = sheet_rows(xlsx.content)
    received = json_first["items"][0]["received_at"]  # UTC, e.g. 2026-10-27T01:00:00Z
    assert row["Tiếp nhận"].hour == (int(received[11:13]) + 7) % 24  # type: ignore[union-attr]
    assert isinstance(row["Nộp trực tuyến"], bool)
    assert isinstance(row["Số lần bổ sung"], int)


def test_indicators_and_scorecard_export_with_vietnamese_names(
    client: TestClient, admin: dict[str, str], login_as: Callable[..., dict[str, str]]
) -> None:
    xlsx = client.get(
        f"{API}/egov/indicators", params={"period": "2026-10", "format": "xlsx"}, headers=admin
    )
    assert 'filename="egov-766-2026-10-agency.xlsx"' in xlsx.headers["content-disposition"]
    rows = {r["Mã"]: r for r in sheet_rows(xlsx.content)}
    assert set(rows) == {"SXD", "26041", "26068", "26017"}
    assert rows["SXD"]["Tên"] == "Sở Xây dựng"
    assert rows["SXD"]["Tổng điểm (thang 100)"] == pytest.approx(67.43, abs=0.01)
    assert rows["SXD"]["2.1 – tử số"] == 4
    # A department officer sees their own agency only, in every format.
    sxd = login_as("department_officer", department_code="SXD")
    own = sheet_rows(
        client.get(
            f"{API}/egov/indicators", params={"period": "2026-10", "format": "xlsx"}, headers=sxd
        ).content
    )
    assert [r["Mã"] for r in own] == ["SXD"]
    card = client.get(
        f"{API}/egov/scorecard/SXD",
        params={"period": "2026-10", "format": "pdf", "lang": "vi"},
        headers=admin,
    )
    assert card.status_code == 200, card.text
    text = " ".join(pdf_text(card.content).split())
    assert "Phiếu điểm 766: Sở Xây dựng (SXD), kỳ 2026-10" in text
    assert "Điểm theo chỉ số" in text  # the chart
    assert "11,43" in text  # 11.4286 points, Vietnamese format
    forbidden = client.get(
        f"{API}/egov/scorecard/SYT", params={"period": "2026-10", "format": "pdf"}, headers=sxd
    )
    assert forbidden.status_code == 403


def test_procedures_and_due_dossiers_export(client: TestClient, admin: dict[str, str]) -> None:
    procedures = client.get(
        f"{API}/egov/procedures", params={"q": "khai sinh", "format": "xlsx"}, headers=admin
    )
    (row,) = sheet_rows(procedures.content)
    assert row["Mã"] == "1.001193"
    assert "khai sinh" in str(row["Tên"]).lower()
    assert isinstance(row["Thời hạn (ngày làm việc)"], int)
    due = client.get(f"{API}/egov/dossiers/due", params={"format": "pdf"}, headers=admin)
    assert due.status_code == 200
    assert "Hồ sơ quá hạn và sắp đến hạn" in pdf_text(due.content)
