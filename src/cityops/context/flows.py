"""Orchestration of the context hub: the one write pipeline, context resolution and events.

`write_entities` is what the NGSI-LD batch API, the MQTT bridge, HTTP ingest and imports call:
validate each entity (its NGSI-LD form, then its Smart Data Model), tag it with its commune/ward,
write current state and history in set-based statements inside the caller's transaction, and
publish events once that transaction commits.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session

from cityops.context import datamodels, ldcontext, service
from cityops.context.errors import BadRequestData, LdContextNotAvailable, NgsiLdError
from cityops.context.ldcontext import ActiveContext
from cityops.context.normalize import EntityIn, iso, parse_entity
from cityops.core.clock import Clock, SystemClock
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import GLOBAL_SCOPE, Scope
from cityops.units import service as unit_service

log = logging.getLogger(__name__)

ACTIVE_CACHE = "context.active_contexts"
DOCUMENT_CACHE = "context.documents"
FOLDER_LOADED = "context.folder_loaded"
TENANTS_KEY = "context.tenant_ids"  # tenant name → id, committed ones only
HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"
MAX_CONTEXT_BYTES = 1_000_000
MAX_ACTIVE_CONTEXTS = 512
EVENT_ATTRIBUTE_CHANGED = "context.attribute_changed"
EVENT_ENTITY_CREATED = "context.entity_created"
EVENT_ENTITY_DELETED = "context.entity_deleted"


@dataclass
class BatchOutcome:
    """The result of a batch write: ids written and NGSI-LD BatchEntityErrors."""

    success: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Attribute names (short) not written per entity (patch/noOverwrite modes).
    not_updated: dict[str, list[str]] = field(default_factory=dict)
    observations: int = 0
    # The first error raised per entity (the API answers single-entity calls with it).
    raised: dict[str, NgsiLdError] = field(default_factory=dict)
    # The error of each refused input, by its position in the list written: one id may come
    # several times (readings of one device), and only some of them may be refused.
    failed: dict[int, dict[str, Any]] = field(default_factory=dict)


# --- JSON-LD contexts ------------------------------------------------------------------------


def _documents(runtime: Runtime) -> dict[str, Any]:
    documents: dict[str, Any] = runtime.caches.setdefault(DOCUMENT_CACHE, {})
    if not runtime.caches.get(FOLDER_LOADED):
        runtime.caches[FOLDER_LOADED] = True
        folder = runtime.settings.contexts_dir
        if folder is not None:
            documents.update(read_context_folder(folder))
    return documents


def read_context_folder(folder: Path) -> dict[str, Any]:
    """Read preloaded context documents from a folder (file name = URL-encoded URL)."""
    found: dict[str, Any] = {}
    if not folder.is_dir():
        log.warning("contexts folder missing", extra={"folder": str(folder)})
        return found
    for path in sorted(folder.iterdir()):
        url = urllib.parse.unquote(path.name)
        if not path.is_file() or not url.startswith(("http://", "https://")):
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("unreadable context file", extra={"file": str(path)})
            continue
        if isinstance(document, dict) and "@context" in document:
            found[url] = document
    return found


def _fetch(url: str, timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise LdContextNotAvailable("context.ld.not_available", url=url[:200])
    # httpx's timeout bounds each read, not the whole download: a host trickling bytes would
    # hold the request for ever. A total deadline is checked between chunks, and each read
    # may take half the budget, so the caller waits at most about 1.5 × timeout.
    deadline = time.monotonic() + timeout
    try:
        with (
            httpx.Client(timeout=timeout / 2, follow_redirects=True) as client,
            client.stream(
                "GET", url, headers={"Accept": "application/ld+json, application/json"}
            ) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CONTEXT_BYTES or time.monotonic() > deadline:
                    raise LdContextNotAvailable("context.ld.not_available", url=url[:200])
        return json.loads(body)
    except (httpx.HTTPError, ValueError) as exc:
        raise LdContextNotAvailable("context.ld.not_available", url=url[:200]) from exc


def load_document(*, runtime: Runtime, session: Session, url: str) -> Any:
    """Return a context document: shipped, in memory, stored, or fetched (then kept)."""
    if url in ldcontext.CORE_URLS:
        return ldcontext.core_document()
    documents = _documents(runtime)
    document = documents.get(url)
    if document is not None:
        return document
    row = service.get_ldcontext(session=session, url=url)
    if row is None and HOSTED_PATH in url:
        local_id = url.rsplit(HOSTED_PATH, 1)[1].strip("/")
        row = service.get_ldcontext(session=session, local_id=local_id)
    if row is not None:
        documents[url] = row.document
        return row.document
    document = _fetch(url, runtime.settings.context_fetch_timeout)
    if not isinstance(document, dict) or "@context" not in document:
        raise LdContextNotAvailable("context.ld.not_available", url=url[:200])
    # Kept in its own transaction: the cache survives even if the request itself fails.
    with unit_of_work(runtime.session_factory) as own:
        if service.get_ldcontext(session=own, url=url) is None:
            service.create_ldcontext(
                session=own, url=url, document=document, kind="cached", now=runtime.clock.now()
            )
    documents[url] = document
    return document


def resolve_context(*, runtime: Runtime, session: Session, value: Any) -> ActiveContext:
    """Return the active context for a `@context` value (None: the core context alone)."""
    cache: dict[str, ActiveContext] = runtime.caches.setdefault(ACTIVE_CACHE, {})
    key = ldcontext.context_key(value)
    found = cache.get(key)
    if found is not None:
        return found
    active = ldcontext.build(
        value, lambda url: load_document(runtime=runtime, session=session, url=url)
    )
    if len(cache) >= MAX_ACTIVE_CONTEXTS:
        cache.clear()
    cache[key] = active
    return active


def default_context(runtime: Runtime) -> ActiveContext:
    """Return the core context alone (short names of events and logs)."""
    cache: dict[str, ActiveContext] = runtime.caches.setdefault(ACTIVE_CACHE, {})
    key = ldcontext.context_key(None)
    found = cache.get(key)
    if found is None:
        found = ldcontext.build(None, lambda url: None)
        cache[key] = found
    return found


def forget_contexts(runtime: Runtime) -> None:
    """Drop cached documents and active contexts (after a context is added or deleted)."""
    runtime.caches.pop(ACTIVE_CACHE, None)
    documents = runtime.caches.get(DOCUMENT_CACHE)
    if documents is not None:
        documents.clear()
    runtime.caches.pop(FOLDER_LOADED, None)


def preload_context(
    *, session: Session, url: str, document: Any, clock: Clock | None = None
) -> None:
    """Store a context document under its URL so it is never fetched (operator preload)."""
    if not url.startswith(("http://", "https://")) or len(url) > 2048:
        raise BadRequestData("context.ld.bad_url")
    if not isinstance(document, dict) or not isinstance(
        document.get("@context"), dict | list | str
    ):
        raise BadRequestData("context.ld.no_context", url=url[:200])
    now = (clock or SystemClock()).now()
    service.create_ldcontext(session=session, url=url, document=document, kind="preloaded", now=now)


# --- writes ----------------------------------------------------------------------------------


def _batch_error(entity_id: str | None, error: NgsiLdError, runtime: Runtime) -> dict[str, Any]:
    detail = runtime.translate(error.key, "en", **error.params) if error.key else error.slug
    return error.to_batch_error(entity_id, detail)


def _raw_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        ident = raw.get("id", raw.get("@id"))
        return ident if isinstance(ident, str) else None
    return None


def write_entities(
    *,
    runtime: Runtime,
    session: Session,
    tenant: str,
    entities: list[dict[str, Any]],
    mode: str = "upsert",
    context: Any = None,
    scope: Scope = GLOBAL_SCOPE,
    no_overwrite: bool = False,
) -> BatchOutcome:
    """Validate and write NGSI-LD entities; publish change events after the caller commits.

    `context` is the request's `@context` for entities that carry none; `scope` limits the
    entities written to the caller's units.
    """
    if mode not in service.MODES:
        raise BadRequestData("context.batch.bad_mode", mode=mode)
    outcome = BatchOutcome()
    now = runtime.clock.now()
    parsed: list[EntityIn] = []
    contexts: dict[str, ActiveContext] = {}
    position: dict[int, int] = {}
    # Entities of a batch mostly share one `@context` object: resolve it once (its cache key
    # is a JSON dump), by identity — the values stay referenced for the whole call.
    resolved: dict[int, ActiveContext] = {}
    for index, raw in enumerate(entities):
        entity_id = _raw_id(raw)
        try:
            value = raw.get("@context", context) if isinstance(raw, dict) else context
            ctx = resolved.get(id(value))
            if ctx is None:
                ctx = resolved[id(value)] = resolve_context(
                    runtime=runtime, session=session, value=value
                )
            entity = parse_entity(
                raw,
                ctx,
                require_type=mode in ("create", "replace"),
                allow_null=mode in ("merge", "patch", "update"),
            )
        except NgsiLdError as error:
            outcome.errors.append(_batch_error(entity_id, error, runtime))
            outcome.failed[index] = outcome.errors[-1]
            if entity_id:
                outcome.raised.setdefault(entity_id, error)
            continue
        contexts[entity.id] = ctx
        position[id(entity)] = index
        parsed.append(entity)
    if not parsed:
        return outcome
    tenant_id = service.get_tenant_id(
        session=session, name=tenant, now=now, known=runtime.caches.setdefault(TENANTS_KEY, {})
    )
    units = _locate(runtime, session, parsed)
    result = service.write(
        session=session,
        tenant_id=tenant_id,
        entities=parsed,
        mode=mode,
        now=now,
        units=units,
        scope=scope,
        no_overwrite=no_overwrite,
        validate=datamodels.check,
    )
    for rejected, (failed_id, failure, _) in zip(result.rejected, result.errors, strict=True):
        outcome.errors.append(_batch_error(failed_id, failure, runtime))
        outcome.failed[position[id(rejected)]] = outcome.errors[-1]
        if failed_id:
            outcome.raised.setdefault(failed_id, failure)
    outcome.success = list(dict.fromkeys(result.success))
    outcome.observations = result.observations
    for entity_id, names in result.not_updated.items():
        ctx = contexts.get(entity_id) or default_context(runtime)
        outcome.not_updated[entity_id] = [ctx.compact(name) for name in names]
    _publish(runtime, session, tenant, result, now)
    return outcome


def write_attribute(
    *,
    runtime: Runtime,
    session: Session,
    tenant: str,
    entity_id: str,
    short: str,
    payload: Any,
    ctx: ActiveContext,
    stored: service.StoredInstance,
) -> bool:
    """Overwrite one existing attribute instance on the fast path; False: use `write_entities`.

    The hot single-attribute PATCH/PUT: the same parsing, data-model check, stored rows and
    `context.attribute_changed` event as a one-attribute batch patch, in four statements (the
    caller's SELECT of `stored` included) instead of about ten. Anything the fast path does not
    cover (several instances, a deletion, the location, another datasetId) returns False.
    """
    entity = parse_entity(
        {"id": entity_id, short: payload}, ctx, require_type=False, allow_null=True
    )
    if len(entity.attrs) != 1 or entity.point is not None:
        return False
    attr = entity.attrs[0]
    if (
        attr.delete
        or attr.attr_type == "GeoProperty"
        or attr.name.endswith("/location")
        or attr.dataset_id != stored.dataset_id
    ):
        return False
    failure = datamodels.check(entity, stored.entity_type, False)
    if failure is not None:
        raise failure
    now = runtime.clock.now()
    changed = service.write_instance(session=session, stored=stored, attr=attr, now=now)
    if changed:
        point = None if stored.lon is None or stored.lat is None else (stored.lon, stored.lat)
        result = service.WriteResult()
        result.changes.append(
            service.AttributeChange(
                entity,
                stored.entity_type,
                stored.entity_unit,
                point,
                attr,
                stored.value,
                attr.observed_at or now,
            )
        )
        _publish(runtime, session, tenant, result, now)
    return True


def _locate(runtime: Runtime, session: Session, entities: list[EntityIn]) -> dict[str, str | None]:
    located = [e for e in entities if e.point is not None]
    if not located:
        return {}
    locator = unit_service.get_locator(session=session, caches=runtime.caches)
    lons = [e.point[0] for e in located if e.point is not None]
    lats = [e.point[1] for e in located if e.point is not None]
    codes = locator.locate_many(lats, lons)
    return {entity.id: code for entity, code in zip(located, codes, strict=True)}


def _publish(
    runtime: Runtime, session: Session, tenant: str, result: service.WriteResult, now: datetime
) -> None:
    short = default_context(runtime).compact
    bus = runtime.bus
    for entity_id, entity_type, unit_code in result.created:
        bus.publish_after_commit(
            session,
            Event(
                type=EVENT_ENTITY_CREATED,
                data={
                    "tenant": tenant,
                    "entity_id": entity_id,
                    "entity_type": short(entity_type),
                    "unit_code": unit_code,
                },
                at=now,
            ),
        )
    # The changes of a batch share a few timestamps: format each once.
    stamps: dict[datetime, str] = {}
    events: list[Event] = []
    for change in result.changes:
        attr = change.attr
        observed = stamps.get(change.observed_at)
        if observed is None:
            observed = stamps[change.observed_at] = iso(change.observed_at)
        data: dict[str, Any] = {
            "tenant": tenant,
            "entity_id": change.entity.id,
            "entity_type": short(change.entity_type),
            "attribute": short(attr.name),
            "dataset_id": attr.dataset_id or None,
            "attribute_type": attr.attr_type,
            "value": None if change.deleted else attr.value,
            "previous": change.previous,
            "unit_code": change.unit_code,
            "unitCode": attr.unit_code,
            "observed_at": observed,
            "deleted": change.deleted,
        }
        if change.point is not None:
            data["lon"], data["lat"] = change.point
        events.append(Event(type=EVENT_ATTRIBUTE_CHANGED, data=data, at=now))
    bus.publish_many_after_commit(session, events)


def publish_deleted(*, runtime: Runtime, session: Session, tenant: str, rows: list[Any]) -> None:
    """Publish `context.entity_deleted` for deleted entity rows once the transaction commits."""
    short = default_context(runtime).compact
    now = runtime.clock.now()
    for row in rows:
        runtime.bus.publish_after_commit(
            session,
            Event(
                type=EVENT_ENTITY_DELETED,
                data={
                    "tenant": tenant,
                    "entity_id": row.entity_id,
                    "entity_type": short(row.type),
                    "unit_code": row.unit_code,
                },
                at=now,
            ),
        )


def publish_attributes_deleted(
    *, runtime: Runtime, session: Session, tenant: str, entity: Any, rows: list[Any]
) -> None:
    """Publish `context.attribute_changed` (deleted) for attribute rows deleted from an entity."""
    short = default_context(runtime).compact
    now = runtime.clock.now()
    for row in rows:
        data: dict[str, Any] = {
            "tenant": tenant,
            "entity_id": entity.entity_id,
            "entity_type": short(entity.type),
            "attribute": short(row.name),
            "dataset_id": row.dataset_id or None,
            "attribute_type": row.attr_type,
            "value": None,
            "previous": row.value,
            "unit_code": entity.unit_code,
            "unitCode": row.unit_code,
            "observed_at": iso(now),
            "deleted": True,
        }
        if entity.lon is not None and entity.lat is not None:
            data["lon"], data["lat"] = entity.lon, entity.lat
        runtime.bus.publish_after_commit(
            session, Event(type=EVENT_ATTRIBUTE_CHANGED, data=data, at=now)
        )
