"""NGSI-LD subscriptions: validation, storage, matching, and the notifications they send.

A subscription is stored with its terms expanded (entity types, attribute names, geoproperty)
beside the @context it came with, so it renders compacted with any caller's context.

Matching happens inside the transaction that changes the context store. The store's change
events reach `_collect` while the transaction is open (`bus.subscribe_in_transaction`), which
gathers the changes per entity in the session; just before that transaction commits,
`_before_commit` matches every active subscription of the tenant against the changed entities,
reads their current state from the store in the same transaction, and writes the notifications
to the durable outbox. So a committed change always yields its notifications and a rolled-back
one never does; the changes of one entity within one transaction make one notification.
Delivery (HTTP(S) or MQTT(S)) belongs to the outbox, one owner key per subscription; its result
hook keeps the subscription's status fields (timesSent, lastSuccess, ...).

Active subscriptions are cached per tenant (`runtime.caches`), dropped when this process changes
one and re-read every few seconds, so other workers' changes are seen soon. A tenant without
subscriptions costs one dictionary lookup per change.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy import event as sa_event
from sqlalchemy import update as sql_update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction

from cityops.context import flows, query, service
from cityops.context.errors import AlreadyExists, BadRequestData, NgsiLdError
from cityops.context.ldcontext import CORE_URL, ActiveContext
from cityops.context.models import Entity, Subscription
from cityops.context.normalize import (
    LOCATION,
    MAX_NAME,
    NULL_URI,
    VALUE_MEMBER,
    is_uri,
    iso,
    parse_datetime,
    render_entity,
)
from cityops.context.schemas import JSON, JSON_LD, Options, link_header
from cityops.context.service import ATTRIBUTE_TABLE, ENTITY_TABLE
from cityops.core import outbox
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.outbox import Delivery, Parcel
from cityops.core.runtime import Runtime
from cityops.core.security import Principal, Scope

log = logging.getLogger(__name__)

SOURCE = "ngsild.subscription"
CACHE = "context.subscriptions"
PENDING = "ngsild.pending_changes"
# How long a process trusts its cached subscriptions before reading them again (other workers).
RECHECK_SECONDS = 3.0
# Entities per notification: a 1,000-entity batch leaves in two messages, not one huge one.
MAX_ENTITIES_PER_NOTIFICATION = 500
ID_PREFIX = "urn:ngsi-ld:Subscription:"

TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
)
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
ATTRIBUTE_TRIGGERS = frozenset({"attributeCreated", "attributeUpdated", "attributeDeleted"})
FORMATS = ("normalized", "keyValues", "concise")
ACCEPTS = (JSON, JSON_LD)
SCHEMES = ("http", "https", "mqtt", "mqtts")
MQTT_QOS = ("0", "1")
MQTT_VERSIONS = ("mqtt3.1.1", "mqtt5.0")
# Members a client may send back as it got them from GET; the broker owns their values.
READ_ONLY = frozenset({"status", "createdAt", "modifiedAt"})
NOTIFICATION_READ_ONLY = frozenset(
    {"status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure"}
)
# Members of the specification this broker does not implement: refused, never ignored.
UNSUPPORTED = frozenset({"temporalQ", "scopeQ", "csf"})
OPTIONAL = frozenset(
    {
        "subscriptionName",
        "description",
        "entities",
        "watchedAttributes",
        "notificationTrigger",
        "q",
        "geoQ",
        "expiresAt",
        "throttling",
        "timeInterval",
        "jsonldContext",
        "lang",
    }
)
MAX_THROTTLING = 86_400.0
MAX_TIME_INTERVAL = 30 * 86_400.0
PERIODIC_JOB = "context.subscriptions.periodic"
PERIODIC_EVERY_SECONDS = 1.0
MAX_LIST = 100
# Headers the channel sets itself: receiverInfo may not replace them.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "link", "transfer-encoding", "connection"}
)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
PREVIOUS_MEMBER = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
    "vocab": "previousVocab",
    "json": "previousJson",
}


# --- validation ------------------------------------------------------------------------------

_INVALID: Any = object()


class _Problems:
    """Every invalid member of one request, each named, raised together as one 400."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, member: str, reason: str, **params: Any) -> Any:
        self.items.append(
            {
                "member": member,
                "key": f"context.subscription.{reason}",
                "params": {"member": member, **params},
            }
        )
        return _INVALID

    def wrap(self, member: str, error: NgsiLdError) -> Any:
        self.items.append(
            {
                "member": member,
                "key": error.key or "context.error.BadRequestData",
                "params": dict(error.params),
            }
        )
        return _INVALID

    def raise_any(self) -> None:
        if self.items:
            members = ", ".join(dict.fromkeys(str(item["member"]) for item in self.items))
            raise BadRequestData("context.subscription.invalid", members=members, errors=self.items)


def _term_ok(name: Any) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME
        and not name.isspace()
        and not any(c in name for c in "<>\"'=;()|, ")
    )


def _text(value: Any, member: str, problems: _Problems, limit: int) -> Any:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return problems.add(member, "bad_text", limit=limit)
    return value


def _names(value: Any, member: str, problems: _Problems, ctx: ActiveContext) -> Any:
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= MAX_LIST
        or not all(_term_ok(v) for v in value)
        or len(set(value)) != len(value)
    ):
        return problems.add(member, "bad_terms")
    return [ctx.expand(v) for v in value]


def _boolean(value: Any, member: str, problems: _Problems) -> Any:
    if not isinstance(value, bool):
        return problems.add(member, "bad_boolean")
    return value


