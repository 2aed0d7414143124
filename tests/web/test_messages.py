"""Every message key the web package raises is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

SOURCE_KEY = re.compile(r"\"(web\.[a-z_]+(?:\.[a-z_]+)+)\"")


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.web") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys() -> None:
    assert set(_catalog("vi")) == set(_catalog("en"))


def test_every_key_used_by_the_stream_is_translated() -> None:
    source = (resources.files("cityops.web") / "stream.py").read_text("utf-8")
    used = set(SOURCE_KEY.findall(source)) - {"web.stream_hub"}  # a cache key, not a message
    assert used
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))
