"""The measuring pages in a real Chromium: a leader follows the KPI overview into Biên Hòa's area
page, opens the Decision 766 scorecard and the programme board, then switches to English."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.kpi import flows as kpi_flows
from cityops.kpi.enums import Frequency

from .browser import ARTIFACTS, browser_app, chromium, serving
from .live import LiveServer
from .test_browser import _login, _ready, _user

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(
    template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One uvicorn server for the module, on a copy of the seeded database, with the KPI
    values of this month and the two before computed."""
    app = browser_app(template_database, tmp_path_factory, "browser-measure")
    runtime = app.state.runtime
    today = datetime.now(UTC).date()
    first = date(today.year, today.month, 1)
    for back in (2, 1, 0):
        index = first.year * 12 + first.month - 1 - back
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            kpi_flows.compute(
                runtime=runtime,
                session=session,
                kind=Frequency.MONTH,
                day=date(index // 12, index % 12 + 1, 1),
                publish=False,
            )
    with serving(app) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (the system's; never downloaded)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; no console error is allowed."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="vi-VN")
    tab = context.new_page()
    tab.set_default_timeout(20000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.errors = errors
    yield tab
    assert not errors, errors
    context.close()


def _query(href: str | None) -> dict[str, list[str]]:
    assert href
    return parse_qs(urlsplit(href).query)


def test_a_leader_measures_the_programme(page: Any, server: LiveServer) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _login(page, server, _user(server, "leader", "Phạm Thị Dung"), "/kpi")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Chỉ số: ")
    assert page.locator("tr[data-indicator]").count() == 55
    assert page.locator(".spark canvas").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "kpi-overview.png"), full_page=False)

    # Drill into former Biên Hòa through the place selector, then its own page.
    page.get_by_label("Khu vực", exact=True).select_option("bien-hoa-cu")
    page.get_by_role("button", name="Áp dụng").click()
    _ready(page)
    assert "area=bien-hoa-cu" in page.url
    page.locator("#place-page").click()
    _ready(page)
    assert urlsplit(page.url).path == "/kpi/areas/bien-hoa-cu"
    assert "Biên Hòa" in page.get_by_role("heading", level=1).inner_text()
    targets = page.locator("td[data-cell='target']").all_inner_texts()
    assert any(t.strip() not in ("", "—") for t in targets)
    assert page.locator("#trend-H7 canvas").count() == 1
    assert page.locator("#trend-H7").get_attribute("data-points") == "3"
    csv = page.locator("p[data-downloads='values'] a[data-format='csv']").get_attribute("href")
    assert _query(csv)["place"] == ["bien-hoa-cu"]
    page.screenshot(path=str(ARTIFACTS / "kpi-area-bien-hoa.png"), full_page=True)

    # The Decision 766 scorecard: agencies ranked, one agency's card.
    page.goto(f"{server.url}/egov/scorecard?period=2026")
    _ready(page)
    page.wait_for_selector("#score-table:not([hidden])")
    ranks = page.locator("#score-table td[data-cell='rank']").all_inner_texts()
    assert "1" in ranks
    assert page.locator("#score-chart canvas").count() == 1
    pdf = page.locator("p[data-downloads='scores'] a[data-format='pdf']").get_attribute("href")
    assert _query(pdf)["period"] == ["2026"]
    page.screenshot(path=str(ARTIFACTS / "egov-scorecard.png"), full_page=True)
    page.locator("#score-table tbody tr").first.get_by_role("link").click()
    _ready(page)
    page.wait_for_selector("#score-figures:not([hidden])")
    assert page.locator("#fig-rank").inner_text().startswith("1")
    assert page.locator("#score-indicators tbody tr").count() >= 1

    # The programme board: matrix, Gantt and the budget against 40/60 with its variance.
    page.get_by_role("link", name="Chương trình", exact=True).click()
    _ready(page)
    assert page.locator("#matrix tbody tr").count() >= 30
    assert page.locator("#matrix td.role-owner").count() >= 30
    assert page.locator("#gantt canvas").count() == 1
    assert int(page.locator("#gantt").get_attribute("data-bars") or "0") >= 30
    assert page.locator("#budget-chart canvas").count() == 1
    overall = page.locator("#budget tfoot tr")
    assert "40 / 60" in overall.inner_text()
    assert overall.locator("td[data-cell='variance']").inner_text().strip() != "—"
    page.screenshot(path=str(ARTIFACTS / "programme-board.png"), full_page=True)

    # English.
    page.locator(".lang-switch a[data-lang='en']").click()
    _ready(page)
    assert page.get_by_role("heading", level=1).inner_text() == "Smart-city programme"
    assert page.get_by_role("heading", name="Responsibility matrix (department × item)").count()
    page.screenshot(path=str(ARTIFACTS / "programme-board-en.png"), full_page=False)


def test_a_sector_table_sorts_from_the_keyboard(page: Any, server: LiveServer) -> None:
    _login(page, server, _user(server, "viewer", "Hồ Văn Em"), "/kpi/sectors/egov")
    rows = page.locator("#unit-table tbody tr")
    assert rows.count() == 95
    assert int(page.locator("#rank-chart").get_attribute("data-bars") or "0") >= 1
    button = page.locator("#unit-table thead button.sort").nth(1)
    button.focus()
    page.keyboard.press("Enter")
    assert page.locator("#unit-table").get_attribute("data-sorted") == "1:asc"
    page.keyboard.press("Enter")
    assert page.locator("#unit-table").get_attribute("data-sorted") == "1:desc"
    values = [
        v for v in rows.evaluate_all("rows => rows.map(r => r.cells[1].dataset.value)") if v != ""
    ]
    assert values == sorted(values, key=float, reverse=True)
    page.screenshot(path=str(ARTIFACTS / "kpi-sector-egov.png"), full_page=False)
