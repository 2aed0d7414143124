"""Translation: message catalogues per language, merged from each context's `locales/` folder."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

LANGUAGES = ("vi", "en")


class Translator:
    """Render message keys with parameters in a language, falling back to English, then the key."""

    def __init__(self, catalogs: Mapping[str, Mapping[str, str]], default_language: str) -> None:
        self._catalogs = {lang: dict(messages) for lang, messages in catalogs.items()}
        self.default_language = default_language if default_language in LANGUAGES else "vi"

    def __call__(self, key: str, lang: str | None = None, **params: Any) -> str:
        """Translate `key` into `lang`, formatting `{name}` placeholders from params."""
        for candidate in (lang or self.default_language, "en"):
            template = self._catalogs.get(candidate, {}).get(key)
            if template is not None:
                try:
                    return template.format(**params)
                except (KeyError, IndexError, ValueError):
                    return template
        return key

    def has(self, key: str) -> bool:
        """Whether a key is known in every language."""
        return all(key in self._catalogs.get(lang, {}) for lang in LANGUAGES)

    def keys(self, lang: str) -> set[str]:
        """The keys a language's catalogue holds."""
        return set(self._catalogs.get(lang, {}))

    def negotiate(self, *candidates: str | None) -> str:
        """Pick the first supported language among explicit choices and Accept-Language values."""
        for candidate in candidates:
            if not candidate:
                continue
            for part in candidate.split(","):
                tag = part.split(";")[0].strip().lower()[:2]
                if tag in LANGUAGES:
                    return tag
        return self.default_language


def format_number(value: float | int | None, lang: str = "vi", digits: int = 0) -> str:
    """Format a number for readers of `lang`: 12.737,2 in Vietnamese, 12,737.2 in English."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    if lang == "vi":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def load_catalogs(packages: Iterable[str], default_language: str) -> Translator:
    """Load `<package>/locales/<lang>.json` for every package given (missing files are fine)."""
    catalogs: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for package in packages:
        folder = resources.files(package) / "locales"
        for lang in LANGUAGES:
            file = folder / f"{lang}.json"
            if file.is_file():
                data = json.loads(file.read_text(encoding="utf-8"))
                clash = set(data) & set(catalogs[lang])
                if clash:
                    raise ValueError(f"duplicate message keys in {package}: {sorted(clash)}")
                catalogs[lang].update(data)
    return Translator(catalogs, default_language)
