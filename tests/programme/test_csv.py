"""Every list and view as CSV: UTF-8 with a byte-order mark, chosen by `format=csv` or the
Accept header, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

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
