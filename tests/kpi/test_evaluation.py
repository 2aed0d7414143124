"""The pilot evaluation: pilot areas against the rest, before and after a go-live date, as a
difference-in-differences table with its underlying numbers (JSON and CSV)."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from .conftest import API

pytestmark = pytest.mark.usefixtures("october")

# Go-live 2026-10-01, one month each side: before = September, after = October.
# N1 (PM2.5 mean, lower is better): pilot 500 → (40+70+30)/3; rest 30 → 20.
# N3 (share of days VN_AQI > 100): pilot 100 % → 50 %; rest 0 % → 0 %.


def test_difference_in_differences_with_the_numbers_behind_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.get(
        f"{API}/evaluation",
        params={"go_live": "2026-10-01", "before": 1, "after": 1, "indicator": ["N1", "N3", "G1"]},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["before"], body["after"]) == ("2026-09..2026-09", "2026-10..2026-10")
    assert body["pilot_areas"] == ["bien-hoa-cu", "long-khanh-cu"]
    assert body["pilot_units"] + body["control_units"] == 95
    rows = {r["indicator_code"]: r for r in body["rows"]}
    n1 = rows["N1"]
    assert (n1["pilot_before"], n1["control_before"], n1["control_after"]) == (500.0, 30.0, 20.0)
    assert n1["pilot_after"] == pytest.approx(46.666667)
    assert n1["did"] == pytest.approx((46.666667 - 500) - (20 - 30))
    assert n1["improved"] is True
    assert n1["inputs"]["pilot_after"] == {"pm25_sum": 140.0, "pm25_count": 3.0}
    n3 = rows["N3"]
    assert (n3["pilot_before"], n3["pilot_after"], n3["did"]) == (100.0, 50.0, -50.0)
    # No dossiers in September: no before value, no difference.
    assert rows["G1"]["pilot_before"] is None
    assert rows["G1"]["did"] is None
    assert rows["G1"]["pilot_after"] == pytest.approx(200 / 3)


def test_the_evaluation_downloads_as_csv(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get(
        f"{API}/evaluation",
        params={"go_live": "2026-10-01", "before": 1, "after": 1, "indicator": "N1"},
        headers={**admin, "Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert "kpi-pilot-evaluation-2026-10-01.csv" in response.headers["content-disposition"]
    (row,) = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert (row["indicator_code"], row["pilot_before"], row["improved"]) == ("N1", "500.0", "true")


def test_an_unknown_indicator_is_a_404(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get(
        f"{API}/evaluation", params={"go_live": "2026-10-01", "indicator": "Z9"}, headers=admin
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
