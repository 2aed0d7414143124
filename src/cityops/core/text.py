"""Text helpers for Vietnamese: search folding without diacritics, slugs."""

from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[^a-z0-9]+")
# A word of folded text: letters and digits of any script (no underscore, no punctuation).
_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower-case and strip diacritics, so `bien hoa` matches `Biên Hòa` (đ becomes d)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return " ".join(stripped.lower().split())


def words(text: str) -> list[str]:
    """Split text into its folded words: `Bụi mịn PM2.5!` → `["bui", "min", "pm2", "5"]`."""
    return _WORD.findall(fold(text))


def slugify(text: str) -> str:
    """A lower-case ASCII identifier made from any text: `Biên Hòa` → `bien-hoa`."""
    return _NON_WORD.sub("-", fold(text)).strip("-")
