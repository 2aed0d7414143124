"""Dossier imports: CSV, XLSX and JSON, bad rows reported by line and column with nothing
written, nothing imported twice, updates only when asked, and the command line."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from cityops.cli import app as cli
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.egov import imports
from cityops.egov.models import Dossier, DossierImport

from .conftest import API, DOSSIERS_CSV

HEADER = "agency,code,procedure,received_at,due_at,completed_at,channel,rating"
GOOD = "26041,TB-1,1.001193,2026-11-02 08:00,2026-11-03 08:00,2026-11-02 10:00,online,5"


def _dossier(runtime: Runtime, agency: str, code: str) -> Dossier:
    with unit_of_work(runtime.session_factory) as session:
        found = session.scalar(
            select(Dossier).where(Dossier.agency_code == agency, Dossier.code == code)
        )
        assert found is not None, (agency, code)
        session.expunge(found)
        return found


def _ledger(runtime: Runtime) -> list[DossierImport]:
    with unit_of_work(runtime.session_factory) as session:
        rows = list(session.scalars(select(DossierImport).order_by(DossierImport.id)))
        for row in rows:
            session.expunge(row)
        return rows


@pytest.mark.usefixtures("no_dossiers")
def test_a_csv_file_is_imported_once(
    runtime: Runtime,
    admin: dict[str, str],
    upload: Callable[..., Any],
    count_dossiers: Callable[[], int],
) -> None:
    content = DOSSIERS_CSV.read_bytes()
    first = upload(admin, content)
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["rows"], report["imported"], report["skipped"], report["rejected"]) == (
        25,
        25,
        0,
        0,
    )
    assert report["errors"] == []
    assert report["previous_runs"] == []
    assert count_dossiers() == 25
    s1 = _dossier(runtime, "SXD", "SXD-001")
    assert s1.unit_code == "26041"
    assert s1.received_at == datetime(2026, 10, 1, 1, 0, tzinfo=UTC)  # 08:00 +07:00
    assert (s1.channel, s1.submitted_online, s1.paid_online, s1.rating) == (
        "online",
        True,
        True,
        "satisfied",
    )
    # No unit given: a department's dossier was received at the province's centre,
    # a commune's at the commune.
    assert _dossier(runtime, "SXD", "SXD-003").unit_code == "75"
    assert _dossier(runtime, "26041", "26041-001").unit_code == "26041"
    open_one = _dossier(runtime, "SXD", "SXD-007")
    assert (open_one.status, open_one.completed_at) == ("processing", None)
    assert _dossier(runtime, "SXD", "SXD-003").reused_data is None

    again = upload(admin, content, name="same-content-other-name.csv")
    assert again.status_code == 200, again.text
    repeat = again.json()
    assert (repeat["imported"], repeat["updated"], repeat["skipped"]) == (0, 0, 25)
    assert repeat["previous_runs"] == [report["import_id"]]
    assert count_dossiers() == 25
    ledger = _ledger(runtime)
    assert [(r.rows, r.imported, r.skipped, r.status) for r in ledger] == [
        (25, 25, 0, "done"),
        (25, 0, 25, "done"),
    ]
    assert ledger[0].actor.startswith("user:admin-")
    assert ledger[0].file_hash == ledger[1].file_hash


@pytest.mark.usefixtures("no_dossiers")
def test_an_xlsx_file_with_vietnamese_headers_and_spreadsheet_cells(
    runtime: Runtime, admin: dict[str, str], upload: Callable[..., Any]
) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Báo cáo hồ sơ tháng 11/2026"])  # a title row above the header
    sheet.append(
        [
            "Cơ quan",
            "Mã hồ sơ",
            "Đơn vị tiếp nhận",
            "Mã thủ tục",
            "Ngày tiếp nhận",
            "Ngày hẹn trả",
            "Ngày hoàn thành",
            "Trạng thái",
            "Hình thức nộp",
            "Thanh toán trực tuyến",
            "Số hóa",
            "Kết quả điện tử",
            "Đánh giá",
            "Ghi chú",
        ]
    )
    sheet.append(
        [
            26041,  # a unit code typed as a number
            "TB-2026-0001",
            26041,
            "2.000815",
            datetime(2026, 11, 2, 8, 30),  # local time
            datetime(2026, 11, 3).date(),  # a due date: by the end of that day
            datetime(2026, 11, 2, 10, 0),
            "Đã hoàn thành",
            "Trực tuyến",
            "có",
            True,
            1,
            "Hài lòng",
            "không quan trọng",
        ]
    )
    sheet.append([])
    sheet.append(
        [
            "SXD",
            "SXD-XL-1",
            None,
            "1.009972",
            "05/11/2026 09:15",
            "03/12/2026",
            None,
            "Đang xử lý",
            "Trực tiếp",
            "không",
            False,
            0,
            None,
            None,
        ]
    )
    buffer = io.BytesIO()
    book.save(buffer)
    response = upload(
        admin,
        buffer.getvalue(),
        name="ho-so-thang-11.xlsx",
        content_type="application/octet-stream",
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["rows"], report["imported"], report["format"]) == (2, 2, "xlsx")
    assert report["ignored_columns"] == ["Ghi chú"]
    first = _dossier(runtime, "26041", "TB-2026-0001")
    assert first.received_at == datetime(2026, 11, 2, 1, 30, tzinfo=UTC)
    assert first.due_at == datetime(2026, 11, 3, 16, 59, 59, tzinfo=UTC)
    assert (first.status, first.channel, first.paid_online, first.digitised) == (
        "completed",
        "online",
        True,
        True,
    )
    assert (first.electronic_result, first.rating) == (True, "satisfied")
    second = _dossier(runtime, "SXD", "SXD-XL-1")
    assert second.received_at == datetime(2026, 11, 5, 2, 15, tzinfo=UTC)
    assert (second.status, second.channel, second.submitted_online) == (
        "processing",
        "in_person",
        False,
    )


@pytest.mark.usefixtures("no_dossiers")
def test_json_as_a_file_and_as_a_request_body(
    client: TestClient,
    runtime: Runtime,
    admin: dict[str, str],
    upload: Callable[..., Any],
    count_dossiers: Callable[[], int],
) -> None:
    items = [
        {
            "agency": "26068",
            "ma_ho_so": "BH-1",
            "ma_thu_tuc": "1.001193",
            "ngay_tiep_nhan": "2026-11-10T08:00:00+07:00",
            "ngay_hen_tra": "2026-11-11T08:00:00+07:00",
            "submitted_online": True,
            "extra": "ignored",
        }
    ]
    response = upload(admin, json.dumps({"dossiers": items}).encode(), "h.json", "application/json")
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 1
    assert response.json()["ignored_columns"] == ["extra"]
    stored = _dossier(runtime, "26068", "BH-1")
    assert (stored.status, stored.channel) == ("received", "online")

    body = [
        {**items[0], "ma_ho_so": "BH-2"},
        {
            "agency": "SXD",
            "code": "SXD-J-1",
            "procedure": "1.009979",
            "received_at": "2026-11-10T08:00:00+07:00",
            "due_at": "2026-11-17T17:00:00+07:00",
            "completed_at": "2026-11-12T08:00:00+07:00",
            "channel": "online",
            "rating": 1,
        },
    ]
    posted = client.post(f"{API}/egov/dossiers", json=body, headers=admin)
    assert posted.status_code == 200, posted.text
    assert posted.json()["imported"] == 2
    assert posted.json()["file_name"] == "request"
    assert _dossier(runtime, "SXD", "SXD-J-1").rating == "unsatisfied"
    assert count_dossiers() == 3
    again = client.post(f"{API}/egov/dossiers", json=body, headers=admin)
    assert (again.json()["imported"], again.json()["skipped"]) == (0, 2)


BAD_CSV = "\n".join(
    [
        "agency,code,unit_code,procedure,received_at,due_at,completed_at,status,channel,submitted_online,rating",
        # line 2: fine
        "26041,OK-1,,1.001193,2026-11-02T08:00+07:00,2026-11-03T08:00+07:00,,received,online,,",
        # line 3: unknown agency
        "SXX,BAD-1,,1.001193,2026-11-02T08:00+07:00,2026-11-03T08:00+07:00,,,,,",
        # line 4: not a date, and an unknown procedure
        "26041,BAD-2,,9.999999,2026-13-02,2026-11-03,,,,,",
        # line 5: due before received
        "26041,BAD-3,,1.001193,2026-11-05T08:00+07:00,2026-11-04T08:00+07:00,,,,,",
        # line 6: completed, but no completion time
        "26041,BAD-4,,1.001193,2026-11-02T08:00+07:00,2026-11-03T08:00+07:00,,completed,,,",
        # line 7: the same dossier as line 2
        "26041,OK-1,,1.001193,2026-11-02T08:00+07:00,2026-11-03T08:00+07:00,,,,,",
        # line 8: channel and submitted_online contradict; a rating nobody knows
        "26041,BAD-5,,1.001193,2026-11-02T08:00+07:00,2026-11-03T08:00+07:00,,,in_person,yes,great",
        # line 9: unknown unit, a time in the future
        "26041,BAD-6,99999,1.001193,2026-12-30T08:00+07:00,2027-01-03T08:00+07:00,,,,,",
    ]
).encode()


@pytest.mark.usefixtures("no_dossiers")
def test_bad_rows_are_reported_by_line_and_column_and_nothing_is_written(
    runtime: Runtime,
    admin: dict[str, str],
    upload: Callable[..., Any],
    count_dossiers: Callable[[], int],
) -> None:
    response = upload(admin, BAD_CSV)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    problems = {(e["line"], e["field"]): e for e in body["errors"]}
    assert set(problems) == {
        (3, "agency"),
        (4, "procedure"),
        (4, "received_at"),
        (5, "due_at"),
        (6, "completed_at"),
        (7, "code"),
        (8, "submitted_online"),
        (8, "rating"),
        (9, "unit_code"),
        (9, "received_at"),
    }
    assert problems[(3, "agency")]["value"] == "SXX"
    assert problems[(3, "agency")]["type"] == "egov.import.unknown_agency"
    assert problems[(7, "code")]["message"] == "Hồ sơ này đã có ở dòng 2."
    assert problems[(9, "received_at")]["type"] == "egov.import.future_time"
    assert "7 dòng có lỗi" in body["detail"]
    assert count_dossiers() == 0
    assert _ledger(runtime) == []

    dry = upload({**admin, "Accept-Language": "en"}, BAD_CSV, dry_run="true")
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert (report["rows"], report["imported"], report["rejected"]) == (8, 1, 7)
    assert report["dry_run"] is True
    assert report["import_id"] is None
    first = report["errors"][0]
    assert first == {
        "line": 3,
        "column": "agency",
        "value": "SXX",
        "reason": ("Unknown agency: give a department code (e.g. SXD) or a commune/ward code."),
        "key": "egov.import.unknown_agency",
    }
    assert count_dossiers() == 0


@pytest.mark.usefixtures("no_dossiers")
def test_files_that_cannot_be_imported(
    admin: dict[str, str], upload: Callable[..., Any], count_dossiers: Callable[[], int]
) -> None:
    refused = upload(admin, b"\x89PNG\r\n", name="photo.png", content_type="image/png")
    assert refused.status_code == 415, refused.text
    assert refused.json()["type"] == "urn:cityops:problem:unsupported-media-type"
    for name, content in (
        ("broken.xlsx", b"PK\x03\x04 not really a workbook"),
        ("latin.csv", HEADER.encode() + b"\n\xff\xfe\xfa,1\n"),
        ("broken.json", b"{not json"),
        ("object.json", b'{"agency": "SXD"}'),
        ("empty.csv", b""),
    ):
        response = upload(admin, content, name=name, content_type="application/octet-stream")
        assert response.status_code == 400, (name, response.text)
    missing = upload(admin, b"agency,code,received_at\nSXD,1,2026-11-01\n")
    assert missing.status_code == 400, missing.text
    body = missing.json()
    assert {e["field"] for e in body["errors"]} == {"procedure", "due_at"}
    assert "procedure, due_at" in body["detail"]
    assert count_dossiers() == 0


@pytest.mark.usefixtures("no_dossiers")
def test_a_changed_dossier_is_skipped_unless_asked_to_update(
    runtime: Runtime, admin: dict[str, str], upload: Callable[..., Any]
) -> None:
    opened = f"{HEADER}\n26041,TB-9,1.001193,2026-11-02 08:00,2026-11-03 08:00,,online,\n"
    assert upload(admin, opened.encode()).json()["imported"] == 1
    done = opened.replace(",,online,", ",2026-11-02 15:00,online,").replace(
        "online,\n", "online,hài lòng\n"
    )
    skipped = upload(admin, done.encode()).json()
    assert (skipped["imported"], skipped["updated"], skipped["skipped"]) == (0, 0, 1)
    assert _dossier(runtime, "26041", "TB-9").completed_at is None
    updated = upload(admin, done.encode(), update="true").json()
    assert (updated["imported"], updated["updated"], updated["skipped"]) == (0, 1, 0)
    stored = _dossier(runtime, "26041", "TB-9")
    assert stored.completed_at == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert (stored.status, stored.rating) == ("completed", "satisfied")


def _cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CITYOPS_SECRET_KEY", settings.secret_key)


@pytest.mark.usefixtures("no_dossiers")
def test_the_command_line_imports_good_rows_reports_bad_ones_and_reruns_add_nothing(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    tmp_path: Path,
    count_dossiers: Callable[[], int],
) -> None:
    _cli_env(monkeypatch, settings)
    path = tmp_path / "ho-so.csv"
    path.write_bytes(BAD_CSV)
    runner = CliRunner()
    dry = runner.invoke(cli, ["import", "dossiers", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output
    assert count_dossiers() == 0
    first = runner.invoke(cli, ["import", "dossiers", str(path)])
    assert first.exit_code == 0, first.output
    assert "rows: 8, imported: 1, updated: 0, skipped: 0, refused: 7" in first.output
    assert "line 3, agency (SXX):" in first.output
    assert "line 7, code (OK-1): Hồ sơ này đã có ở dòng 2." in first.output
    assert count_dossiers() == 1
    again = runner.invoke(cli, ["import", "dossiers", str(path)])
    assert "imported: 0, updated: 0, skipped: 1, refused: 7" in again.output
    assert count_dossiers() == 1
    missing = runner.invoke(cli, ["import", "dossiers", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG")
    unsupported = runner.invoke(cli, ["import", "dossiers", str(photo)])
    assert unsupported.exit_code == 2
    assert "CSV, XLSX" in unsupported.output


@pytest.mark.usefixtures("no_dossiers")
def test_a_failed_file_import_resumes_without_importing_twice(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, count_dossiers: Callable[[], int]
) -> None:
    original = imports.store
    calls = {"n": 0}

    def failing(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the database went away")
        return original(**kwargs)

    monkeypatch.setattr(imports, "store", failing)
    with pytest.raises(RuntimeError):
        imports.import_file(
            runtime=runtime, path=DOSSIERS_CSV, principal=SYSTEM_PRINCIPAL, batch_rows=5
        )
    assert count_dossiers() == 10  # two batches of five were committed
    failed = _ledger(runtime)[-1]
    assert (failed.status, failed.batches_done, failed.imported) == ("failed", 2, 10)
    monkeypatch.setattr(imports, "store", original)
    report = imports.import_file(
        runtime=runtime, path=DOSSIERS_CSV, principal=SYSTEM_PRINCIPAL, batch_rows=5
    )
    assert (report.rows, report.imported, report.skipped) == (25, 15, 10)
    assert report.previous_runs == [failed.id]
    assert count_dossiers() == 25
