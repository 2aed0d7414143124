"""Every message key the programme context raises is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

SOURCE_KEY = re.compile(r"\"(programme\.[a-z0-9_]+(?:\.[a-z0-9_]+)*)\"")
NOT_MESSAGES = {"programme.import"}


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.programme") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys_and_placeholders() -> None:
    vi, en = _catalog("vi"), _catalog("en")
    assert set(vi) == set(en)
    for key in vi:
        assert set(re.findall(r"\{(\w+)\}", vi[key])) == set(re.findall(r"\{(\w+)\}", en[key]))


def test_every_key_used_in_the_code_is_translated() -> None:
    package = resources.files("cityops.programme")
    used: set[str] = set()
    for name in ("api.py", "service.py", "flows.py", "imports.py"):
        used |= set(SOURCE_KEY.findall((package / name).read_text("utf-8")))
    used -= NOT_MESSAGES
    assert len(used) > 40
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))
