"""Every message key the incidents context uses is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

SOURCE_KEY = re.compile(r"\"(incidents\.[a-z_]+(?:\.[a-z_]+)*)\"")
# Names that look like message keys but are event types and job names.
NOT_MESSAGES = {
    "incidents.incident_created",
    "incidents.incident_changed",
    "incidents.comment_added",
    "incidents.sla_breached",
    "incidents.incident_escalated",
    "incidents.check_sla",
}


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.incidents") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys() -> None:
    assert set(_catalog("vi")) == set(_catalog("en"))


def test_every_key_used_in_the_code_is_translated() -> None:
    package = resources.files("cityops.incidents")
    used: set[str] = set()
    for name in ("api.py", "service.py", "flows.py", "files.py", "jobs.py", "enums.py"):
        used |= set(SOURCE_KEY.findall((package / name).read_text("utf-8")))
    used -= NOT_MESSAGES
    assert len(used) > 20
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))


def test_vietnamese_messages_are_written_with_diacritics() -> None:
    vietnamese = _catalog("vi")
    assert all(re.search(r"[à-ỹđ]", text) for text in vietnamese.values())
