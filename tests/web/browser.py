"""What every browser test module shares: its own uvicorn server on a copy of the seeded
database, and Debian's headless Chromium (never downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from cityops.app import create_app

from ..conftest import PG_URL, _settings
from .live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
VENDOR = ROOT / "src/cityops/web/static/vendor/leaflet/leaflet.js"


def browser_app(
    template_database: str, tmp_path_factory: pytest.TempPathFactory, name: str, **update: Any
) -> FastAPI:
    """An app on a copy of the seeded SQLite database (settings changed by `update`).

    Skipped on PostgreSQL (the browser checks what the pages do, not the database; the API tests
    cover PostgreSQL); a missing copy of the vendored web assets fails, since the pages cannot
    work without them and `make test` always installs them."""
    if PG_URL:
        pytest.skip(
            "the browser tests run on SQLite only: the pages behave the same on both databases "
            "and every API they call is tested on PostgreSQL"
        )
    if not VENDOR.exists():
        pytest.fail(
            "the vendored web assets are missing: run scripts/web-assets.sh (make test does)"
        )
    data = tmp_path_factory.mktemp(name)
    target = data / "cityops.db"
    shutil.copyfile(make_url(template_database).database or "", target)
    settings = _settings(f"sqlite:///{target}", data / "var")
    return create_app(settings.model_copy(update=update) if update else settings)


@contextmanager
def serving(app: FastAPI) -> Iterator[LiveServer]:
    """Serve an app with uvicorn in a thread; stop it and release its database afterwards."""
    live = LiveServer(app).start()
    try:
        yield live
    finally:
        live.stop()
        app.state.runtime.engine.dispose()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium, the system's."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()
