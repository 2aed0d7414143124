"""Every message the alerts context can show is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

SOURCE_KEY = re.compile(r"\"(alerts\.[a-z_]+(?:\.[a-z_]+)+)\"")
ERROR_TYPE = re.compile(r"_error\(\s*\"(alerts_[a-z_]+)\"")


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.alerts") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys() -> None:
    assert set(_catalog("vi")) == set(_catalog("en"))
    # Vietnamese is written with its diacritics.
    assert "Không có quy tắc mã {code}." in _catalog("vi").values()


def test_every_key_used_in_the_code_is_translated() -> None:
    package = resources.files("cityops.alerts")
    used: set[str] = set()
    for name in ("api.py", "service.py", "flows.py"):
        used |= set(SOURCE_KEY.findall((package / name).read_text("utf-8")))
    used -= {"alerts.engine", "alerts.metrics"}  # cache keys, not messages
    types = set(ERROR_TYPE.findall((package / "schemas.py").read_text("utf-8")))
    used |= {f"validation.{t}" for t in types}
    assert len(types) >= 5
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))
