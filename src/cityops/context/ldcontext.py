"""A light JSON-LD context processor: expand NGSI-LD terms to IRIs and compact them back.

It handles what NGSI-LD clients send: a context or a list of contexts, remote context URLs
(resolved through a loader), term definitions as strings or `{"@id", "@type"}`, `@vocab` and
compact IRIs (`prefix:suffix`). The ETSI core context ships with the package and is resolved
offline under its versioned and unversioned URLs; it is always applied, and its terms win.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from cityops.context.errors import BadRequestData

CORE_IRI = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = CORE_IRI + "default-context/"
CORE_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
CORE_URLS = frozenset(
    {
        CORE_URL,
        *(
            f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{n}.jsonld"
            for n in range(3, 9)
        ),
    }
)
# Nesting of remote contexts allowed before a context is refused (cycles, abuse).
MAX_DEPTH = 8
# Attribute-level keys of NGSI-LD that are never attribute names.
KEYWORDS = frozenset({"@id", "@type", "@context", "@vocab", "@value", "@language", "@list"})

Loader = Callable[[str], Any]


@cache
def core_document() -> dict[str, Any]:
    """Return the ETSI NGSI-LD core context document shipped with CityOps."""
    text = (
        resources.files("cityops.context") / "contexts" / "ngsi-ld-core-context.json"
    ).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@dataclass(frozen=True, slots=True)
class TermDefinition:
    """What a term stands for: its IRI and the type of its values (if the context says)."""

    iri: str
    type: str | None = None


@dataclass
class ActiveContext:
    """Term definitions in force for one request or one entity."""

    terms: dict[str, TermDefinition]
    vocab: str | None
    urls: tuple[str, ...] = ()
    source: Any = None
    _expanded: dict[str, str] = field(default_factory=dict, repr=False)
    _compacted: dict[str, str] = field(default_factory=dict, repr=False)
    _reverse: dict[str, str] | None = field(default=None, repr=False)

    @property
    def is_default(self) -> bool:
        """Whether this is the core context alone."""
        return self.source is None

    def expand(self, term: str) -> str:
        """Return the IRI of a term (attribute name or type), vocabulary-relative."""
        found = self._expanded.get(term)
        if found is not None:
            return found
        iri = _expand(term, self.terms, self.vocab)
        if len(self._expanded) < 50_000:
            self._expanded[term] = iri
        return iri

    def compact(self, iri: str) -> str:
        """Return the shortest term for an IRI, a compact IRI, or the IRI itself."""
        found = self._compacted.get(iri)
        if found is not None:
            return found
        term = self._compact(iri)
        if len(self._compacted) < 50_000:
            self._compacted[iri] = term
        return term

    def _compact(self, iri: str) -> str:
        if self._reverse is None:
            reverse: dict[str, str] = {}
            for name, definition in self.terms.items():
                if definition.iri.startswith("@") or name.startswith("@"):
                    continue
                known = reverse.get(definition.iri)
                if known is None or (len(name), name) < (len(known), known):
                    reverse[definition.iri] = name
            self._reverse = reverse
        term = self._reverse.get(iri)
        if term is not None:
            return term
        if self.vocab and iri.startswith(self.vocab):
            rest = iri[len(self.vocab) :]
            if rest and not any(c in rest for c in ":/#") and rest not in self.terms:
                return rest
        best: str | None = None
        for name, definition in self.terms.items():
            prefix = definition.iri
            if prefix.endswith(("/", "#")) and iri.startswith(prefix) and len(iri) > len(prefix):
                candidate = f"{name}:{iri[len(prefix) :]}"
                if best is None or len(candidate) < len(best):
                    best = candidate
        return best or iri


def _expand(term: str, terms: dict[str, TermDefinition], vocab: str | None) -> str:
    definition = terms.get(term)
    if definition is not None:
        return definition.iri
    if term.startswith("@"):
        return term
    prefix, colon, suffix = term.partition(":")
    if colon:
        if suffix.startswith("//"):
            return term
        known = terms.get(prefix)
        if known is not None:
            return known.iri + suffix
        return term
    if vocab:
        return vocab + term
    return term


def _resolve_iri(
    name: str,
    raw: str,
    pending: dict[str, Any],
    terms: dict[str, TermDefinition],
    vocab: str | None,
) -> str:
    """Expand the IRI given to a term, using prefixes defined beside it or earlier."""
    if raw.startswith("@"):
        return raw
    prefix, colon, suffix = raw.partition(":")
    if colon and not suffix.startswith("//"):
        if prefix in pending and prefix != name:
            value = pending[prefix]
            # The prefix's own definition may be malformed (a number, a list): it is refused
            # when its turn comes; here it simply defines nothing.
            base = value if isinstance(value, str) else None
            if isinstance(value, dict):
                base = value.get("@id")
            if isinstance(base, str) and ":" in base and not base.startswith("@"):
                return base + suffix
        known = terms.get(prefix)
        if known is not None:
            return known.iri + suffix
        return raw
    if colon:
        return raw
    if raw in terms:
        return terms[raw].iri
    return (vocab or "") + raw if vocab else raw


class _Processor:
    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.terms: dict[str, TermDefinition] = {}
        self.vocab: str | None = DEFAULT_VOCAB
        self.urls: list[str] = []

    def process(self, value: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise BadRequestData("context.ld.too_deep", depth=MAX_DEPTH)
        if value is None:
            self.terms = {}
            self.vocab = DEFAULT_VOCAB
            return
        if isinstance(value, list):
            for item in value:
                self.process(item, depth + 1)
            return
        if isinstance(value, str):
            if value in CORE_URLS:
                return
            if depth == 0 or depth == 1:
                self.urls.append(value)
            document = self.loader(value)
            if not isinstance(document, dict) or "@context" not in document:
                raise BadRequestData("context.ld.no_context", url=value)
            self.process(document["@context"], depth + 1)
            return
        if not isinstance(value, dict):
            raise BadRequestData("context.ld.invalid")
        imported = value.get("@import")
        if isinstance(imported, str):
            self.process(imported, depth + 1)
        if "@vocab" in value:
            vocab = value["@vocab"]
            if vocab is None:
                self.vocab = None
            elif isinstance(vocab, str):
                self.vocab = (
                    _expand(vocab, self.terms, self.vocab)
                    if ":" in vocab
                    else ((self.vocab or "") + vocab)
                )
            else:
                raise BadRequestData("context.ld.invalid")
        for name, definition in value.items():
            if not isinstance(name, str) or name.startswith("@"):
                continue
            if definition is None:
                self.terms.pop(name, None)
                continue
            if isinstance(definition, str):
                iri, kind = definition, None
            elif isinstance(definition, dict):
                raw_id = definition.get("@id", name)
                raw_type = definition.get("@type")
                if not isinstance(raw_id, str) or (
                    raw_type is not None and not isinstance(raw_type, str)
                ):
                    raise BadRequestData("context.ld.invalid_term", term=name)
                iri, kind = raw_id, raw_type
            else:
                raise BadRequestData("context.ld.invalid_term", term=name)
            resolved = _resolve_iri(name, iri, value, self.terms, self.vocab)
            self.terms[name] = TermDefinition(resolved, kind)


def build(value: Any, loader: Loader) -> ActiveContext:
    """Process a request's or an entity's `@context` (None: the core context alone)."""
    processor = _Processor(loader)
    core = core_document()["@context"]
    processor.process(core)
    if value is not None:
        processor.process(value)
        # The core terms are protected: a user context cannot redefine them.
        vocab = processor.vocab
        processor.process(core)
        processor.vocab = vocab
    return ActiveContext(
        terms=processor.terms,
        vocab=processor.vocab,
        urls=tuple(processor.urls),
        source=value,
    )


def context_key(value: Any) -> str:
    """Return a stable cache key for a `@context` value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
