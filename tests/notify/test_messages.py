"""Every message key the notify context uses is translated into Vietnamese and English."""

from __future__ import annotations

import json
import re
from importlib import resources

from cityops.core.config import Settings
from cityops.core.events import Event
from cityops.core.i18n import load_catalogs
from cityops.notify.enums import Channel, EventKind, Severity
from cityops.notify.messages import Renderer, read_event

from ..conftest import T0
from .conftest import load_fixture

SOURCE_KEY = re.compile(r"\"(notify\.[a-z_]+(?:\.[a-z_]+)+)\"")
NOT_MESSAGES = {"notify.directory", "notify.metrics", "notify.directory_stale", "notify.test"}


def _catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cityops.notify") / "locales" / f"{lang}.json").read_text("utf-8")
    catalog: dict[str, str] = json.loads(text)
    return catalog


def test_vietnamese_and_english_catalogues_hold_the_same_keys() -> None:
    assert set(_catalog("vi")) == set(_catalog("en"))


def test_every_key_used_in_the_code_is_translated() -> None:
    package = resources.files("cityops.notify")
    used: set[str] = set()
    for name in ("api.py", "service.py", "flows.py", "messages.py", "channels.py"):
        used |= set(SOURCE_KEY.findall((package / name).read_text("utf-8")))
    used -= NOT_MESSAGES
    for kind in EventKind:
        used |= {f"notify.subject.{kind}", f"notify.body.{kind}", f"notify.sms.{kind}"}
    used |= {f"notify.severity.{severity}" for severity in Severity}
    used |= {f"notify.channel.{channel}" for channel in Channel}
    assert "notify.preference.phone_invalid" in used
    assert used <= set(_catalog("vi"))
    assert used <= set(_catalog("en"))


def test_every_kind_renders_completely_in_both_languages() -> None:
    translate = load_catalogs(["cityops.core", "cityops.notify"], "vi")
    settings = Settings(database_url="sqlite://", secret_key="x" * 40)
    alert = load_fixture("alert_opened")
    incident = {**load_fixture("incident_escalated"), "note": "Đã điều xe cứu thương"}
    for kind in EventKind:
        family = "alerts.alert_opened" if kind.value.startswith("alert") else "incidents.x"
        notice = read_event(
            Event(type=family, data=alert if "alert" in family else incident, at=T0)
        )
        assert notice is not None
        renderer = Renderer(
            notice=notice,
            translate=translate,
            settings=settings,
            unit_names={"26017": ("Phường Tam Hiệp", None)},
            at=T0,
        )
        for lang in ("vi", "en"):
            rendered = renderer.render(kind, lang)
            for text in (rendered.subject, rendered.body, rendered.sms, rendered.zalo):
                # A missing parameter leaves its placeholder (or the key) in the text.
                assert "{" not in text, (kind, lang, text)
                assert "notify." not in text, (kind, lang, text)
            assert len(rendered.sms) <= 160
            assert "Tam Hiệp" in rendered.body