def _entities(value: Any, member: str, problems: _Problems, ctx: ActiveContext) -> Any:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_LIST:
        return problems.add(member, "bad_entities")
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"{member}[{index}]"
        if not isinstance(item, dict) or not set(item) <= {"id", "idPattern", "type"}:
            problems.add(where, "bad_selector")
            continue
        kind = item.get("type")
        terms = [t.strip() for t in re.split(r"[|,]", kind)] if isinstance(kind, str) else []
        if not terms or not all(_term_ok(t) for t in terms):
            problems.add(f"{where}.type", "bad_selector")
            continue
        selector: dict[str, Any] = {"type": [ctx.expand(t) for t in terms]}
        ident, pattern = item.get("id"), item.get("idPattern")
        if ident is not None and pattern is not None:
            problems.add(where, "bad_selector")
            continue
        if ident is not None:
            if not is_uri(ident):
                problems.add(f"{where}.id", "bad_selector")
                continue
            selector["id"] = ident
        if pattern is not None:
            try:
                if not isinstance(pattern, str) or not 0 < len(pattern) <= 1000:
                    raise ValueError(pattern)
                re.compile(pattern)
            except (re.error, ValueError, OverflowError, RecursionError):
                problems.add(f"{where}.idPattern", "bad_selector")
                continue
            selector["idPattern"] = pattern
        out.append(selector)
    return out if len(out) == len(value) else _INVALID


def _triggers(value: Any, member: str, problems: _Problems) -> Any:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in TRIGGERS for v in value)
        or len(set(value)) != len(value)
    ):
        return problems.add(member, "bad_trigger")
    return list(value)


def _q(value: Any, member: str, problems: _Problems, ctx: ActiveContext) -> Any:
    if not isinstance(value, str):
        return problems.add(member, "bad_text", limit=query.MAX_Q_LENGTH)
    try:
        tree = query.parse_q(value)
        # Compiling also refuses comparisons that mix numbers and text.
        query.compile_q(tree, ctx.expand, "sqlite")
    except NgsiLdError as error:
        return problems.wrap(member, error)
    return value


def _geo_q(value: Any, member: str, problems: _Problems, ctx: ActiveContext) -> Any:
    if not isinstance(value, dict) or not set(value) <= {
        "geometry",
        "coordinates",
        "georel",
        "geoproperty",
    }:
        return problems.add(member, "bad_object")
    geometry, georel = value.get("geometry"), value.get("georel")
    geoproperty = value.get("geoproperty", "location")
    if not isinstance(geometry, str) or not isinstance(georel, str):
        return problems.add(member, "bad_geoq")
    if not _term_ok(geoproperty):
        return problems.add(f"{member}.geoproperty", "bad_terms")
    coordinates = value.get("coordinates")
    try:
        query.parse_geo(georel, geometry, coordinates, geoproperty)
    except NgsiLdError as error:
        return problems.wrap(member, error)
    if isinstance(coordinates, str):
        coordinates = json.loads(coordinates)
    return {
        "geometry": geometry,
        "coordinates": coordinates,
        "georel": georel,
        "geoproperty": ctx.expand(geoproperty),
    }


def _future(value: Any, member: str, problems: _Problems, now: datetime) -> Any:
    try:
        at = parse_datetime(value, member)
    except NgsiLdError:
        return problems.add(member, "bad_datetime")
    if at <= now:
        return problems.add(member, "bad_datetime")
    return iso(at)


def _seconds(value: Any, member: str, problems: _Problems, limit: float = MAX_THROTTLING) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= limit:
        return problems.add(member, "bad_number", limit=int(limit))
    return value


def _pairs(value: Any, member: str, problems: _Problems) -> list[tuple[str, str]] | None:
    if not isinstance(value, list) or len(value) > MAX_LIST:
        problems.add(member, "bad_key_values")
        return None
    pairs: list[tuple[str, str]] = []
    for item in value:
        if (
            not isinstance(item, dict)
            or set(item) != {"key", "value"}
            or not isinstance(item["key"], str)
            or not isinstance(item["value"], str)
            or len(item["value"]) > 1000
            or any(c in item["value"] for c in "\r\n\x00")
        ):
            problems.add(member, "bad_key_values")
            return None
        pairs.append((item["key"], item["value"]))
    return pairs


def _endpoint(value: Any, member: str, problems: _Problems) -> Any:
    if not isinstance(value, dict):
        return problems.add(member, "bad_object")
    before = len(problems.items)
    unknown = set(value) - {"uri", "accept", "receiverInfo", "notifierInfo"}
    for name in sorted(unknown):
        problems.add(f"{member}.{name}"[:100], "unknown_member")
    out: dict[str, Any] = {}
    uri = value.get("uri")
    if uri is None:
        problems.add(f"{member}.uri", "missing")
    elif not _endpoint_uri_ok(uri):
        problems.add(f"{member}.uri", "bad_uri")
    else:
        out["uri"] = uri
    accept = value.get("accept", JSON)
    if accept not in ACCEPTS:
        problems.add(f"{member}.accept", "bad_accept")
    out["accept"] = accept
    if "receiverInfo" in value:
        pairs = _pairs(value["receiverInfo"], f"{member}.receiverInfo", problems)
        for key, _ in pairs or []:
            if not HEADER_NAME.fullmatch(key) or key.lower() in RESERVED_HEADERS:
                problems.add(f"{member}.receiverInfo", "bad_header", name=key[:100])
        if pairs is not None:
            out["receiverInfo"] = [{"key": k, "value": v} for k, v in pairs]
    if "notifierInfo" in value:
        pairs = _pairs(value["notifierInfo"], f"{member}.notifierInfo", problems)
        for key, item in pairs or []:
            allowed = {"MQTT-QoS": MQTT_QOS, "MQTT-Version": MQTT_VERSIONS}.get(key)
            if allowed is None or item not in allowed:
                problems.add(f"{member}.notifierInfo", "bad_notifier")
        if pairs is not None:
            out["notifierInfo"] = [{"key": k, "value": v} for k, v in pairs]
    return out if len(problems.items) == before else _INVALID


def _endpoint_uri_ok(uri: Any) -> bool:
    if not isinstance(uri, str) or not 0 < len(uri) <= 2000 or any(c.isspace() for c in uri):
        return False
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        return False
    if parts.scheme not in SCHEMES or not parts.hostname:
        return False
    if parts.scheme.startswith("mqtt"):
        topic = parts.path[1:]
        return bool(topic) and not any(c in topic for c in "+#") and not parts.query
    return True


