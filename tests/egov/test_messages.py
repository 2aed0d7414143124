"""Every message key the egov context uses is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

SOURCE_KEY = re.compile(r"\"(egov\.[a-z_]+(?:\.[a-z_]+)+)\"")
NOT_MESSAGES = {"egov.due_dates", "egov.dossier_due_soon", "egov.dossier_overdue"}


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.egov") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys() -> None:
    assert set(_catalog("vi")) == set(_catalog("en"))


def test_every_key_used_in_the_code_is_translated() -> None:
    package = resources.files("cityops.egov")
    used: set[str] = set()
    for name in ("api.py", "service.py", "flows.py", "imports.py", "jobs.py", "enums.py"):
        used |= set(SOURCE_KEY.findall((package / name).read_text("utf-8")))
    used -= NOT_MESSAGES
    assert len(used) > 20
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))
