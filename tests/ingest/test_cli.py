"""The `cityops device` commands: the key is printed once, the list shows states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityops.cli import app as cli
from cityops.core.config import Settings

from .conftest import load_fixture


def test_device_create_prints_the_key_once_and_list_shows_the_device(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CITYOPS_SECRET_KEY", settings.secret_key)
    runner = CliRunner()
    attributes = json.dumps(load_fixture("device_air.json")["attributes"])
    created = runner.invoke(
        cli,
        [
            "device", "create", "dn-long-khanh-1", "--entity-type", "AirQualityObserved",
            "--attributes", attributes, "--lat", "10.93", "--lon", "107.24",
        ],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    key_lines = [line for line in created.output.splitlines() if line.startswith("cdk_")]
    assert len(key_lines) == 1
    listed = runner.invoke(cli, ["device", "list"])
    assert listed.exit_code == 0, listed.output
    assert "dn-long-khanh-1" in listed.output
    assert "offline" in listed.output
    assert key_lines[0] not in listed.output
    bad = runner.invoke(
        cli, ["device", "create", "x", "--entity-type", "T", "--attributes", '[{"key": "ts"}]']
    )
    assert bad.exit_code == 2
