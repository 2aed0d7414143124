"""File imports: every row validated with a report of bad rows; a re-run adds nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cityops.cli import app as cli
from cityops.core.config import Settings
from cityops.core.runtime import Runtime
from cityops.ingest import imports

from .conftest import FIXTURES

WATER = "urn:ngsi-ld:WaterObserved:tri-an"


@pytest.fixture
def station(make_device: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The Biên Hòa air-quality station, registered."""
    return make_device()


def _reasons(report: imports.ImportReport) -> dict[int, str]:
    return {bad.row: bad.key for bad in report.bad_rows}


def test_a_csv_import_stores_good_rows_reports_bad_ones_and_reruns_add_nothing(
    runtime: Runtime,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
    current: Callable[..., dict[str, Any]],
) -> None:
    path = FIXTURES / "observations.csv"
    report = imports.import_file(runtime=runtime, path=path, batch_rows=4)
    assert report.rows == 15
    assert report.batches == 4
    assert _reasons(report) == {
        8: "ingest.refused.out_of_range",
        9: "ingest.refused.bad_type",
        10: "ingest.refused.unknown_key",
        11: "ingest.refused.bad_time",
        12: "ingest.import.unknown_device",
        16: "ingest.import.missing_field",
    }
    assert [v for _, v in history(station["entity_id"], "pm25")] == [31.5, 32.5]
    # 40 µg/m³ given for the ppb key is taken as µg/m³; 20 ppb is converted.
    no2 = [v for _, v in history(station["entity_id"], "no2")]
    assert no2[0] == 40
    assert no2[1] == pytest.approx(37.6323, abs=1e-3)
    assert [v for _, v in history(station["entity_id"], "temperature")] == [30.0, 29.0]
    assert [v for _, v in history(WATER, "waterLevel")] == [61.2, 61.4]
    assert current(WATER)["waterLevel"] == {"value": 61.4, "unitCode": "MTR"}
    assert current(WATER)["floodLevelStatus"]["value"] == "Normal"
    assert report.values_stored == 9

    again = imports.import_file(runtime=runtime, path=path, batch_rows=4)
    assert again.batches == 0
    assert again.batches_skipped == 4
    assert again.values_stored == 0
    assert [v for _, v in history(station["entity_id"], "pm25")] == [31.5, 32.5]
    assert len(history(WATER, "waterLevel")) == 2


def test_a_failed_import_resumes_where_it_stopped(
    runtime: Runtime,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = FIXTURES / "observations.csv"
    original = imports._import_batch
    calls = {"n": 0}

    def failing(**kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return original(**kwargs)

    monkeypatch.setattr(imports, "_import_batch", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        imports.import_file(runtime=runtime, path=path, batch_rows=4)
    assert [v for _, v in history(station["entity_id"], "pm25")] == [31.5, 32.5]
    monkeypatch.setattr(imports, "_import_batch", original)
    resumed = imports.import_file(runtime=runtime, path=path, batch_rows=4)
    assert resumed.batches_skipped == 1
    assert resumed.batches == 3
    assert [v for _, v in history(station["entity_id"], "pm25")] == [31.5, 32.5]
    assert len(history(WATER, "waterLevel")) == 2


def test_a_json_import_of_readings_and_entities(
    runtime: Runtime,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
) -> None:
    path = FIXTURES / "observations.json"
    report = imports.import_file(runtime=runtime, path=path)
    assert _reasons(report) == {
        3: "ingest.import.missing_field",
        4: "ingest.refused.out_of_range",
        6: "ingest.refused.store_error",
        7: "ingest.import.bad_row",
    }
    assert [v for _, v in history(station["entity_id"], "pm25")] == [20.5, 21.5]
    assert [v for _, v in history(station["entity_id"], "relativeHumidity")] == [0.8]
    assert [v for _, v in history("urn:ngsi-ld:WaterObserved:dong-nai-river", "waterLevel")] == [
        2.4
    ]
    again = imports.import_file(runtime=runtime, path=path)
    assert again.values_stored == 0
    assert again.batches_skipped == 1


def test_files_that_cannot_be_imported(runtime: Runtime, tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("name,value\nx,1\n")
    with pytest.raises(imports.ImportFileError) as missing:
        imports.import_file(runtime=runtime, path=bad_csv)
    assert missing.value.key == "ingest.import.missing_columns"
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    with pytest.raises(imports.ImportFileError):
        imports.import_file(runtime=runtime, path=bad_json)


def test_the_import_command_reports_bad_rows_and_skips_on_rerun(
    settings: Settings,
    station: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CITYOPS_SECRET_KEY", settings.secret_key)
    file = tmp_path / "obs.csv"
    shutil.copyfile(FIXTURES / "observations.csv", file)
    runner = CliRunner()
    first = runner.invoke(cli, ["import", "observations", str(file)])
    assert first.exit_code == 0, first.output
    assert "bad rows: 6" in first.output
    assert "row 8:" in first.output
    second = runner.invoke(cli, ["import", "observations", str(file)])
    assert second.exit_code == 0, second.output
    assert "values stored: 0" in second.output
    assert "1 already imported" in second.output
