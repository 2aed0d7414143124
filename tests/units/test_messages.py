"""Every message key the units context raises is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

SOURCE_KEY = re.compile(r"\"(units\.[a-z_]+(?:\.[a-z_]+)+)\"")


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.units") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys() -> None:
    assert set(_catalog("vi")) == set(_catalog("en"))


def test_every_key_used_in_the_code_is_translated() -> None:
    package = resources.files("cityops.units")
    used: set[str] = set()
    for name in ("api.py", "service.py", "flows.py"):
        used |= set(SOURCE_KEY.findall((package / name).read_text("utf-8")))
    used.discard("units.locator")  # a cache key, not a message
    assert used
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))