def _notification(
    value: Any, member: str, problems: _Problems, ctx: ActiveContext, partial: bool
) -> Any:
    if not isinstance(value, dict):
        return problems.add(member, "bad_object")
    before = len(problems.items)
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{member}.{key}"[:100]
        if key in NOTIFICATION_READ_ONLY:
            continue
        if key == "attributes":
            parsed = _names(item, where, problems, ctx)
        elif key == "format":
            parsed = item if item in FORMATS else problems.add(where, "bad_format")
        elif key in ("showChanges", "sysAttrs"):
            parsed = _boolean(item, where, problems)
        elif key == "endpoint":
            parsed = _endpoint(item, where, problems)
        else:
            parsed = problems.add(where, "unknown_member")
        if parsed is not _INVALID:
            out[key] = parsed
    if not partial and "endpoint" not in value:
        problems.add(f"{member}.endpoint", "missing")
    return out if len(problems.items) == before else _INVALID


def parse(
    body: dict[str, Any], *, ctx: ActiveContext, now: datetime, partial: bool = False
) -> dict[str, Any]:
    """Validate a subscription (or, `partial`, a PATCH fragment); return it with terms expanded.

    Every invalid member is named in one BadRequestData. In a fragment, null removes an
    optional member.
    """
    problems = _Problems()
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "@context" or key in READ_ONLY:
            continue
        if partial and key in OPTIONAL and (value is None or value == NULL_URI):
            out[key] = None
            continue
        parsed: Any
        if key == "id":
            parsed = value if _subscription_id_ok(value) else problems.add(key, "bad_id")
        elif key == "type":
            parsed = value if value == "Subscription" else problems.add(key, "bad_type")
        elif key == "subscriptionName":
            parsed = _text(value, key, problems, 256)
        elif key == "description":
            parsed = _text(value, key, problems, 2000)
        elif key == "entities":
            parsed = _entities(value, key, problems, ctx)
        elif key == "watchedAttributes":
            parsed = _names(value, key, problems, ctx)
        elif key == "notificationTrigger":
            parsed = _triggers(value, key, problems)
        elif key == "q":
            parsed = _q(value, key, problems, ctx)
            if parsed is not _INVALID:
                # q keeps the names as written; they mean what this context says.
                out["qContext"] = ctx.source
        elif key == "geoQ":
            parsed = _geo_q(value, key, problems, ctx)
        elif key == "isActive":
            parsed = _boolean(value, key, problems)
        elif key == "expiresAt":
            parsed = _future(value, key, problems, now)
        elif key == "throttling":
            parsed = _seconds(value, key, problems)
        elif key == "timeInterval":
            parsed = _seconds(value, key, problems, MAX_TIME_INTERVAL)
        elif key == "notification":
            parsed = _notification(value, key, problems, ctx, partial)
        elif key == "jsonldContext":
            ok = isinstance(value, str) and value.startswith(("http://", "https://"))
            parsed = value if ok and len(value) <= 2048 else problems.add(key, "bad_context")
        elif key == "lang":
            parsed = _text(value, key, problems, 64)
        elif key in UNSUPPORTED:
            parsed = problems.add(key, "unsupported")
        else:
            parsed = problems.add(key[:64], "unknown_member")
        if parsed is not _INVALID:
            out[key] = parsed
    if not partial:
        if "type" not in body:
            problems.add("type", "missing")
        if "notification" not in body:
            problems.add("notification", "missing")
    problems.raise_any()
    return out


def _subscription_id_ok(value: Any) -> bool:
    # An id travels in a URL path segment: no slash, query or fragment characters.
    return (
        is_uri(value)
        and len(value) <= 512
        and not any(c in value for c in "/?#%")
        and not any(c.isspace() for c in value)
    )


