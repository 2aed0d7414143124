"""Every message key the ingest context uses is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

from cityops.ingest.enums import Refusal

SOURCE_KEY = re.compile(r"\"(ingest\.[a-z_]+(?:\.[a-z_]+)+)\"")
NOT_MESSAGES = {"ingest.metrics", "ingest.compiled", "ingest.device_health"}


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.ingest") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys() -> None:
    assert set(_catalog("vi")) == set(_catalog("en"))


def test_every_key_used_in_the_code_is_translated() -> None:
    package = resources.files("cityops.ingest")
    used: set[str] = set()
    for name in ("api.py", "service.py", "flows.py", "imports.py", "readings.py", "jobs.py"):
        used |= set(SOURCE_KEY.findall((package / name).read_text("utf-8")))
    used -= NOT_MESSAGES
    used |= {f"ingest.refused.{reason.value}" for reason in Refusal}
    assert used
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))
