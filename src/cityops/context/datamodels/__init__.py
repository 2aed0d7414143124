"""Smart Data Models validation: CityOps's JSON Schemas of the entity types it uses.

Each `<Type>.schema.json` in this folder describes attribute values as in keyValues form;
`common.json` holds the members and definitions every type shares and is merged into each schema
when loaded. Validators are compiled once per process (jsonschema_rs) and cached: the write
pipeline calls `check` for every entity it writes, so the hot path is one dictionary build and
one `is_valid` call per entity. Errors are reported only when that call fails.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from cityops.context.errors import BadRequestData
from cityops.context.normalize import AttributeIn, EntityIn

FOLDER = Path(__file__).parent
SUFFIX = ".schema.json"
COMMON = "common.json"
# Top-level keywords that hold required members: checked on create and replace only.
REQUIRED_KEYWORDS = ("required", "anyOf")
MAX_SHOWN = 80
# Message keys of the keywords that bound a value, by jsonschema_rs error kind.
LIMIT_KEYS = {
    "Minimum": "minimum",
    "Maximum": "maximum",
    "ExclusiveMinimum": "exclusive_minimum",
    "ExclusiveMaximum": "exclusive_maximum",
    "MinItems": "min_items",
    "MaxItems": "max_items",
    "MinLength": "min_length",
    "MaxLength": "max_length",
}
# Vocabularies whose type IRIs name Smart Data Models types: the NGSI-LD default context (a
# plain "AirQualityObserved" under the core context), Smart Data Models' and FIWARE's own. A
# type from another vocabulary that happens to share a name is not one of these models.
MODEL_NAMESPACES = (
    "https://uri.etsi.org/ngsi-ld/default-context/",
    "https://smartdatamodels.org/",
    "https://smart-data-models.github.io/",
    "https://uri.fiware.org/ns/",
)
# Attributes of those vocabularies and of the NGSI-LD core (location, name, …) are checked.
ATTRIBUTE_NAMESPACES = (*MODEL_NAMESPACES, "https://uri.etsi.org/ngsi-ld/")


@dataclass(frozen=True)
class Model:
    """One entity type's merged schema and its two compiled validators."""

    type: str
    schema: dict[str, Any]
    full: jsonschema_rs.Validator
    partial: jsonschema_rs.Validator