def merge(stored: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """Apply a PATCH fragment: members replace (null removes); notification merges one level."""
    document = dict(stored)
    for key, value in fragment.items():
        if key in ("id", "type"):
            continue
        if key == "notification":
            document["notification"] = {**document.get("notification", {}), **value}
        elif value is None:
            document.pop(key, None)
            if key == "q":
                document.pop("qContext", None)
        else:
            document[key] = value
    return document


def check(document: dict[str, Any]) -> None:
    """Refuse a subscription whose members do not make sense together."""
    problems = _Problems()
    if not document.get("entities") and not document.get("watchedAttributes"):
        problems.add("entities", "no_selector")
    if not document.get("notification", {}).get("endpoint"):
        problems.add("notification.endpoint", "missing")
    if document.get("timeInterval") is not None:
        # A periodic subscription reports the state of its entities, not their changes.
        for other in ("watchedAttributes", "throttling"):
            if document.get(other) is not None:
                problems.add("timeInterval", "conflict", other=other)
        if not document.get("entities"):
            problems.add("entities", "missing")
    problems.raise_any()


# --- storage ---------------------------------------------------------------------------------


def _columns(document: dict[str, Any]) -> dict[str, Any]:
    types: list[str] | None = None
    if document.get("entities"):
        types = sorted({t for selector in document["entities"] for t in selector["type"]})
    expires = document.get("expiresAt")
    return {
        "name": document.get("subscriptionName"),
        "is_active": document.get("isActive", True),
        "expires_at": parse_datetime(expires, "expiresAt") if expires else None,
        "throttling": document.get("throttling"),
        "time_interval": document.get("timeInterval"),
        "entity_types": types,
    }


def visible(row: Subscription, scope: Scope) -> bool:
    """Whether a caller with this scope may see a subscription (its owner's units are its own)."""
    if scope.unit_codes is None:
        return True
    return row.owner_units is not None and set(row.owner_units) <= scope.unit_codes


def get(
    *, session: Session, tenant: str, subscription_id: str, scope: Scope | None = None
) -> Subscription | None:
    """Return a subscription of a tenant (None if absent or, given a scope, not visible)."""
    row = session.execute(
        select(Subscription).where(
            Subscription.tenant == tenant, Subscription.subscription_id == subscription_id
        )
    ).scalar_one_or_none()
    if row is not None and scope is not None and not visible(row, scope):
        return None
    return row


def get_all(
    *, session: Session, tenant: str, scope: Scope, limit: int, offset: int
) -> tuple[list[Subscription], int]:
    """Return one page of the subscriptions a caller may see (creation order) and their total."""
    rows = session.execute(
        select(Subscription).where(Subscription.tenant == tenant).order_by(Subscription.pk)
    ).scalars()
    seen = [row for row in rows if visible(row, scope)]
    return seen[offset : offset + limit], len(seen)


def create(
    *,
    session: Session,
    tenant: str,
    document: dict[str, Any],
    context: Any,
    owner: Principal,
    now: datetime,
) -> Subscription:
    """Store a validated subscription (409 if its id is taken in this tenant)."""
    check(document)
    subscription_id = document.get("id") or f"{ID_PREFIX}{uuid.uuid4()}"
    document = {**document, "id": subscription_id, "type": "Subscription"}
    if get(session=session, tenant=tenant, subscription_id=subscription_id) is not None:
        raise AlreadyExists("context.subscription.exists", id=subscription_id[:200])
    units = owner.scope.unit_codes
    row = Subscription(
        tenant=tenant,
        subscription_id=subscription_id,
        owner_kind=owner.kind,
        owner_id=owner.id,
        owner_units=sorted(units) if units is not None else None,
        document=document,
        context=context,
        times_sent=0,
        times_failed=0,
        created_at=now,
        modified_at=now,
        **_columns(document),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise AlreadyExists("context.subscription.exists", id=subscription_id[:200]) from exc
    return row


def update(
    *, session: Session, row: Subscription, fragment: dict[str, Any], now: datetime
) -> Subscription:
    """Merge a validated PATCH fragment into a subscription."""
    document = merge(row.document, fragment)
    check(document)
    row.document = document
    for key, value in _columns(document).items():
        setattr(row, key, value)
    row.modified_at = now
    session.flush()
    return row


def delete(*, session: Session, row: Subscription) -> None:
    """Delete a subscription (notifications already queued still leave)."""
    session.delete(row)
    session.flush()


# --- rendering -------------------------------------------------------------------------------


def status_of(row: Subscription, now: datetime) -> str:
    """Return "expired", "active" or "paused"."""
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active" if row.is_active else "paused"


def render(row: Subscription, ctx: ActiveContext, now: datetime) -> dict[str, Any]:
    """Render a subscription compacted with a caller's context, with its status fields."""
    doc = row.document
    out: dict[str, Any] = {"id": row.subscription_id, "type": "Subscription"}
    for key in ("subscriptionName", "description"):
        if doc.get(key):
            out[key] = doc[key]
    if doc.get("entities"):
        out["entities"] = [
            {
                **{k: v for k, v in selector.items() if k in ("id", "idPattern")},
                "type": "|".join(ctx.compact(t) for t in selector["type"]),
            }
            for selector in doc["entities"]
        ]
    if doc.get("watchedAttributes"):
        out["watchedAttributes"] = [ctx.compact(n) for n in doc["watchedAttributes"]]
    out["notificationTrigger"] = doc.get("notificationTrigger") or list(DEFAULT_TRIGGERS)
    if doc.get("q"):
        out["q"] = doc["q"]
    if doc.get("geoQ"):
        out["geoQ"] = {**doc["geoQ"], "geoproperty": ctx.compact(doc["geoQ"]["geoproperty"])}
    out["isActive"] = row.is_active
    if row.expires_at is not None:
        out["expiresAt"] = iso(row.expires_at)
    if row.throttling is not None:
        out["throttling"] = doc.get("throttling", row.throttling)
    if row.time_interval is not None:
        out["timeInterval"] = doc.get("timeInterval", row.time_interval)
    notification = dict(doc["notification"])
    if notification.get("attributes"):
        notification["attributes"] = [ctx.compact(n) for n in notification["attributes"]]
    notification.setdefault("format", "normalized")
    notification["timesSent"] = row.times_sent
    notification["timesFailed"] = row.times_failed
    if row.notification_status:
        notification["status"] = row.notification_status
    for key, value in (
        ("lastNotification", row.last_notification),
        ("lastSuccess", row.last_success),
        ("lastFailure", row.last_failure),
    ):
        if value is not None:
            notification[key] = iso(value)
    out["notification"] = notification
    for key in ("jsonldContext", "lang"):
        if doc.get(key):
            out[key] = doc[key]
    out["status"] = status_of(row, now)
    return out


# --- matching --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Selector:
    types: frozenset[str]
    id: str | None
    pattern: re.Pattern[str] | None

    def selects(self, entity_id: str, entity_type: str) -> bool:
        if entity_type not in self.types:
            return False
        if self.id is not None:
            return entity_id == self.id
        return self.pattern is None or self.pattern.search(entity_id) is not None


@dataclass(frozen=True)
class Active:
    """An active subscription as matching needs it (built from its row, cached per tenant)."""

    pk: int
    subscription_id: str
    tenant: str
    selectors: tuple[_Selector, ...]
    watched: frozenset[str] | None
    triggers: frozenset[str]
    q: Any
    q_context: Any
    geo: query.GeoQuery | None
    owner_units: frozenset[str] | None
    expires_at: datetime | None
    throttling: float | None
    document: dict[str, Any]
    context: Any

    def selects(self, entity_id: str, entity_type: str) -> bool:
        """Whether the subscription's entity selectors take this entity."""
        if not self.selectors:
            return True
        return any(s.selects(entity_id, entity_type) for s in self.selectors)

    def reason(self, change: _EntityChange) -> str | None:
        """The trigger of this subscription a change fires, or None."""
        triggers = self.triggers
        if change.deleted:
            return "entityDeleted" if "entityDeleted" in triggers else None
        if change.created and "entityCreated" in triggers:
            return "entityCreated"
        kinds = {
            kind
            for (name, _), kind in change.attributes.items()
            if self.watched is None or name in self.watched
        }
        if not kinds:
            return None
        if not change.created and "entityUpdated" in triggers:
            return "entityUpdated"
        for trigger in ("attributeCreated", "attributeUpdated", "attributeDeleted"):
            if trigger in kinds and trigger in triggers:
                return trigger
        return None


@dataclass(frozen=True)
class _TenantSubscriptions:
    loaded: float
    items: tuple[Active, ...]
    # Entity types some subscription selects; None when one selects any type.
    types: frozenset[str] | None

    def may_select(self, entity_type: str) -> bool:
        return self.types is None or entity_type in self.types


@dataclass
class _EntityChange:
    """What one transaction did to one entity, as far as subscriptions care."""

    tenant: str
    entity_id: str
    entity_type: str
    unit_code: str | None
    created: bool = False
    deleted: bool = False
    # (expanded name, datasetId) → attributeCreated | attributeUpdated | attributeDeleted
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    previous: dict[tuple[str, str], Any] = field(default_factory=dict)


def _compile(row: Any) -> Active:
    doc: dict[str, Any] = row.document
    selectors = tuple(
        _Selector(
            types=frozenset(s["type"]),
            id=s.get("id"),
            pattern=re.compile(s["idPattern"]) if s.get("idPattern") else None,
        )
        for s in doc.get("entities") or []
    )
    geo = None
    if doc.get("geoQ"):
        g = doc["geoQ"]
        geo = query.parse_geo(g["georel"], g["geometry"], g["coordinates"], g["geoproperty"])
    watched = doc.get("watchedAttributes")
    return Active(
        pk=row.pk,
        subscription_id=row.subscription_id,
        tenant=row.tenant,
        selectors=selectors,
        watched=frozenset(watched) if watched else None,
        triggers=frozenset(doc.get("notificationTrigger") or DEFAULT_TRIGGERS),
        q=query.parse_q(doc["q"]) if doc.get("q") else None,
        q_context=doc.get("qContext", row.context),
        geo=geo,
        owner_units=frozenset(row.owner_units) if row.owner_units is not None else None,
        expires_at=row.expires_at,
        throttling=row.throttling,
        document=doc,
        context=row.context,
    )


def active_for(runtime: Runtime, session: Session, tenant: str) -> _TenantSubscriptions:
    """Return the active subscriptions of a tenant (cached; re-read every few seconds)."""
    cache: dict[str, _TenantSubscriptions] = runtime.caches.setdefault(CACHE, {})
    found = cache.get(tenant)
    clock = time.monotonic()
    if found is not None and clock - found.loaded < RECHECK_SECONDS:
        return found
    table = Subscription.__table__
    rows = session.execute(
        select(table).where(
            table.c.tenant == tenant,
            table.c.is_active.is_(True),
            # Periodic subscriptions (timeInterval) are the job's, not the changes'.
            table.c.time_interval.is_(None),
        )
    ).all()
    items: list[Active] = []
    for row in rows:
        try:
            items.append(_compile(row))
        except (NgsiLdError, KeyError, TypeError, ValueError, re.error):
            log.exception("unusable subscription", extra={"subscription": row.subscription_id})
    types: frozenset[str] | None = frozenset()
    for item in items:
        if types is None:
            break
        if not item.selectors:
            types = None
            break
        for selector in item.selectors:
            types = types | selector.types
    found = _TenantSubscriptions(clock, tuple(items), types)
    cache[tenant] = found
    return found


def forget(runtime: Runtime, tenant: str, session: Session | None = None) -> None:
    """Drop a tenant's cached subscriptions now and, given a session, again after it commits."""
    cache: dict[str, _TenantSubscriptions] = runtime.caches.setdefault(CACHE, {})
    cache.pop(tenant, None)
    if session is not None:
        # A reload between now and the commit would see the old rows: drop them once more.
        sa_event.listen(session, "after_commit", lambda _s: cache.pop(tenant, None), once=True)


def _collect(runtime: Runtime, session: Session, event: Event) -> None:
    data = event.data
    tenant = data.get("tenant")
    if not isinstance(tenant, str):
        return
    subscriptions = active_for(runtime, session, tenant)
    if not subscriptions.items:
        return
    expand = flows.default_context(runtime).expand
    entity_type = expand(data["entity_type"])
    if not subscriptions.may_select(entity_type):
        return
    pending: dict[tuple[str, str], _EntityChange] = session.info.setdefault(PENDING, {})
    key = (tenant, data["entity_id"])
    change = pending.get(key)
    if change is None:
        change = pending[key] = _EntityChange(
            tenant, data["entity_id"], entity_type, data.get("unit_code")
        )
    if event.type == flows.EVENT_ENTITY_CREATED:
        change.created = True
        return
    if event.type == flows.EVENT_ENTITY_DELETED:
        change.deleted = True
        change.unit_code = data.get("unit_code")
        return
    name = (expand(data["attribute"]), data.get("dataset_id") or "")
    if data.get("deleted"):
        kind = "attributeDeleted"
    elif data.get("previous") is None:
        kind = "attributeCreated"
    else:
        kind = "attributeUpdated"
    first = change.attributes.get(name)
    if first is None:
        change.attributes[name] = kind
        change.previous[name] = data.get("previous")
    elif first == "attributeCreated" and kind == "attributeDeleted":
        del change.attributes[name]  # created and deleted again: nothing to tell
    elif first != "attributeCreated":
        change.attributes[name] = kind


def _before_commit(runtime: Runtime, session: Session) -> None:
    pending: dict[tuple[str, str], _EntityChange] | None = session.info.pop(PENDING, None)
    if not pending:
        return
    by_tenant: dict[str, list[_EntityChange]] = {}
    for change in pending.values():
        by_tenant.setdefault(change.tenant, []).append(change)
    now = runtime.clock.now()
    for tenant, changes in by_tenant.items():
        try:
            _notify_tenant(runtime, session, tenant, changes, now)
        except SQLAlchemyError:
            raise
        except Exception:  # a matching bug must not fail the write that caused it
            log.exception("subscription matching failed", extra={"tenant": tenant})


def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and not transaction.nested:
        session.info.pop(PENDING, None)


@dataclass
class _Hit:
    change: _EntityChange
    reason: str
    # The entity as stored now: an Entity, or a row with its columns (None once deleted).
    row: Any = None


def _notify_tenant(
    runtime: Runtime, session: Session, tenant: str, changes: list[_EntityChange], now: datetime
) -> None:
    subscriptions = [
        s
        for s in active_for(runtime, session, tenant).items
        if s.expires_at is None or s.expires_at > now
    ]
    wanted: list[tuple[Active, list[_Hit]]] = []
    for subscription in subscriptions:
        hits = []
        for change in changes:
            reason = subscription.reason(change)
            if reason is not None and subscription.selects(change.entity_id, change.entity_type):
                hits.append(_Hit(change, reason))
        if hits:
            wanted.append((subscription, hits))
    if not wanted:
        return
    tenant_row = service.get_tenant(session=session, name=tenant)
    ids = sorted(
        {hit.change.entity_id for _, hits in wanted for hit in hits if not hit.change.deleted}
    )
    # Plain rows, not ORM objects: cheaper, and never stale (the write path updates the
    # tables with driver-level statements, behind the back of objects a route loaded earlier).
    entity, attribute = ENTITY_TABLE, ATTRIBUTE_TABLE
    rows: dict[str, Any] = {}
    if tenant_row is not None:
        for part in _chunks(ids):
            for row in session.execute(
                select(entity).where(
                    entity.c.tenant_id == tenant_row.id, entity.c.entity_id.in_(part)
                )
            ):
                rows[row.entity_id] = row
    # Only what the notifications show: the attributes they list (all if one lists none), the
    # geoproperties they test, and system timestamps only when one asks for them.
    names: set[str] | None = set()
    sys_attrs = False
    for subscription, _ in wanted:
        params = subscription.document["notification"]
        sys_attrs = sys_attrs or bool(params.get("sysAttrs"))
        if names is not None:
            if not params.get("attributes"):
                names = None
            else:
                names.update(params["attributes"])
                if subscription.geo is not None:
                    names.add(subscription.geo.geoproperty)
    columns = [c for c in attribute.c if c.name not in ("value_num", "value_text")]
    if not sys_attrs:
        columns = [c for c in columns if c.name not in ("created_at", "modified_at")]
    attributes: dict[int, list[Any]] = {}
    for part in _chunks([r.pk for r in rows.values()]):
        statement = select(*columns).where(attribute.c.entity_pk.in_(part))
        if names is not None:
            statement = statement.where(attribute.c.name.in_(sorted(names)))
        for attr in session.execute(
            statement.order_by(attribute.c.entity_pk, attribute.c.name, attribute.c.dataset_id)
        ):
            attributes.setdefault(attr.entity_pk, []).append(attr)
    for subscription, hits in wanted:
        try:
            _notify_one(runtime, session, tenant, subscription, hits, rows, attributes, now)
        except SQLAlchemyError:
            raise
        except Exception:
            log.exception(
                "notification failed", extra={"subscription": subscription.subscription_id}
            )


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[start : start + service.CHUNK] for start in range(0, len(items), service.CHUNK)]


def _covers(units: frozenset[str] | None, unit_code: str | None) -> bool:
    return units is None or (unit_code is not None and unit_code in units)


def _notify_one(
    runtime: Runtime,
    session: Session,
    tenant: str,
    subscription: Active,
    hits: list[_Hit],
    rows: dict[str, Any],
    attributes: dict[int, list[Any]],
    now: datetime,
) -> None:
    kept: list[_Hit] = []
    for hit in hits:
        if hit.change.deleted:
            if _covers(subscription.owner_units, hit.change.unit_code):
                kept.append(hit)
            continue
        row = rows.get(hit.change.entity_id)
        if row is None or not _covers(subscription.owner_units, row.unit_code):
            continue
        if subscription.geo is not None and not _geo_matches(
            subscription.geo, attributes.get(row.pk, [])
        ):
            continue
        hit.row = row
        kept.append(hit)
    if subscription.q is not None:
        located = [hit.row.pk for hit in kept if hit.row is not None]
        passed = _q_passes(runtime, session, subscription, located) if located else set()
        # q is a condition on the entity's state: a deleted entity has none to test.
        kept = [hit for hit in kept if hit.row is not None and hit.row.pk in passed]
    if not kept:
        return
    ctx = _notification_context(runtime, session, subscription)
    groups: dict[str, list[dict[str, Any]]] = {}
    for hit in kept:
        groups.setdefault(hit.reason, []).append(
            _render_entity(subscription, hit, attributes, ctx, now)
        )
    messages = [
        (reason, entities[start : start + MAX_ENTITIES_PER_NOTIFICATION])
        for reason, entities in groups.items()
        for start in range(0, len(entities), MAX_ENTITIES_PER_NOTIFICATION)
    ]
    times = _send_times(session, subscription, now, len(messages))
    for (reason, data), not_before in zip(messages, times, strict=True):
        _enqueue(session, tenant, subscription, ctx, reason, data, now, not_before)


def _geo_matches(geo: query.GeoQuery, attrs: Sequence[Any]) -> bool:
    return any(
        a.name == geo.geoproperty and a.attr_type == "GeoProperty" and query.matches(geo, a.value)
        for a in attrs
    )


def _q_passes(
    runtime: Runtime, session: Session, subscription: Active, pks: Sequence[int]
) -> set[int]:
    ctx = flows.resolve_context(runtime=runtime, session=session, value=subscription.q_context)
    service.ensure_regexp(session)
    dialect = session.get_bind().dialect.name
    statement = select(Entity.pk).where(
        Entity.pk.in_(list(pks)), query.compile_q(subscription.q, ctx.expand, dialect)
    )
    if dialect != "postgresql":
        return {pk for (pk,) in session.execute(statement)}
    # PostgreSQL refuses some patterns Python accepted: in a savepoint, such a q fails alone
    # instead of aborting the write that is being notified.
    try:
        with session.begin_nested():
            return {pk for (pk,) in session.execute(statement)}
    except DBAPIError:
        log.warning("q refused by the database", extra={"subscription": subscription.pk})
        return set()


def _notification_context(
    runtime: Runtime, session: Session, subscription: Active
) -> ActiveContext:
    value = subscription.document.get("jsonldContext") or subscription.context
    try:
        return flows.resolve_context(runtime=runtime, session=session, value=value)
    except NgsiLdError:
        # A context that cannot be had any more must not hold the notification back.
        log.warning("notification context unavailable", extra={"context": str(value)[:200]})
        return flows.default_context(runtime)


def _render_entity(
    subscription: Active,
    hit: _Hit,
    attributes: dict[int, list[Any]],
    ctx: ActiveContext,
    now: datetime,
) -> dict[str, Any]:
    change, row = hit.change, hit.row
    if row is None:
        return {
            "id": change.entity_id,
            "type": ctx.compact(change.entity_type),
            "deletedAt": iso(now),
        }
    params = subscription.document["notification"]
    wanted = params.get("attributes")
    names = frozenset(wanted) if wanted else None
    options = Options(
        representation=params.get("format", "normalized"), sys_attrs=params.get("sysAttrs", False)
    )
    attrs = [a for a in attributes.get(row.pk, []) if names is None or a.name in names]
    out = render_entity(row, attrs, ctx, options, lang=subscription.document.get("lang"))
    present = {(a.name, a.dataset_id): a for a in attrs}
    for (name, dataset), kind in change.attributes.items():
        if names is not None and name not in names:
            continue
        if kind == "attributeDeleted" and (name, dataset) not in present:
            _add_instance(out, ctx.compact(name), _deleted(dataset, options, now))
        elif (
            kind == "attributeUpdated"
            and params.get("showChanges")
            and options.representation != "keyValues"
            and (name, dataset) in present
        ):
            _show_previous(out, ctx.compact(name), present[(name, dataset)], change.previous)
    return out


def _deleted(dataset: str, options: Options, now: datetime) -> Any:
    if options.representation == "keyValues":
        return NULL_URI
    body: dict[str, Any] = {"type": "Property", "value": NULL_URI, "deletedAt": iso(now)}
    if options.representation == "concise":
        body.pop("type")
    if dataset:
        body["datasetId"] = dataset
    return body


def _add_instance(out: dict[str, Any], name: str, instance: Any) -> None:
    if name not in out:
        out[name] = instance
    elif isinstance(out[name], list):
        out[name].append(instance)
    else:
        out[name] = [out[name], instance]


def _show_previous(
    out: dict[str, Any], name: str, attr: Any, previous: dict[tuple[str, str], Any]
) -> None:
    old = previous.get((attr.name, attr.dataset_id))
    if old is None:
        return
    member = PREVIOUS_MEMBER.get(VALUE_MEMBER.get(attr.attr_type, "value"), "previousValue")
    rendered = out.get(name)
    instances = rendered if isinstance(rendered, list) else [rendered]
    for index, instance in enumerate(instances):
        dataset = instance.get("datasetId", "") if isinstance(instance, dict) else ""
        if dataset != attr.dataset_id:
            continue
        # A concise attribute may have been reduced to its bare value.
        body = instance if isinstance(instance, dict) else {"value": instance}
        body[member] = old
        if isinstance(rendered, list):
            rendered[index] = body
        else:
            out[name] = body
        return


def _send_times(
    session: Session, subscription: Active, now: datetime, count: int
) -> list[datetime | None]:
    if not subscription.throttling:
        return [None] * count
    step = timedelta(seconds=subscription.throttling)
    # Locked (PostgreSQL) so concurrent writers space their notifications one after another.
    last = session.execute(
        select(Subscription.last_queued_at)
        .where(Subscription.pk == subscription.pk)
        .with_for_update()
    ).scalar_one_or_none()
    at = now if last is None else max(now, last + step)
    times: list[datetime | None] = []
    for _ in range(count):
        times.append(at)
        at += step
    session.execute(
        sql_update(Subscription)
        .where(Subscription.pk == subscription.pk)
        .values(last_queued_at=times[-1])
        .execution_options(synchronize_session=False)
    )
    return times


def owner_key(tenant: str, subscription_id: str) -> str:
    """Return the outbox owner key of a subscription (one worker delivers it, in order)."""
    return f"ngsild:{tenant}:{subscription_id}"


def _enqueue(
    session: Session,
    tenant: str,
    subscription: Active,
    ctx: ActiveContext,
    reason: str | None,
    data: list[dict[str, Any]],
    now: datetime,
    not_before: datetime | None,
) -> None:
    endpoint = subscription.document["notification"]["endpoint"]
    uri: str = endpoint["uri"]
    accept: str = endpoint.get("accept", JSON)
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": subscription.subscription_id,
        "notifiedAt": iso(now),
        "data": data,
    }
    if reason is not None:
        body["triggerReason"] = reason
    headers = {item["key"]: item["value"] for item in endpoint.get("receiverInfo", [])}
    if tenant != service.DEFAULT_TENANT:
        headers["NGSILD-Tenant"] = tenant
    if accept == JSON_LD:
        body["@context"] = ctx.source if ctx.source is not None else CORE_URL
    else:
        headers["Link"] = link_header(ctx.urls[0] if ctx.urls else CORE_URL)
    if uri.startswith("http"):
        channel, content_type, payload = "http", accept, body
    else:
        # NGSI-LD MQTT binding: the HTTP headers travel as metadata beside the body.
        channel, content_type = "mqtt", JSON
        payload = {"metadata": {"Content-Type": accept, **headers}, "body": body}
        headers = {item["key"]: item["value"] for item in endpoint.get("notifierInfo", [])}
    outbox.enqueue(
        session=session,
        now=now,
        channel=channel,
        owner=owner_key(tenant, subscription.subscription_id),
        source=SOURCE,
        target=uri,
        payload=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        content_type=content_type,
        headers=headers,
        source_ref=str(subscription.pk),
        not_before=not_before,
    )


