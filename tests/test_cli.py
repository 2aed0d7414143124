"""The `cityops` command line, run the way an administrator runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from cityops.app import create_app
from cityops.cli import app as cli
from cityops.core.config import Settings

PASSWORD = "Tram-Bien-2026!"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    """Point the command line at this test's database, as environment variables would."""
    monkeypatch.setenv("CITYOPS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CITYOPS_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("CITYOPS_PASSWORD_TIME_COST", "1")
    monkeypatch.setenv("CITYOPS_PASSWORD_MEMORY_KIB", "64")
    return settings


@contextmanager
def api(settings: Settings) -> Iterator[TestClient]:
    """The HTTP API on the same database the command line wrote to."""
    application = create_app(settings)
    with TestClient(application) as client:
        yield client
    application.state.runtime.engine.dispose()


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.output


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        value = connection.execute(select(func.count()).select_from(text(table))).scalar_one()
    engine.dispose()
    return int(value)


def test_migrate_is_idempotent_and_seed_twice_changes_nothing(cli_env: Settings) -> None:
    code, output = run("migrate")
    assert code == 0, output
    assert "database at revision" in output
    before = _count(cli_env.database_url, "admin_unit")
    code, output = run("seed")
    assert code == 0, output
    assert _count(cli_env.database_url, "admin_unit") == before == 95 + 22 + 2


def test_user_create_then_log_in_over_the_api(cli_env: Settings) -> None:
    code, output = run(
        "user",
        "create",
        "tranbien.op",
        "--role",
        "unit_officer",
        "--unit",
        "26041",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output
    assert "created user tranbien.op" in output
    with api(cli_env) as client:
        response = client.post(
            "/api/v1/auth/token", data={"username": "tranbien.op", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text


def test_user_create_refuses_a_weak_password_and_creates_nothing(cli_env: Settings) -> None:
    before = _count(cli_env.database_url, "auth_user")
    code, output = run(
        "user", "create", "weak", "--role", "viewer", "--password-stdin", stdin="123\n"
    )
    assert code == 2
    assert "error" in output
    assert _count(cli_env.database_url, "auth_user") == before


def test_user_create_refuses_an_unknown_unit(cli_env: Settings) -> None:
    code, output = run(
        "user",
        "create",
        "nobody",
        "--role",
        "unit_officer",
        "--unit",
        "99999",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 2
    assert "99999" in output or "unit" in output.lower()


def test_apikey_create_prints_a_working_key_once(cli_env: Settings) -> None:
    code, output = run("apikey", "create", "tram-quan-trac", "--scope", "user:read")
    assert code == 0, output
    key = next(line.strip() for line in output.splitlines() if line.strip().startswith("cok_"))
    with api(cli_env) as client:
        assert client.get("/api/v1/users", headers={"X-API-Key": key}).status_code == 200
        assert client.get("/api/v1/users", headers={"X-API-Key": key + "x"}).status_code == 401


def test_import_boundaries_rejects_a_bad_file_and_keeps_the_demo_ones(
    cli_env: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "ranh-gioi.geojson"
    bad.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"code": "00000"},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[106.8, 10.9], [106.9, 10.9], [106.8, 10.9]]],
                        },
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    code, output = run("import", "boundaries", str(bad))
    assert code == 2
    assert "features[0]" in output
    with api(cli_env) as client:
        feature = client.get("/api/v1/units/26041/geometry").json()
        assert feature["properties"]["boundary_source"] == "demo"


def test_not_a_json_file_is_a_clear_error(cli_env: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "not.geojson"
    bad.write_bytes(b"\xff\xfe not json")
    code, output = run("import", "boundaries", str(bad))
    assert code == 2
    assert "not a JSON file" in output


def test_contexts_preload_makes_a_context_resolvable_offline(
    cli_env: Settings, tmp_path: Path
) -> None:
    document = tmp_path / "dongnai-context.jsonld"
    document.write_text(
        json.dumps({"@context": {"mucNuoc": "https://dongnai.example/ngsi/waterLevel"}}),
        encoding="utf-8",
    )
    url = "https://contexts.dongnai.example/ioc.jsonld"
    code, output = run("contexts", "preload", url, str(document))
    assert code == 0, output
    code, output = run(
        "user", "create", "ioc.admin", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 0, output
    with api(cli_env) as client:
        token = client.post(
            "/api/v1/auth/token", data={"username": "ioc.admin", "password": PASSWORD}
        ).json()["access_token"]
        listed = client.get(
            "/ngsi-ld/v1/jsonldContexts", headers={"Authorization": f"Bearer {token}"}
        )
        assert listed.status_code == 200, listed.text
        assert url in listed.text


def test_contexts_preload_refuses_a_document_without_a_context(
    cli_env: Settings, tmp_path: Path
) -> None:
    document = tmp_path / "not-a-context.json"
    document.write_text(json.dumps({"hello": "world"}), encoding="utf-8")
    code, output = run("contexts", "preload", "https://x.example/c.jsonld", str(document))
    assert code == 2
    assert "error" in output