def _merge(schema: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(schema)
    merged["properties"] = {**common.get("properties", {}), **schema.get("properties", {})}
    merged["$defs"] = {**common.get("$defs", {}), **schema.get("$defs", {})}
    return merged


def _compile(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    # Formats (date-time, uri) are assertions here: a malformed timestamp must not pass.
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def load(folder: Path = FOLDER) -> dict[str, Model]:
    """Read and compile every schema of a folder, keyed by entity type."""
    common = json.loads((folder / COMMON).read_text(encoding="utf-8"))
    models: dict[str, Model] = {}
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        entity_type = path.name.removesuffix(SUFFIX)
        schema = _merge(json.loads(path.read_text(encoding="utf-8")), common)
        partial = {k: v for k, v in schema.items() if k not in REQUIRED_KEYWORDS}
        models[entity_type] = Model(entity_type, schema, _compile(schema), _compile(partial))
    return models


@cache
def models() -> dict[str, Model]:
    """Return the shipped models, loaded and compiled on first use."""
    return load()


def types() -> list[str]:
    """Return the entity types that have a schema, in name order."""
    return sorted(models())


def schema(entity_type: str) -> dict[str, Any] | None:
    """Return the merged schema of a type (None if the type has none)."""
    model = models().get(entity_type)
    return None if model is None else model.schema


@lru_cache(maxsize=8192)
def local_name(iri: str) -> str:
    """Return the term an expanded name ends with (the schema's attribute or type name)."""
    return iri.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


@lru_cache(maxsize=8192)
def term_of(iri: str) -> str | None:
    """Return the model term of an expanded attribute name (None: another vocabulary's)."""
    return local_name(iri) if iri.startswith(ATTRIBUTE_NAMESPACES) else None


@lru_cache(maxsize=1024)
def model_of(entity_type: str) -> Model | None:
    """Return the model of an expanded entity type (None: not a modelled type)."""
    if not entity_type.startswith(MODEL_NAMESPACES):
        return None
    return models().get(local_name(entity_type))


def _plain(value: Any) -> Any:
    # A JSON-LD typed literal ({"@type": "DateTime", "@value": "…"}) stands for its value.
    if isinstance(value, dict) and "@value" in value and len(value) <= 2:
        return value["@value"]
    return value


def _values(attr: AttributeIn) -> list[Any]:
    """Return the keyValues value(s) of an attribute instance to check."""
    kind = attr.attr_type
    value = attr.value
    if kind == "Property":
        return [_plain(value)]
    if kind == "LanguageProperty" and isinstance(value, dict):
        strings: list[Any] = []
        for text in value.values():
            strings.extend(text if isinstance(text, list) else [text])
        return strings or [""]
    if kind == "ListRelationship" and isinstance(value, list):
        return [[item.get("object", item) if isinstance(item, dict) else item for item in value]]
    return [value]


def _documents(entity: EntityIn, model: Model) -> Iterator[dict[str, Any]]:
    """Yield the keyValues document of an entity, then one per further attribute instance."""
    document: dict[str, Any] = {"id": entity.id, "type": model.type}
    extra: list[dict[str, Any]] = []
    for attr in entity.attrs:
        name = term_of(attr.name)
        if attr.delete or name is None:
            continue
        for value in _values(attr):
            if name in document:
                extra.append({name: value})
            else:
                document[name] = value
    yield document
    yield from extra


def check(entity: EntityIn, entity_type: str, full: bool) -> BadRequestData | None:
    """Validate an entity's attributes against its type's model; None if valid or unmodelled.

    `full` (create, replace) also checks the model's required members.
    """
    model = model_of(entity_type)
    if model is None:
        return None
    for index, document in enumerate(_documents(entity, model)):
        validator = model.full if full and index == 0 else model.partial
        if validator.is_valid(document):
            continue
        error = next(iter(validator.iter_errors(document)))
        return describe(error, model.type)
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(error: jsonschema_rs.ValidationError, entity_type: str) -> BadRequestData:
    """Turn a schema violation into a BadRequestData naming the attribute and the rule."""
    kind = error.kind
    attribute = _path(list(error.instance_path)) or "-"
    params: dict[str, Any] = {"attribute": attribute, "value": _shown(error.instance)}
    name = type(kind).__name__
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        params["attribute"] = _path([*error.instance_path, kind.property])
        return BadRequestData("context.datamodel.required", type=entity_type, **params)
    kinds = jsonschema_rs.ValidationErrorKind
    limited = (
        kinds.Minimum,
        kinds.Maximum,
        kinds.ExclusiveMinimum,
        kinds.ExclusiveMaximum,
        kinds.MinItems,
        kinds.MaxItems,
        kinds.MinLength,
        kinds.MaxLength,
    )
    if isinstance(kind, limited):
        return BadRequestData(
            f"context.datamodel.{LIMIT_KEYS[name]}", limit=_shown(kind.limit), **params
        )
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Type):
        expected = " | ".join(str(t) for t in kind.types)
        return BadRequestData("context.datamodel.type", expected=expected, **params)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        options = ", ".join(_shown(option) for option in kind.options)
        return BadRequestData("context.datamodel.enum", options=options[:300], **params)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Constant):
        return BadRequestData(
            "context.datamodel.const", expected=_shown(kind.expected_value), **params
        )
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Format):
        return BadRequestData("context.datamodel.format", format=kind.format, **params)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Pattern):
        return BadRequestData("context.datamodel.pattern", **params)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.UniqueItems):
        return BadRequestData("context.datamodel.unique_items", **params)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AnyOf) and not error.instance_path:
        # The only top-level anyOf is a choice of required members (e.g. TrafficFlowObserved).
        found = schema(entity_type) or {}
        names = [n for choice in found.get("anyOf", []) for n in choice.get("required", [])]
        return BadRequestData(
            "context.datamodel.any_required", type=entity_type, options=", ".join(names), **params
        )
    return BadRequestData(
        "context.datamodel.invalid", type=entity_type, message=error.message[:300], **params
    )