# --- periodic notifications ------------------------------------------------------------------


def notify_periodic(runtime: Runtime) -> int:
    """Queue the notifications of periodic subscriptions (timeInterval) now due; return them."""
    now = runtime.clock.now()
    table = Subscription.__table__
    with runtime.session_factory() as session:
        rows = session.execute(
            select(table).where(table.c.time_interval.isnot(None), table.c.is_active.is_(True))
        ).all()
    sent = 0
    for row in rows:
        if row.expires_at is not None and row.expires_at <= now:
            continue
        if row.last_queued_at is not None and (
            row.last_queued_at + timedelta(seconds=row.time_interval) > now
        ):
            continue
        # One transaction per subscription: one that fails (a pattern PostgreSQL refuses)
        # holds up no other.
        try:
            with unit_of_work(runtime.session_factory) as session:
                sent += _notify_periodic(runtime, session, row, now)
        except Exception:
            log.exception("periodic notification failed", extra={"subscription": row.pk})
    return sent


def _notify_periodic(runtime: Runtime, session: Session, row: Any, now: datetime) -> int:
    # Claimed by compare-and-set, so two workers never send the same period twice.
    previous = Subscription.last_queued_at
    claimed = session.execute(
        sql_update(Subscription)
        .where(
            Subscription.pk == row.pk,
            previous.is_(None) if row.last_queued_at is None else previous == row.last_queued_at,
        )
        .values(last_queued_at=now)
        .execution_options(synchronize_session=False)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return 0
    subscription = _compile(row)
    tenant_row = service.get_tenant(session=session, name=row.tenant)
    if tenant_row is None:
        return 0
    conditions: list[ColumnElement[bool]] = [Entity.tenant_id == tenant_row.id]
    if subscription.owner_units is not None:
        conditions.append(Entity.unit_code.in_(sorted(subscription.owner_units)))
    service.ensure_regexp(session)
    choices: list[ColumnElement[bool]] = []
    for selector in subscription.selectors:
        choice: ColumnElement[bool] = Entity.type.in_(sorted(selector.types))
        if selector.id is not None:
            choice = and_(choice, Entity.entity_id == selector.id)
        elif selector.pattern is not None:
            choice = and_(choice, Entity.entity_id.regexp_match(selector.pattern.pattern))
        choices.append(choice)
    conditions.append(or_(*choices))
    if subscription.q is not None:
        ctx = flows.resolve_context(runtime=runtime, session=session, value=subscription.q_context)
        dialect = session.get_bind().dialect.name
        conditions.append(query.compile_q(subscription.q, ctx.expand, dialect))
    geo = subscription.geo
    if geo is not None and geo.geoproperty == LOCATION:
        box = query.prefilter_box(geo)
        if box is not None:
            conditions.append(service.entity_filter_bbox(*box))
    limit = runtime.settings.ngsild_max_limit
    entities = list(
        session.execute(
            select(Entity).where(*conditions).order_by(Entity.entity_id).limit(limit)
        ).scalars()
    )
    attributes = service.get_attributes(session=session, entity_pks=[e.pk for e in entities])
    if geo is not None:
        entities = [e for e in entities if _geo_matches(geo, attributes.get(e.pk, []))]
    if not entities:
        return 0
    ctx = _notification_context(runtime, session, subscription)
    data = [
        _render_entity(
            subscription,
            _Hit(_EntityChange(row.tenant, e.entity_id, e.type, e.unit_code), "", e),
            attributes,
            ctx,
            now,
        )
        for e in entities
    ]
    for start in range(0, len(data), MAX_ENTITIES_PER_NOTIFICATION):
        chunk = data[start : start + MAX_ENTITIES_PER_NOTIFICATION]
        _enqueue(session, row.tenant, subscription, ctx, None, chunk, now, None)
    return 1


def register_jobs(runtime: Runtime) -> None:
    """Register the periodic-notification job on the runtime's job runner."""
    runtime.jobs.add(PERIODIC_JOB, PERIODIC_EVERY_SECONDS, lambda: notify_periodic(runtime))


# --- delivery results ------------------------------------------------------------------------


def record_delivery(session: Session, parcel: Parcel, delivery: Delivery, now: datetime) -> None:
    """Keep a subscription's status fields from one delivery attempt (outbox result hook)."""
    if parcel.source_ref is None or not parcel.source_ref.isdigit():
        return
    values: dict[str, Any] = {
        "times_sent": Subscription.times_sent + 1,
        "last_notification": now,
    }
    if delivery.ok:
        values.update(last_success=now, notification_status="ok")
    else:
        values.update(
            times_failed=Subscription.times_failed + 1,
            last_failure=now,
            notification_status="failed",
        )
    session.execute(
        sql_update(Subscription)
        .where(Subscription.pk == int(parcel.source_ref))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def install(runtime: Runtime) -> None:
    """Match subscriptions inside writing transactions and keep their delivery status."""

    def collect(session: Session, event: Event) -> None:
        _collect(runtime, session, event)

    def before_commit(session: Session) -> None:
        _before_commit(runtime, session)

    for name in (
        flows.EVENT_ATTRIBUTE_CHANGED,
        flows.EVENT_ENTITY_CREATED,
        flows.EVENT_ENTITY_DELETED,
    ):
        runtime.bus.subscribe_in_transaction(name, collect)
    sa_event.listen(runtime.session_factory, "before_commit", before_commit)
    sa_event.listen(runtime.session_factory, "after_transaction_end", _drop_pending)
    if runtime.outbox is not None:
        runtime.outbox.on_result(SOURCE, record_delivery)
