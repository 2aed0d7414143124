"""The measuring pages (KPI overview, unit, area and sector pages, pilot evaluation, Decision 766
scorecard, programme board) as the server renders them, on the seeded demo data with KPI values
computed for two months."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.kpi import flows as kpi_flows
from cityops.kpi import jobs as kpi_jobs
from cityops.kpi.enums import Frequency
from cityops.units import service as unit_service

Login = Callable[..., dict[str, str]]
# T0 is 2026-11-20: the newest computed month is November 2026 (two months: a trend).
MONTHS = (date(2026, 10, 1), date(2026, 11, 1))
PAGES = (
    "/kpi",
    "/kpi/units/26041",
    "/kpi/areas/bien-hoa-cu",
    "/kpi/sectors/egov",
    "/kpi/evaluation",
    "/egov/scorecard",
    "/egov/scorecard/SKHCN",
    "/programme",
)


@pytest.fixture
def computed(runtime: Runtime) -> None:
    """Compute every indicator for two months (the KPI compute flow, as the job runs it)."""
    for day in MONTHS:
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            kpi_flows.compute(
                runtime=runtime, session=session, kind=Frequency.MONTH, day=day, publish=False
            )


@pytest.fixture
def pilot_units(runtime: Runtime) -> list[str]:
    """The communes/wards of the former Biên Hòa city."""
    with runtime.session_factory() as session:
        codes = unit_service.get_area_unit_codes(session=session, area_code="bien-hoa-cu")
    assert codes
    return sorted(codes)


def _config(page: str) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id="measure-config">(.*?)</script>', page, re.S
    )
    assert found, "no #measure-config in the page"
    config: dict[str, Any] = json.loads(found.group(1))
    return config


def _links(page: str, what: str) -> dict[str, dict[str, list[str]]]:
    """The download links of one table: format → (path, query)."""
    block = re.search(rf'<p class="downloads" data-downloads="{what}">(.*?)</p>', page, re.S)
    assert block, f"no download links for {what}"
    out = {}
    for href, fmt in re.findall(r'<a href="([^"]+)" data-format="(\w+)"', block.group(1)):
        parts = urlsplit(href.replace("&amp;", "&"))
        out[fmt] = {"path": [parts.path], **parse_qs(parts.query)}
    assert set(out) == {"csv", "xlsx", "pdf"}
    return out


def _row(page: str, attribute: str, value: str) -> str:
    found = re.search(rf'<tr [^>]*{attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, f"no row {attribute}={value}"
    return found.group(1)


def test_every_page_needs_a_login(client: TestClient) -> None:
    for path in PAGES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next="), path


def test_the_overview_shows_every_indicator_by_sector_with_targets_and_downloads(
    client: TestClient, login_as: Login, computed: None
) -> None:
    page = client.get("/kpi", headers=login_as("leader"))
    assert page.status_code == 200
    html = page.text
    assert "Chỉ số: " in html
    assert "2026-11" in html
    sectors = re.findall(r'class="kpi-sector" data-sector="(\w+)"', html)
    assert sectors[:3] == ["health", "education", "transport"]
    assert "egov" in sectors
    # H1 (bed occupancy) has its band 75–90 as targets 2025 and 2030.
    h1 = _row(html, "data-indicator", "H1")
    assert "75" in h1
    assert "90" in h1
    # Dossier-based e-government indicators have values computed from the demo dossiers.
    statuses = re.findall(r'<tr data-indicator="\w+" data-status="(\w+)"', html)
    assert len(statuses) == 55
    assert any(s in ("met", "not_met") for s in statuses)
    config = _config(html)
    assert len(config["trends"]["H7"]["points"]) == 2  # October and November
    links = _links(html, "values")
    assert links["pdf"]["path"] == ["/api/v1/kpi/values"]
    assert links["xlsx"]["level"] == ["province"]
    assert links["xlsx"]["period"] == ["M"]
    assert links["csv"]["start"] == ["2026-11-01"]
    assert links["csv"]["lang"] == ["vi"]
    # The top menu leads here and to the programme board.
    assert 'href="/kpi" aria-current="page"' in html
    assert 'href="/programme"' in html


def test_the_overview_switches_period_and_place(
    client: TestClient, login_as: Login, computed: None, pilot_units: list[str]
) -> None:
    headers = login_as("leader")
    html = client.get("/kpi", params={"day": "2026-10-05", "area": "bien-hoa-cu"}, headers=headers)
    assert html.status_code == 200
    assert "Biên Hòa (thành phố cũ)" in html.text
    assert "2026-10" in html.text
    links = _links(html.text, "values")
    assert links["csv"]["level"] == ["area"]
    assert links["csv"]["place"] == ["bien-hoa-cu"]
    assert links["csv"]["start"] == ["2026-10-01"]
    unit = client.get("/kpi", params={"unit": pilot_units[0], "period": "Q"}, headers=headers)
    assert unit.status_code == 200
    assert _links(unit.text, "values")["pdf"]["period"] == ["Q"]
    # No quarter was computed: the page says so rather than showing stale numbers.
    statuses = set(re.findall(r'<tr data-indicator="\w+" data-status="(\w+)"', unit.text))
    assert statuses == {"no_data"}
    missing = client.get("/kpi", params={"unit": "99999"}, headers=headers)
    assert missing.status_code == 404


def test_an_area_page_shows_indicators_against_targets_with_trends(
    client: TestClient, login_as: Login, computed: None
) -> None:
    html = client.get("/kpi/areas/bien-hoa-cu", headers=login_as("leader")).text
    assert "Chỉ số: Biên Hòa (thành phố cũ)" in html
    assert "Chỉ tiêu 2025" in html
    assert "Chỉ tiêu 2030" in html
    config = _config(html)
    points = config["trends"]["H7"]["points"]
    assert [p[0] for p in points] == ["2026-10", "2026-11"]
    assert _links(html, "values")["csv"]["place"] == ["bien-hoa-cu"]
    assert client.get("/kpi/areas/nowhere", headers=login_as("leader")).status_code == 404


def test_a_unit_page_shows_its_rank_among_the_units(
    client: TestClient, login_as: Login, computed: None, pilot_units: list[str]
) -> None:
    code = pilot_units[0]
    html = client.get(f"/kpi/units/{code}", headers=login_as("leader")).text
    ranks = re.findall(r'data-cell="rank">(\d+)/(\d+)<', html)
    assert ranks, "no rank shown"
    # Counts of incidents exist for every unit (zero): ranked among all 95 communes and wards.
    assert any(int(total) == 95 for _, total in ranks)
    assert all(1 <= int(rank) <= int(total) for rank, total in ranks)
    assert _links(html, "values")["csv"]["level"] == ["unit"]


def test_a_sector_page_compares_units_and_ranks_them(
    client: TestClient, login_as: Login, computed: None
) -> None:
    html = client.get("/kpi/sectors/egov", headers=login_as("leader")).text
    assert len(re.findall(r'<tr data-unit="', html)) == 95
    assert 'class="data sortable" id="unit-table"' in html
    config = _config(html)
    ranked = [r for r in config["rankings"].values() if r["items"]]
    assert ranked
    names = set(re.findall(r'<tr data-unit="\w+">\s*<th scope="row" data-value="([^"]+)"', html))
    assert len(names) == 95
    for ranking in ranked:
        assert 1 <= len(ranking["items"]) <= 95
        assert {name for name, _ in ranking["items"]} <= names
    links = _links(html, "values")
    assert links["xlsx"]["sector"] == ["egov"]
    assert links["xlsx"]["level"] == ["unit"]
    # The sector centre's code for social security is the catalogue's "social".
    social = client.get("/kpi/sectors/social_security", headers=login_as("leader"))
    assert social.status_code == 200
    assert "An sinh xã hội" in social.text
    assert client.get("/kpi/sectors/sport", headers=login_as("leader")).status_code == 404


def test_the_sector_centre_lists_its_indicators_and_links_to_them(
    client: TestClient, login_as: Login
) -> None:
    html = client.get("/sectors/health", headers=login_as("leader")).text
    assert 'id="sector-kpis"' in html
    assert 'href="/kpi/sectors/health"' in html
    assert _row(html, "data-indicator", "H1")


def test_the_pilot_evaluation_shows_the_difference_in_differences_and_a_pdf_link(
    client: TestClient, login_as: Login
) -> None:
    params = {"go_live": "2026-10-01", "before": "1", "after": "2", "indicator": ["H7", "G1"]}
    response = client.get("/kpi/evaluation", params=params, headers=login_as("leader"))
    assert response.status_code == 200
    html = response.text
    rows = re.findall(r'<tr data-indicator="(\w+)">', html)
    assert set(rows) <= {"H7", "G1"}
    assert "H7" in rows
    assert "Khác biệt kép" in html
    assert "Số liệu đầu vào" in html
    assert "2026-09" in html
    assert "2026-10..2026-11" in html
    pdf = re.search(r'id="eval-pdf" href="([^"]+)"', html)
    assert pdf
    parts = urlsplit(pdf.group(1).replace("&amp;", "&"))
    query = parse_qs(parts.query)
    assert parts.path == "/api/v1/kpi/evaluation"
    assert query["format"] == ["pdf"]
    assert query["go_live"] == ["2026-10-01"]
    assert query["before"] == ["1"]
    assert query["after"] == ["2"]
    assert set(query["indicator"]) <= {"H7", "G1"}
    assert _links(html, "evaluation")["xlsx"]["go_live"] == ["2026-10-01"]


def test_the_766_scorecard_pages_link_to_the_api_with_the_same_query(
    client: TestClient, login_as: Login
) -> None:
    headers = login_as("leader")
    html = client.get("/egov/scorecard", params={"group_by": "unit"}, headers=headers).text
    config = _config(html)
    assert config["api"] == "/api/v1/egov/indicators?group_by=unit"
    links = _links(html, "scores")
    assert links["pdf"]["path"] == ["/api/v1/egov/indicators"]
    assert links["pdf"]["group_by"] == ["unit"]
    # The API behind the page answers with ranked agencies.
    body = client.get("/api/v1/egov/indicators", params={"period": "2026-11"}, headers=headers)
    assert body.status_code == 200
    detail = client.get("/egov/scorecard/SKHCN", params={"period": "2026-10"}, headers=headers).text
    assert "Bộ chỉ số 766: Sở Khoa học và Công nghệ" in detail
    assert _config(detail)["api"] == "/api/v1/egov/scorecard/SKHCN?group_by=agency&period=2026-10"
    scorecard = _links(detail, "scorecard")
    assert scorecard["csv"]["path"] == ["/api/v1/egov/scorecard/SKHCN"]
    assert scorecard["csv"]["period"] == ["2026-10"]
    assert client.get("/egov/scorecard/NOPE", headers=headers).status_code == 404


def test_the_programme_board_shows_matrix_roadmap_budget_and_delays(
    client: TestClient, login_as: Login
) -> None:
    html = client.get("/programme", headers=login_as("leader")).text
    assert len(re.findall(r'<tr data-item="DN', html)) >= 34  # items table and matrix
    assert "role-owner" in html
    assert "role-supporting" in html
    # The 40/60 plan with the variance, per year and overall.
    overall = re.search(r'<tr class="total" data-scope="overall">(.*?)</tr>', html, re.S)
    assert overall
    assert "40 / 60" in overall.group(1)
    assert re.search(r'data-cell="variance">[+-]?\d', overall.group(1))
    assert re.findall(r'data-scope="year" data-year="(\d{4})"', html)
    config = _config(html)
    assert config["gantt"]
    assert all(r["start"] <= r["end"] for r in config["gantt"])
    assert config["budget"]
    assert {"recurrent", "investment", "planned"} <= set(config["budget"][0])
    for what, path in (
        ("items", "/api/v1/programme/items"),
        ("matrix", "/api/v1/programme/matrix"),
        ("roadmap", "/api/v1/programme/roadmap"),
        ("budget", "/api/v1/programme/budget"),
        ("late", "/api/v1/programme/late"),
    ):
        assert _links(html, what)["xlsx"]["path"] == [path]
    phase = client.get("/programme", params={"phase": "2026-2030"}, headers=login_as("leader"))
    assert _links(phase.text, "budget")["pdf"]["phase"] == ["2026-2030"]


def test_a_unit_officer_sees_its_own_unit_only(
    client: TestClient, login_as: Login, pilot_units: list[str]
) -> None:
    own, other = pilot_units[0], pilot_units[1]
    headers = login_as("unit_officer", unit_code=own)
    assert client.get(f"/kpi/units/{own}", headers=headers).status_code == 200
    denied = client.get(f"/kpi/units/{other}", headers=headers)
    assert denied.status_code == 403
    assert "Không có quyền xem" in denied.text
    assert client.get("/kpi/areas/bien-hoa-cu", headers=headers).status_code == 403
    assert client.get("/kpi", params={"unit": other}, headers=headers).status_code == 403
    # The province aggregate stays readable; the selector offers its own unit only.
    overview = client.get("/kpi", headers=headers)
    assert overview.status_code == 200
    selector = _config(overview.text)["selector"]
    assert [u["code"] for u in selector["units"]] == [own]
    assert selector["areas"] == []
    sector = client.get("/kpi/sectors/egov", headers=headers).text
    assert re.findall(r'<tr data-unit="(\w+)"', sector) == [own]
    assert client.get("/egov/scorecard/SKHCN", headers=headers).status_code == 403
    assert client.get(f"/egov/scorecard/{own}", headers=headers).status_code == 200
    # The programme board is not for communes: the page says so, and the menu leaves it out.
    board = client.get("/programme", headers=headers)
    assert board.status_code == 403
    assert 'href="/programme"' not in board.text


def test_the_pages_speak_english(client: TestClient, login_as: Login) -> None:
    client.cookies.set("cityops_lang", "en")
    headers = login_as("leader")
    html = client.get("/kpi", headers=headers).text
    assert "Indicators: " in html
    assert "Applicable target" in html
    assert _links(html, "values")["pdf"]["lang"] == ["en"]
    programme = client.get("/programme", headers=headers).text
    assert "Responsibility matrix" in programme
    assert "Development investment" in programme
    evaluation = client.get("/kpi/evaluation", headers=headers).text
    assert "Difference in differences" in evaluation
    assert "Download PDF" in evaluation


def test_the_demo_start_fills_the_pages(
    client: TestClient, login_as: Login, runtime: Runtime
) -> None:
    # What `cityops demo` runs before serving (here one month: the slow part is the same).
    written = kpi_jobs.compute_recent(runtime, months=1)
    assert written > 0
    headers = login_as("leader")
    for period, label in (("M", "2026-11"), ("Q", "2026-Q4"), ("Y", "2026")):
        html = client.get("/kpi", params={"period": period}, headers=headers).text
        assert f"{label}</p>" in html
        statuses = set(re.findall(r'<tr data-indicator="\w+" data-status="(\w+)"', html))
        assert statuses & {"met", "not_met"}, period
    # The previous quarter is there too, so a quarterly trend has two points.
    config = _config(client.get("/kpi", params={"period": "Q"}, headers=headers).text)
    assert [p[0] for p in config["trends"]["H7"]["points"]] == ["2026-Q3", "2026-Q4"]
