"""Decision 766 indicators against values computed by hand on tests/egov/fixtures/dossiers.csv.

Period 2026-10 (local): [2026-10-01 00:00, 2026-11-01 00:00) +07:00, judged at its end (the
clock is at 2026-11-20). *Handled* = completed in the period or still open at its end;
withdrawn dossiers and those completed before the period or received after it count nowhere.

SXD (Sở Xây dựng), procedures 1.009972, 1.009979, 1.009941 (all fee-bearing, integrated, online):
  S1 done 10-20 ≤ due 10-29, online, paid, digitised+electronic, reused, synced
  S2 done 11-03, after the period: open at its end and past due 10-30 → late; rated unsatisfied
  S3 done 10-14 > due 10-12 → late; online, paid; not digitised; reuse unknown
  S4 done 10-13 ≤ due 10-13 but supplemented twice → late; online; electronic no
  S5 received 09-15 (not "received" in October), done 10-10 ≤ due → on time
  S6 done 09-29 (before the period), S8 withdrawn, S9 received 11-02: excluded
  S7 open, due 11-25 → on time; online
  S10 rejected 10-28 ≤ due 11-02 → on time (a result, though a refusal); rated neutral
  handled 7 (S1 S2 S3 S4 S5 S7 S10), on time 4 (S1 S5 S7 S10), late 3, completed 5
  (S1 S3 S4 S5 S10), electronic among them 3 (S1 S3 S5); received 6 (S1 S2 S3 S4 S7 S10),
  online 4 (S1 S3 S4 S7), fee 6, paid 2 (S1 S3), digitised+electronic 2 (S1 S2),
  reuse known 5 / reused 3 (S1 S4 S7), synced 5/6 (not S4), unsatisfied 1 (S2)
  handling days: 19.0833 + 9.0417 + 7.3333 + 25 + 2.0833 = 62.5417 over 5 → 12.5083
  competence: 3 procedures, 3 online, 3 fee-bearing, 3 integrated; all 3 used online
  1.4 5/6 × 6 = 5 | 2.1 4/7 × 20 = 11.4286 | 3.1 3/3 → 4 | 3.2 3/3 × 4 = 4
  3.3 4/6 ≥ 50 % → 6 | 3.4 3/3 → 4 | 3.5 2/6 × 4 = 1.3333 | 4.1 3/5 × 6 = 3.6
  4.2 2/6 → 8 × 0.3333/0.8 = 3.3333 | 4.3 3/5 → 4 × 0.6/0.8 = 3
  5.3 (7 − 3 − 1)/7 = 0.4286 → 6 × 0.4286/0.9 = 2.8571
  points 48.5524 of 72 at stake (1.1–1.3, 4.4, 4.5, 5.1, 5.2 have no data) → 67.43 Trung bình

26041 (UBND Phường Trấn Biên), commune competence: 20 procedures, 17 online, 13 fee-bearing,
9 integrated:
  handled 8, on time 7 (T5 done 10-13 09:00 > due 08:00; T6 open, due 11-02 → on time;
  T7 supplemented once → still on time), completed 7, electronic 5 (not T5, T8)
  received 8, online 4 (T1 T2 T4 T7), fee 5 (2.000815 ×3, 2.000884 ×2), paid 1 (T4)
  digitised+electronic 5 (T1 T2 T3 T4 T7), reuse known 6 / reused 4, synced 8/8, unsatisfied 1
  used online: 1.001193 and 2.000815 → 2 of 17
  1.4 6 | 2.1 7/8 × 20 = 17.5 | 3.1 17/20 ≥ 80 % → 4 | 3.2 2/17 × 4 = 0.4706 | 3.3 4/8 → 6
  3.4 9/13 → 4 × 0.6923/0.8 = 3.4615 | 3.5 1/5 × 4 = 0.8 | 4.1 5/7 × 6 = 4.2857
  4.2 5/8 → 8 × 0.625/0.8 = 6.25 | 4.3 4/6 → 4 × 0.6667/0.8 = 3.3333 | 5.3 6/8 → 6 × 0.75/0.9 = 5
  points 57.1012 of 72 → 79.31 Tốt

26068 (UBND Phường Biên Hòa): 5 dossiers, all on time, digitised, electronic, reused, synced;
4 online; 2 fee-bearing (2.000815), both paid; 2 procedures used online.
  3.2 2/17 × 4 = 0.4706; 3.4 3.4615; everything else full → 67.9321 of 72 → 94.35 Xuất sắc

26017 (UBND Phường Tam Hiệp): 2 perfect dossiers of a no-fee procedure: 3.5 has no
denominator and is not evaluated; 3.2 1/17 × 4 = 0.2353 → 63.6968 of 68 → 93.67, never ranked
(2 dossiers < 3).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.egov.scoring import load_config

from .conftest import API

Approx = Callable[..., Any]


def _by_code(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["code"]: item for item in body["items"]}


def _indicators(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ind["id"]: ind for ind in item["indicators"]}


def _get(client: TestClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = client.get(f"{API}/egov/indicators", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# (numerator, denominator, points) per indicator, by hand (module docstring).
SXD = {
    "1.4": (5, 6, 5.0),
    "2.1": (4, 7, 11.4286),
    "3.1": (3, 3, 4.0),
    "3.2": (3, 3, 4.0),
    "3.3": (4, 6, 6.0),
    "3.4": (3, 3, 4.0),
    "3.5": (2, 6, 1.3333),
    "4.1": (3, 5, 3.6),
    "4.2": (2, 6, 3.3333),
    "4.3": (3, 5, 3.0),
    "5.3": (3, 7, 2.8571),
}
TRAN_BIEN = {
    "1.4": (8, 8, 6.0),
    "2.1": (7, 8, 17.5),
    "3.1": (17, 20, 4.0),
    "3.2": (2, 17, 0.4706),
    "3.3": (4, 8, 6.0),
    "3.4": (9, 13, 3.4615),
    "3.5": (1, 5, 0.8),
    "4.1": (5, 7, 4.2857),
    "4.2": (5, 8, 6.25),
    "4.3": (4, 6, 3.3333),
    "5.3": (6, 8, 5.0),
}
NOT_HELD = {"1.1", "1.2", "1.3", "4.4", "4.5", "5.1", "5.2"}


@pytest.mark.usefixtures("fixture_imported")
def test_agency_indicators_match_the_hand_computed_values(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = _get(client, admin, period="2026-10", group_by="agency")
    assert body["period"]["label"] == "2026-10"
    assert body["period"]["start"] == "2026-09-30T17:00:00Z"
    assert body["period"]["as_of"] == "2026-10-31T17:00:00Z"
    items = _by_code(body)
    assert set(items) == {"SXD", "26041", "26068", "26017"}
    for code, expected in (("SXD", SXD), ("26041", TRAN_BIEN)):
        indicators = _indicators(items[code])
        for ind_id, (num, den, points) in expected.items():
            ind = indicators[ind_id]
            assert (ind["numerator"], ind["denominator"]) == (num, den), (code, ind_id)
            assert ind["points"] == pytest.approx(points, abs=1e-4), (code, ind_id)
            assert ind["evaluated"] is True
        for ind_id in NOT_HELD:
            assert indicators[ind_id]["evaluated"] is False
            assert indicators[ind_id]["points"] is None
            assert indicators[ind_id]["max_points"] == 0

    sxd = items["SXD"]
    assert sxd["name"] == "Sở Xây dựng"
    assert sxd["kind"] == "department"
    assert (sxd["dossiers"], sxd["received"], sxd["completed"]) == (7, 6, 5)
    assert (sxd["open"], sxd["overdue_open"], sxd["on_time"]) == (2, 1, 4)
    assert _indicators(sxd)["2.1"]["value"] == pytest.approx(57.14, abs=0.01)
    # 2.2 is monitoring only: average days, no points.
    handling = _indicators(sxd)["2.2"]
    assert handling["unit"] == "day"
    assert handling["value"] == pytest.approx(12.51, abs=0.01)
    assert handling["points"] is None
    assert sxd["max_points"] == 72
    assert sxd["points"] == pytest.approx(48.55, abs=0.01)
    assert sxd["total"] == pytest.approx(67.43, abs=0.01)
    assert sxd["band"]["name"] == "Trung bình"
    groups = {g["key"]: g for g in sxd["groups"]}
    assert groups["progress"]["points"] == pytest.approx(11.43, abs=0.01)
    assert groups["transparency"] == {
        "key": "transparency",
        "name": "Công khai, minh bạch",
        "points": 5.0,
        "max_points": 6.0,
        "full_points": 18.0,
    }

    tran_bien = items["26041"]
    assert tran_bien["name"] == "UBND Phường Trấn Biên"
    assert tran_bien["kind"] == "commune"
    assert tran_bien["total"] == pytest.approx(79.31, abs=0.01)
    assert tran_bien["band"]["code"] == "good"
    bien_hoa = items["26068"]
    assert bien_hoa["total"] == pytest.approx(94.35, abs=0.01)
    assert bien_hoa["band"]["name"] == "Xuất sắc"
    tam_hiep = items["26017"]
    assert _indicators(tam_hiep)["3.5"]["evaluated"] is False
    assert tam_hiep["max_points"] == 68
    assert tam_hiep["total"] == pytest.approx(93.67, abs=0.01)


@pytest.mark.usefixtures("fixture_imported")
def test_unit_indicators_count_where_dossiers_were_received(
    client: TestClient, admin: dict[str, str]
) -> None:
    # Unit 26068 received B1–B5 and T8 (a Trấn Biên dossier lodged at Biên Hòa's counter):
    # 6 handled, all on time; 5 electronic of 6; 4 online of 6; 2.000815 fee-bearing: 3, paid 2.
    # Procedures used there: 1.001193, 2.000815, 1.000656 — all online, one fee-bearing and
    # integrated, two used online: 3.1 3/3 → 4, 3.2 2/3 × 4 = 2.6667, 3.4 1/1 → 4,
    # 3.5 2/3 × 4 = 2.6667, 4.1 5/6 × 6 = 5, 4.2 5/6 ≥ 80 % → 8, 4.3 5/6 → 4
    # → 68.3333 of 72 = 94.91.
    body = _get(client, admin, period="2026-10", group_by="unit")
    items = _by_code(body)
    # SXD's S3–S10 were received at the provincial centre (no unit given → the province).
    assert set(items) == {"26041", "26068", "26017", "75"}
    unit = items["26068"]
    assert unit["kind"] == "commune"
    assert unit["name"] == "Phường Biên Hòa"
    indicators = _indicators(unit)
    assert (indicators["3.2"]["numerator"], indicators["3.2"]["denominator"]) == (2, 3)
    assert (indicators["3.5"]["numerator"], indicators["3.5"]["denominator"]) == (2, 3)
    assert indicators["4.1"]["points"] == pytest.approx(5.0)
    assert unit["total"] == pytest.approx(94.91, abs=0.01)
    assert items["75"]["kind"] == "province"
    assert items["75"]["dossiers"] == 5  # S3 S4 S5 S7 S10


@pytest.mark.usefixtures("fixture_imported", "rank_from_three")
def test_ranks_follow_totals_and_small_samples_are_not_ranked(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = _get(client, admin, period="2026-10")
    assert [(i["code"], i["rank"]) for i in body["items"]] == [
        ("26068", 1),
        ("26041", 2),
        ("SXD", 3),
        ("26017", None),  # 2 dossiers: better total than SXD, but below the minimum
    ]
    assert body["ranked"] == 3
    assert body["min_dossiers_for_rank"] == 3


@pytest.mark.usefixtures("fixture_imported")
def test_with_the_profile_minimum_the_small_fixture_ranks_nobody(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = _get(client, admin, period="2026-10")
    assert body["min_dossiers_for_rank"] == 30
    assert all(item["rank"] is None and not item["ranked"] for item in body["items"])


@pytest.mark.usefixtures("fixture_imported")
def test_a_running_quarter_is_judged_now(client: TestClient, admin: dict[str, str]) -> None:
    # 2026-Q4 is still running on 2026-11-20 10:00: SXD's S2 (done 11-03 > due 10-30) is now a
    # late completion, S9 (received 11-02, due 11-30) is open and on time, S7 still on time:
    # on time S1 S5 S7 S9 S10 = 5 of 8. Trấn Biên's T6 (due 11-02, still open) is now late: 6/8.
    body = _get(client, admin, period="2026-Q4")
    assert body["period"]["as_of"] == "2026-11-20T03:00:00Z"
    items = _by_code(body)
    on_time = {code: _indicators(items[code])["2.1"] for code in ("SXD", "26041")}
    assert (on_time["SXD"]["numerator"], on_time["SXD"]["denominator"]) == (5, 8)
    assert (on_time["26041"]["numerator"], on_time["26041"]["denominator"]) == (6, 8)
    assert items["26041"]["overdue_open"] == 1
    year = _get(client, admin, period="2026")
    assert year["period"]["kind"] == "year"
    # September's S5 and S6 are in the year; S6 (done 09-29 ≤ due 09-30) is on time: 6 of 9.
    sxd_year = _indicators(_by_code(year)["SXD"])["2.1"]
    assert (sxd_year["numerator"], sxd_year["denominator"]) == (6, 9)


@pytest.mark.usefixtures("fixture_imported")
def test_english_names_and_a_bad_period(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get(
        f"{API}/egov/indicators",
        params={"period": "2026-10"},
        headers={**admin, "Accept-Language": "en"},
    )
    sxd = _by_code(response.json())["SXD"]
    assert sxd["name"] == "Department of Construction"
    assert sxd["band"]["name"] == "Average"
    assert _indicators(sxd)["2.1"]["name"] == "Dossiers processed early or on time"
    for bad in ("2026-13", "26-10", "2026-Q5", "oct"):
        response = client.get(f"{API}/egov/indicators", params={"period": bad}, headers=admin)
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["field"] == "period"


@pytest.mark.usefixtures("fixture_imported")
def test_indicators_as_csv(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get(
        f"{API}/egov/indicators", params={"period": "2026-10", "format": "csv"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "egov-766-2026-10-agency.csv" in response.headers["content-disposition"]
    rows = {r["code"]: r for r in csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))}
    assert set(rows) == {"SXD", "26041", "26068", "26017"}
    sxd = rows["SXD"]
    assert sxd["name"] == "Sở Xây dựng"
    assert (sxd["2.1_numerator"], sxd["2.1_denominator"]) == ("4", "7")
    assert float(sxd["total"]) == pytest.approx(67.43, abs=0.01)
    assert sxd["band"] == "Trung bình"
    assert sxd["1.1_value"] == ""  # not evaluated
    by_accept = client.get(
        f"{API}/egov/indicators",
        params={"period": "2026-10", "group_by": "unit"},
        headers={**admin, "Accept": "text/csv"},
    )
    assert by_accept.headers["content-type"].startswith("text/csv")
    assert "75" in by_accept.text


@pytest.mark.usefixtures("fixture_imported", "rank_from_three")
def test_scorecard_of_an_agency_with_its_procedures(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.get(f"{API}/egov/scorecard/SXD", params={"period": "2026-10"}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["group_by"] == "agency"
    assert body["ranked"] == 3
    assert body["item"]["rank"] == 3
    assert body["item"]["total"] == pytest.approx(67.43, abs=0.01)
    procedures = {p["procedure_code"]: p for p in body["procedures"]}
    # 1.009979: S3 (late), S4 (late: supplements), S10 (on time); days 9.0417 + 7.3333 + 2.0833.
    permit = procedures["1.009979"]
    assert (permit["dossiers"], permit["on_time"], permit["completed"]) == (3, 1, 3)
    assert permit["on_time_percent"] == pytest.approx(33.33, abs=0.01)
    assert permit["average_days"] == pytest.approx(6.15, abs=0.01)
    assert permit["name"].startswith("Cấp chứng chỉ hành nghề hoạt động xây dựng")
    # A commune's code is its committee by default; its unit on request.
    unit = client.get(
        f"{API}/egov/scorecard/26068",
        params={"period": "2026-10", "group_by": "unit"},
        headers=admin,
    ).json()
    assert unit["group_by"] == "unit"
    assert unit["item"]["dossiers"] == 6
    province = client.get(
        f"{API}/egov/scorecard/75", params={"period": "2026-10"}, headers=admin
    ).json()
    assert province["group_by"] == "unit"
    # An agency without dossiers in the period: nothing evaluated, no rank.
    quiet = client.get(
        f"{API}/egov/scorecard/SYT", params={"period": "2026-10"}, headers=admin
    ).json()
    assert quiet["item"]["total"] is None
    assert quiet["item"]["rank"] is None
    assert quiet["procedures"] == []
    missing = client.get(f"{API}/egov/scorecard/NOPE", headers=admin)
    assert missing.status_code == 404
    as_csv = client.get(
        f"{API}/egov/scorecard/SXD", params={"period": "2026-10", "format": "csv"}, headers=admin
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert [r["id"] for r in rows][:5] == ["1.1", "1.2", "1.3", "1.4", "2.1"]
    on_time = next(r for r in rows if r["id"] == "2.1")
    assert (on_time["numerator"], on_time["denominator"], on_time["points"]) == (
        "4",
        "7",
        "11.4286",
    )


def test_rating_bands_at_their_edges() -> None:
    config = load_config("dongnai")
    expected = {
        100: "excellent",
        90: "excellent",
        89.99: "good",
        70: "good",
        69.99: "average",
        50: "average",
        49.99: "weak",
        0: "weak",
    }
    assert {total: config.band(total).code for total in expected} == expected
