"""The bounded contexts this build of CityOps is made of, in dependency order."""

from __future__ import annotations

import importlib

# Imports point downward in this list, never up (ARCHITECTURE.md).
CONTEXTS: tuple[str, ...] = (
    "cityops.units",
    "cityops.auth",
    "cityops.context",
    "cityops.ingest",
    "cityops.alerts",
    "cityops.incidents",
    "cityops.notify",
    "cityops.citizen",
    "cityops.egov",
    "cityops.programme",
    "cityops.kpi",
)

# Packages whose `locales/` folders hold message catalogues.
MESSAGE_PACKAGES: list[str] = ["cityops.core", *CONTEXTS, "cityops.web"]


def import_models() -> None:
    """Import every context's tables so the metadata is complete (migrations, create_all)."""
    importlib.import_module("cityops.core.outbox")
    importlib.import_module("cityops.core.fanout")
    for package in CONTEXTS:
        importlib.import_module(f"{package}.models")
    # `web` is not a context (it sits above them all) but owns the live stream's log.
    importlib.import_module("cityops.web.models")
