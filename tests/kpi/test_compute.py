"""KPI values computed for the hand-worked October 2026 (conftest.py): every indicator of the
catalogue in each unit, the areas and the province; recomputation, history, CSV, publishing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cityops.citizen.models import CitizenService, Report
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.kpi import jobs
from cityops.kpi.models import KpiValue

from .conftest import API, CONTROL, PILOT_BH, PILOT_LK, POPULATION

pytestmark = pytest.mark.usefixtures("october")

# Sector statistics (none in the October fixture: never imported): "no data" everywhere.
NO_STATISTICS = {
    *("H3", "H5", "H6", "H8", "E1", "E2", "E3", "E4", "E7", "T4", "T5", "T6", "T7", "C1"),
    *("C3", "C4", "S1", "S2", "S3", "S4", "S6", "P1", "P3", "P4", "P5", "P6", "G7"),
}

# Worked by hand from the module docstring of conftest.py (None = no data: a zero divisor).
EXPECTED: dict[str, dict[str, float | None]] = {
    PILOT_BH: {
        "H1": None, "H2": 0.0, "H7": 0.0,
        "E6": None,
        "T1": 1.4, "T2": 0.0,
        "N1": 46.666667, "N2": 50.0, "N3": 50.0, "N5": 32.258065, "N6": 2.0, "N7": 0.0, "N8": None,
        "C5": 50.0, "C6": 0.0, "C8": 6451.612903,
        "S7": 200000.0,
        "P9": 1.0,
        "G1": 50.0, "G4": 0.0, "G5": 50.0, "G6": 100.0, "G9": 50.0, "G10": 19.083333,
        "G11": 50.0, "G12": 7.0,
    },
    PILOT_LK: {
        "H1": 80.0, "H2": 200.0, "H7": 0.0,
        "E6": 93.0,
        "T1": None, "T2": 0.0,
        "N1": None, "N2": None, "N3": None, "N5": 0.0, "N6": 0.0, "N7": 1.0, "N8": None,
        "C5": None, "C6": 0.0, "C8": 4694.835681,
        "S7": 100000.0,
        "P9": 1.0,
        "G1": 100.0, "G4": 100.0, "G5": 100.0, "G6": 0.0, "G9": 100.0, "G10": 5.0,
        "G11": None, "G12": None,
    },
    CONTROL: {
        "H1": None, "H2": 0.0, "H7": 0.0,
        "E6": None,
        "T1": None, "T2": 0.0,
        "N1": 20.0, "N2": 0.0, "N3": 0.0, "N5": 11.574074, "N6": 0.0, "N7": 0.0, "N8": 65.0,
        "C5": None, "C6": 0.0, "C8": 578.703704,
        "S7": 50000.0,
        "P9": 0.0,
        "G1": 0.0, "G4": 0.0, "G5": 0.0, "G6": 100.0, "G9": 0.0, "G10": 9.0,
        "G11": None, "G12": None,
    },
}  # fmt: skip


def province_population() -> int:
    """The seeded 2026 population of the province, with the three fixture units overridden."""
    text = (resources.files("cityops.profiles") / "dongnai/kpi/population.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return sum(
        POPULATION.get(r["unit_code"], int(r["population"])) for r in rows if r["year"] == "2026"
    )


# No citizen report is closed in the October fixture: the feedback indicators have a zero
# divisor (test_citizen_feedback_indicators adds reports).
for _unit_values in EXPECTED.values():
    _unit_values.update({"G2": None, "G3": None})


def compute(client: TestClient, headers: dict[str, str], day: str = "2026-10-15") -> Any:
    """Compute every indicator for the month containing `day`."""
    response = client.post(f"{API}/compute", json={"period": "M", "day": day}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def values(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    """Values by indicator code for one place (October 2026 unless told)."""
    params = {"period": "M", "start": "2026-10-01", "end": "2026-10-01", "limit": 500} | params
    response = client.get(f"{API}/values", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {v["indicator_code"]: v for v in response.json()["items"]}


@pytest.mark.parametrize("unit", [PILOT_BH, PILOT_LK, CONTROL])
def test_every_indicator_matches_the_hand_computed_value_in_each_unit(
    client: TestClient, admin: dict[str, str], unit: str
) -> None:
    result = compute(client, admin)
    assert result["period_label"] == "2026-10"
    got = values(client, admin, place=unit, level="unit")
    catalogue = client.get(f"{API}/indicators", params={"limit": 200}, headers=admin).json()
    codes = {i["code"] for i in catalogue["items"]}
    # Every indicator of the catalogue is either worked out by hand or pending.
    assert codes == set(EXPECTED[unit]) | NO_STATISTICS
    for code, expected in EXPECTED[unit].items():
        assert got[code]["value"] == pytest.approx(expected), code
    for code in NO_STATISTICS:
        assert got[code]["value"] is None
        assert got[code]["status"] == "no_data"


def test_areas_and_the_province_are_their_summed_inputs(
    client: TestClient, admin: dict[str, str]
) -> None:
    compute(client, admin)
    bien_hoa = values(client, admin, place="bien-hoa-cu")
    assert bien_hoa["N1"]["value"] == pytest.approx(46.666667)
    assert bien_hoa["G1"]["value"] == 50.0
    assert bien_hoa["N1"]["level"] == "area"
    long_khanh = values(client, admin, place="long-khanh-cu")
    assert long_khanh["H1"]["value"] == 80.0
    assert long_khanh["G5"]["value"] == 100.0
    province = values(client, admin, place="75", level="province")
    assert province["N1"]["value"] == 40.0  # (40 + 70 + 30 + 20) / 4 readings
    assert province["N1"]["inputs"] == {"pm25_sum": 160.0, "pm25_count": 4.0}
    assert province["N2"]["value"] == pytest.approx(33.333333)  # 1 of 3 unit-days
    assert province["G1"]["value"] == 50.0  # 2 of 4 handled on time
    assert province["G4"]["value"] == 25.0  # 100 − 50 % overdue − 25 % unsatisfied
    assert province["G10"]["value"] == pytest.approx(33.083333 / 3, abs=1e-6)
    assert province["G11"]["value"] == 50.0
    assert province["G12"]["value"] == 7.0
    population = province_population()
    assert province["S7"]["value"] == population
    assert province["H2"]["value"] == pytest.approx(200 / (population / 100_000), abs=1e-6)


def test_status_judges_the_value_against_the_target_and_direction(
    client: TestClient, admin: dict[str, str]
) -> None:
    compute(client, admin)
    lk = values(client, admin, place=PILOT_LK, level="unit")
    assert (lk["H1"]["status"], lk["H1"]["target"]) == ("met", 90.0)  # band 75–90
    assert lk["G1"]["status"] == "met"  # 100 ≥ 98 (the 2030 target applies in 2026)
    bh = values(client, admin, place=PILOT_BH, level="unit")
    assert bh["N1"]["status"] == "not_met"  # 46.7 µg/m³ > 20, lower is better
    assert bh["N6"]["status"] == "no_target"
    ctl = values(client, admin, place=CONTROL, level="unit")
    assert ctl["N1"]["status"] == "met"  # 20 ≤ 20


def test_recomputing_replaces_a_period_and_keeps_the_others(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    compute(client, admin)
    compute(client, admin, "2026-11-03")
    compute(client, admin)

    with runtime.session_factory() as session:
        per_period = dict(
            session.execute(
                select(KpiValue.period_start, func.count()).group_by(KpiValue.period_start)
            ).all()
        )
    assert len(per_period) == 2
    assert per_period[next(iter(per_period))] == per_period[list(per_period)[1]]
    november = values(client, admin, place=PILOT_BH, start="2026-11-01", end="2026-11-01")
    assert november["N1"]["value"] is None  # no readings in November
    assert november["S7"]["value"] == 200000.0


def test_values_export_as_csv(client: TestClient, admin: dict[str, str]) -> None:
    compute(client, admin)
    response = client.get(
        f"{API}/values",
        params={"indicator": "N1", "level": "unit", "format": "csv"},
        headers=admin,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 95  # every commune/ward, no paging
    bh = next(r for r in rows if r["place_code"] == PILOT_BH)
    assert (bh["value"], bh["status"], bh["period_label"]) == ("46.666667", "not_met", "2026-10")


def test_values_are_published_as_ngsi_ld_entities(
    client: TestClient, admin: dict[str, str]
) -> None:
    result = compute(client, admin)
    assert result["published"] > 0
    response = client.get(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:KeyPerformanceIndicator:N1:26041:2026-10",
        headers=admin,
    )
    assert response.status_code == 200, response.text
    entity = response.json()
    assert entity["type"] == "KeyPerformanceIndicator"
    assert entity["kpiValue"]["value"] == pytest.approx(46.666667)
    # No data, no entity.
    missing = client.get(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:KeyPerformanceIndicator:H3:26041:2026-10",
        headers=admin,
    )
    assert missing.status_code == 404


def test_the_job_recomputes_the_running_and_the_previous_month(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    written = jobs.recompute(runtime)
    assert written > 0
    october = values(client, admin, place=PILOT_BH)
    assert october["G1"]["value"] == 50.0
    november = values(client, admin, place=PILOT_BH, start="2026-11-01", end="2026-11-01")
    assert november["S7"]["value"] == 200000.0


def test_ranking_puts_the_best_unit_first(client: TestClient, admin: dict[str, str]) -> None:
    compute(client, admin)
    lower_better = client.get(
        f"{API}/ranking", params={"indicator": "N1", "day": "2026-10-31"}, headers=admin
    ).json()
    assert [(r["rank"], r["place_code"]) for r in lower_better["items"]] == [
        (1, CONTROL),
        (2, PILOT_BH),
    ]
    higher_better = client.get(
        f"{API}/ranking", params={"indicator": "G1", "day": "2026-10-01"}, headers=admin
    ).json()
    assert [(r["rank"], r["place_code"], r["value"]) for r in higher_better["items"]] == [
        (1, PILOT_LK, 100.0),
        (2, PILOT_BH, 50.0),
        (3, CONTROL, 0.0),
    ]
    assert higher_better["items"][0]["name"] == "Phường Long Khánh"


def test_citizen_feedback_indicators_count_reports_closed_in_the_period(
    runtime: Runtime, client: TestClient, admin: dict[str, str]
) -> None:
    """G2 (handled on time) and G3 (satisfied, of those rated) from citizen reports closed in
    October: late ones, unrated ones, duplicates and November closings handled as 766 asks."""
    october = datetime(2026, 10, 10, 3, tzinfo=UTC)
    with unit_of_work(runtime.session_factory) as session:
        service_code = session.execute(select(CitizenService.code).limit(1)).scalar_one()

        def report(n: int, unit: str, **fields: Any) -> Report:
            columns: dict[str, Any] = {
                "tracking_code": f"PA-T{n:04d}",
                "token": f"tok{n:04d}",
                "service_code": service_code,
                "status": "closed",
                "unit_code": unit,
                "requested_at": october - timedelta(days=3),
                "updated_at": october,
                "expected_at": october,
                "closed_at": october - timedelta(hours=1),
            }
            row = Report(**(columns | fields))
            session.add(row)
            session.flush()
            return row

        first = report(1, PILOT_BH, satisfied=True)
        report(2, PILOT_BH, satisfied=False)
        report(3, PILOT_BH)  # on time, not rated
        report(4, PILOT_BH, closed_at=october + timedelta(days=1), satisfied=True)  # late
        report(5, PILOT_BH, satisfied=False, duplicate_of=first.id)  # counted with its original
        report(6, PILOT_BH, closed_at=datetime(2026, 11, 2, tzinfo=UTC))  # closed in November
        report(7, CONTROL, satisfied=True)
    compute(client, admin)
    bien_hoa = values(client, admin, place=PILOT_BH, level="unit")
    assert bien_hoa["G2"]["value"] == 75.0  # 3 of 4 closed by their expected time
    assert bien_hoa["G3"]["value"] == pytest.approx(66.666667)  # 2 of 3 rated satisfied
    assert bien_hoa["G2"]["inputs"] == {"reports_on_time": 3.0, "reports_total": 4.0}
    assert values(client, admin, place=PILOT_LK, level="unit")["G3"]["value"] is None
    province = values(client, admin, place="75", level="province")
    assert province["G2"]["value"] == 80.0  # 4 of 5
    assert province["G3"]["value"] == 75.0  # 3 of 4 rated
