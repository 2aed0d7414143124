"""Database work of the context hub: tenants, batch writes of entities, queries and history.

Hot paths are set-based: a batch resolves its entity keys in one SELECT, writes current state with
one multi-row INSERT … ON CONFLICT DO UPDATE and appends history with one multi-row INSERT.
Functions flush, never commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import regex  # type: ignore[import-untyped]
from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased

from cityops.context.errors import (
    AlreadyExists,
    BadRequestData,
    Forbidden,
    NgsiLdError,
    ResourceNotFound,
)
from cityops.context.models import Attribute, Entity, History, LdContext, Tenant
from cityops.context.normalize import AttributeIn, EntityIn, iso, ms_of
from cityops.core.security import GLOBAL_SCOPE, Scope

AGGREGATIONS_ALL = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
# Rows per statement: below SQLite's and PostgreSQL's bound-parameter limits for every table.
CHUNK = 500
MODES = frozenset({"create", "upsert", "update", "replace", "merge", "patch", "append"})
DEFAULT_TENANT = "default"
# Core tables for the hot paths (executemany without ORM bookkeeping).
ENTITY_TABLE: Table = Entity.__table__  # type: ignore[assignment]
ATTRIBUTE_TABLE: Table = Attribute.__table__  # type: ignore[assignment]
HISTORY_TABLE: Table = History.__table__  # type: ignore[assignment]
# Checks an entity against its type's data model: (entity, expanded type, full) → error or None;
# `full` (create, replace) includes the model's required members.
Validator = Callable[[EntityIn, str, bool], NgsiLdError | None]
# Modes whose entity is whole: required members are checked.
FULL_MODES = frozenset({"create", "replace"})


# --- tenants ---------------------------------------------------------------------------------


def get_tenant(*, session: Session, name: str) -> Tenant | None:
    """Return a tenant by name."""
    return session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()


def get_or_create_tenant(*, session: Session, name: str, now: datetime) -> Tenant:
    """Return a tenant, creating it on first use (safe against a concurrent creator)."""
    tenant = get_tenant(session=session, name=name)
    if tenant is not None:
        return tenant
    dialect = session.get_bind().dialect.name
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        maker(Tenant)
        .values(name=name, created_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    tenant = get_tenant(session=session, name=name)
    assert tenant is not None
    return tenant


def get_tenant_id(
    *, session: Session, name: str, now: datetime, known: dict[str, int] | None = None
) -> int:
    """Return a tenant's id, creating the tenant on first use; `known` caches committed ids.

    Tenants are never deleted, so an id once committed stays right for the process; an id is
    added to `known` only when the transaction that saw it commits (a tenant created by a
    transaction that then rolls back must not be remembered).
    """
    if known is not None:
        found = known.get(name)
        if found is not None:
            return found
    tenant_id = get_or_create_tenant(session=session, name=name, now=now).id
    if known is not None:
        seen: dict[str, int] | None = session.info.get("context_tenants")
        if seen is None:
            seen = session.info["context_tenants"] = {}
            sa_event.listen(session, "after_commit", _remember_tenants(known))
            sa_event.listen(session, "after_rollback", _forget_tenants)
        seen[name] = tenant_id
    return tenant_id


def _remember_tenants(known: dict[str, int]) -> Callable[[Session], None]:
    def remember(session: Session) -> None:
        known.update(session.info.pop("context_tenants", None) or {})
        # the listeners stay; the next transaction of this session starts a new record
        session.info["context_tenants"] = {}

    return remember


def _forget_tenants(session: Session) -> None:
    seen = session.info.get("context_tenants")
    if seen:
        seen.clear()


def get_all_tenants(*, session: Session) -> list[Tenant]:
    """Return every tenant."""
    return list(session.execute(select(Tenant).order_by(Tenant.name)).scalars())


# --- writes ----------------------------------------------------------------------------------


@dataclass
class AttributeChange:
    """An attribute instance whose value or metadata changed (or was deleted)."""

    entity: EntityIn
    entity_type: str
    unit_code: str | None
    point: tuple[float, float] | None
    attr: AttributeIn
    previous: Any
    observed_at: datetime
    deleted: bool = False


@dataclass
class WriteResult:
    """What a batch write did: entity ids written, errors, changes and created/deleted entities."""

    success: list[str] = field(default_factory=list)
    errors: list[tuple[str | None, NgsiLdError, str]] = field(default_factory=list)
    changes: list[AttributeChange] = field(default_factory=list)
    created: list[tuple[str, str, str | None]] = field(default_factory=list)
    not_updated: dict[str, list[str]] = field(default_factory=dict)
    observations: int = 0
    # The entities refused, in the order of `errors` (callers map them back to their inputs).
    rejected: list[EntityIn] = field(default_factory=list)


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- driver-level statements of the write path ------------------------------------------------
#
# The write path runs a handful of fixed statements with thousands of rows. SQLAlchemy's
# per-row parameter handling (construct_params, bind processors) cost more than the database
# work, so these statements are plain SQL executed with the driver's executemany (sqlite3 loops
# in C, psycopg pipelines) or COPY, with values encoded by the columns' own bind processors so
# the stored bytes are exactly what the ORM would store. Identifiers in this SQL are module
# constants; every value is a bound parameter.

ATTRIBUTE_COLUMNS = (
    "entity_pk",
    "name",
    "dataset_id",
    "attr_type",
    "value",
    "value_num",
    "value_text",
    "unit_code",
    "observed_at",
    "sub_attrs",
    "created_at",
    "modified_at",
)
HISTORY_COLUMNS = (
    "entity_pk",
    "name",
    "dataset_id",
    "observed_ms",
    "value_num",
    "value",
    "unit_code",
)
# Updated on conflict; created_at keeps the first write's time.
ATTRIBUTE_UPDATED = (
    "attr_type",
    "value",
    "value_num",
    "value_text",
    "unit_code",
    "observed_at",
    "sub_attrs",
    "modified_at",
)
# The history's unique key: a row written again (a redelivered message) overwrites itself.
HISTORY_KEY = ("entity_pk", "name", "observed_ms", "dataset_id")
HISTORY_UPDATED = ("value_num", "value", "unit_code")
# PostgreSQL array types of HISTORY_COLUMNS, for the one-statement unnest insert.
HISTORY_ARRAYS = ("bigint[]", "text[]", "text[]", "bigint[]", "float8[]", "text[]", "text[]")


def _identity(value: Any) -> Any:
    return value


def _processor(table: Table, column: str, dialect: Any) -> Any:
    """Return a column's bind processor for a dialect (identity when it has none)."""
    process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return process or _identity


@dataclass(frozen=True)
class _WriteSql:
    """The write path's SQL and value encoders for one dialect (built once per dialect)."""

    postgresql: bool
    upsert_attribute: str
    insert_history: str
    unnest_history: str
    select_previous: str
    encode_json: Any
    encode_time: Any
    # SQLite hands JSON back as text (numbers as numbers: the column has numeric affinity);
    # psycopg has already decoded JSONB.
    decode_json: Any


_WRITE_SQL: dict[str, _WriteSql] = {}


def _write_sql(session: Session) -> _WriteSql:
    dialect = session.get_bind().dialect
    found = _WRITE_SQL.get(dialect.name)
    if found is not None:
        return found
    mark = "%s" if dialect.name == "postgresql" else "?"
    attribute = ATTRIBUTE_TABLE.name
    updates = ", ".join(f"{c} = excluded.{c}" for c in ATTRIBUTE_UPDATED)
    upsert = (
        f"INSERT INTO {attribute} ({', '.join(ATTRIBUTE_COLUMNS)}) "  # noqa: S608 (fixed identifiers)
        f"VALUES ({', '.join([mark] * len(ATTRIBUTE_COLUMNS))}) "
        f"ON CONFLICT (entity_pk, name, dataset_id) DO UPDATE SET {updates}"
    )
    history = HISTORY_TABLE.name
    on_key = f"ON CONFLICT ({', '.join(HISTORY_KEY)}) DO UPDATE SET " + ", ".join(
        f"{c} = excluded.{c}" for c in HISTORY_UPDATED
    )
    # Column order of HISTORY_COLUMNS; value (JSONB) arrives as text and is cast per element.
    casts = [
        "entity_pk",
        "name",
        "dataset_id",
        "observed_ms",
        "value_num",
        "value::jsonb",
        "unit_code",
    ]
    found = _WriteSql(
        postgresql=dialect.name == "postgresql",
        upsert_attribute=upsert,
        insert_history=(
            f"INSERT INTO {history} ({', '.join(HISTORY_COLUMNS)}) "  # noqa: S608 (fixed identifiers)
            f"VALUES ({', '.join([mark] * len(HISTORY_COLUMNS))}) {on_key}"
        ),
        unnest_history=(
            f"INSERT INTO {history} ({', '.join(HISTORY_COLUMNS)}) "  # noqa: S608 (fixed identifiers)
            f"SELECT {', '.join(casts)} FROM unnest("
            + ", ".join(f"%s::{t}" for t in HISTORY_ARRAYS)
            + f") AS r({', '.join(HISTORY_COLUMNS)}) {on_key}"
        ),
        select_previous=(
            "SELECT entity_pk, name, dataset_id, attr_type, value, unit_code, sub_attrs, "  # noqa: S608 (fixed identifiers)
            f"modified_at FROM {attribute} WHERE entity_pk IN "
        ),
        encode_json=(
            _processor(ATTRIBUTE_TABLE, "value", dialect)
            if dialect.name == "postgresql"
            else _scalar_first(_processor(ATTRIBUTE_TABLE, "value", dialect))
        ),
        encode_time=_processor(ATTRIBUTE_TABLE, "modified_at", dialect),
        decode_json=_identity if dialect.name == "postgresql" else _sqlite_json,
    )
    _WRITE_SQL[dialect.name] = found
    return found


def _scalar_first(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap SQLite's JSON bind processor with a shortcut for plain numbers and strings.

    Most observations are a number or a short string: their text is what `json.dumps` (the
    engine's serializer) makes, built here without its encoder object. Anything else (None,
    non-finite floats, which are stored as null, containers, subclasses) goes to `process`.
    """
    encode_str = json.encoder.encode_basestring_ascii  # what json.dumps uses (ensure_ascii)
    int_text = int.__repr__
    float_text = float.__repr__
    isfinite = math.isfinite

    def encode(value: Any) -> Any:
        kind = type(value)
        if kind is int:
            return int_text(value)
        if kind is float and isfinite(value):
            return float_text(value)
        if kind is str:
            return encode_str(value)
        if kind is bool:
            return "true" if value else "false"
        if kind is dict and len(value) == 2:
            # A located entity's point, rewritten with every reading of a fixed station.
            point = _point_text(value)
            if point is not None:
                return point
        return process(value)

    return encode


def _point_text(value: dict[str, Any]) -> str | None:
    """`json.dumps` of {"type": "Point", "coordinates": [lon, lat]} (those keys in that order,
    two finite plain floats or ints); None for anything else."""
    keys = iter(value)
    if next(keys) != "type" or next(keys) != "coordinates" or value["type"] != "Point":
        return None
    coordinates = value["coordinates"]
    if type(coordinates) is not list or len(coordinates) != 2:
        return None
    texts = []
    for number in coordinates:
        kind = type(number)
        if kind is int:
            texts.append(int.__repr__(number))
        elif kind is float and math.isfinite(number):
            texts.append(float.__repr__(number))
        else:
            return None
    return f'{{"type": "Point", "coordinates": [{texts[0]}, {texts[1]}]}}'


class _EntityKey(NamedTuple):
    """The columns of a stored entity the write path needs."""

    pk: int
    entity_id: str
    type: str
    unit_code: str | None
    lon: float | None
    lat: float | None


class _Previous(NamedTuple):
    """The stored current value of an attribute instance, every column as the driver gives it
    (decoded only when needed: `_WriteSql.decode_json`)."""

    attr_type: str
    value: Any
    unit_code: str | None
    sub_attrs: Any
    modified_at: Any


def _entity_keys(session: Session, tenant_id: int, entity_ids: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in _chunks(list(dict.fromkeys(entity_ids))):
        rows = session.execute(
            select(
                Entity.pk, Entity.entity_id, Entity.type, Entity.unit_code, Entity.lon, Entity.lat
            ).where(Entity.tenant_id == tenant_id, Entity.entity_id.in_(part))
        )
        for row in rows:
            found[row[1]] = _EntityKey(*row)
    return found


def get_entity_rows(
    *, session: Session, tenant_id: int, entity_ids: Sequence[str]
) -> dict[str, Entity]:
    """Return the stored entities of a tenant with these ids, keyed by id."""
    found: dict[str, Entity] = {}
    for part in _chunks(list(dict.fromkeys(entity_ids))):
        rows = session.execute(
            select(Entity).where(Entity.tenant_id == tenant_id, Entity.entity_id.in_(part))
        ).scalars()
        for row in rows:
            found[row.entity_id] = row
    return found


def _sqlite_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _decoded(stored: Any, sql: _WriteSql) -> Any:
    return None if stored is None else sql.decode_json(stored)


def _previous_attributes(
    session: Session, sql: _WriteSql, pks: Sequence[int]
) -> dict[tuple[int, str, str], _Previous]:
    previous: dict[tuple[int, str, str], _Previous] = {}
    connection = session.connection()
    mark = "%s" if sql.postgresql else "?"
    for part in _chunks(list(dict.fromkeys(pks))):
        statement = sql.select_previous + f"({', '.join([mark] * len(part))})"
        # fetchall: one driver call for the rows, not one SQLAlchemy fetch per row
        for pk, name, dataset, kind, value, unit, subs, modified in connection.exec_driver_sql(
            statement, tuple(part)
        ).fetchall():
            # Not decoded here: most instances are compared by their stored text and only
            # the changed ones need their previous value (for the event).
            previous[(pk, name, dataset)] = _Previous(kind, value, unit, subs, modified)
    return previous


def _same_json(stored: Any, text: Any, value: Any, sql: _WriteSql) -> bool:
    """Whether a stored JSON value equals a new one (`text`: the new one as it would be stored).

    On SQLite equal text is equal value; different text may still be the same value (35 and
    35.0, keys in another order), so those are decoded and compared as before.
    """
    if stored is None:
        return value is None
    if not sql.postgresql and type(stored) is str and stored == text:
        return True
    return bool(sql.decode_json(stored) == value)


def write(
    *,
    session: Session,
    tenant_id: int,
    entities: Sequence[EntityIn],
    mode: str,
    now: datetime,
    units: dict[str, str | None],
    scope: Scope = GLOBAL_SCOPE,
    no_overwrite: bool = False,
    validate: Validator | None = None,
) -> WriteResult:
    """Write validated entities in one set-based pass; one bad entity never blocks the others.

    Modes: create, upsert (create or merge), update (must exist, merge), replace (create or
    replace every attribute), merge (update; null deletes), patch (only existing attributes),
    append (must exist; add or overwrite attributes). `validate` checks each entity against its
    data model (the stored type when the entity names none) before anything is written.
    """
    if mode not in MODES:
        raise BadRequestData("context.batch.bad_mode", mode=mode)
    result = WriteResult()
    # An id repeated within one batch is written in a later round, after the first.
    rounds: list[list[EntityIn]] = []
    seen: dict[str, int] = defaultdict(int)
    for entity in entities:
        index = seen[entity.id]
        seen[entity.id] += 1
        while len(rounds) <= index:
            rounds.append([])
        rounds[index].append(entity)
    for batch in rounds:
        _write_round(
            session, tenant_id, batch, mode, now, units, scope, no_overwrite, result, validate
        )
    return result


def _write_round(
    session: Session,
    tenant_id: int,
    batch: Sequence[EntityIn],
    mode: str,
    now: datetime,
    units: dict[str, str | None],
    scope: Scope,
    no_overwrite: bool,
    result: WriteResult,
    validate: Validator | None,
) -> None:
    args = (tenant_id, batch, mode, now, units, scope, no_overwrite, result, validate)
    lost = _write_round_once(session, *args)
    if lost:
        # Another request created these entities between our read and our insert (two
        # gateways sending the same new station): write them again, now as existing ones.
        again = [e for e in batch if e.id in lost]
        args = (tenant_id, again, mode, now, units, scope, no_overwrite, result, validate)
        _write_round_once(session, *args)


def _insert_entities(session: Session) -> Any:
    """An INSERT of new entities that skips (and does not return) those created meanwhile."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(Entity).on_conflict_do_nothing(
            index_elements=["tenant_id", "entity_id"]
        )
    return sqlite.insert(Entity).on_conflict_do_nothing(index_elements=["tenant_id", "entity_id"])


def _write_round_once(
    session: Session,
    tenant_id: int,
    batch: Sequence[EntityIn],
    mode: str,
    now: datetime,
    units: dict[str, str | None],
    scope: Scope,
    no_overwrite: bool,
    result: WriteResult,
    validate: Validator | None,
) -> set[str]:
    """Write one round; return the ids of entities another transaction created meanwhile."""
    sql = _write_sql(session)
    existing = _entity_keys(session, tenant_id, [e.id for e in batch])
    accepted: list[EntityIn] = []
    new_rows: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    # Where each entity is after this write: its events carry the point even when the body
    # names no location (a reading of a fixed station), as the event contract says.
    points: dict[str, tuple[float, float] | None] = {}
    for entity in batch:
        row = existing.get(entity.id)
        error = _check(entity, row, mode, units, scope)
        entity_type = entity.type or (row.type if row is not None else None)
        if error is None and validate is not None and entity_type is not None:
            failure = validate(entity, entity_type, mode in FULL_MODES)
            if failure is not None:
                error = failure, "does not fit its data model"
        if error is not None:
            result.errors.append((entity.id, error[0], error[1]))
            result.rejected.append(entity)
            continue
        accepted.append(entity)
        points[entity.id] = entity.point
        if row is None:
            new_rows.append(
                {
                    "tenant_id": tenant_id,
                    "entity_id": entity.id,
                    "type": entity.type,
                    "unit_code": units.get(entity.id),
                    **_geo_columns(entity),
                    "scopes": entity.scopes,
                    "created_at": now,
                    "modified_at": now,
                }
            )
        else:
            values: dict[str, Any] = {"pk": row.pk, "modified_at": now}
            if entity.point is not None:
                values.update(_geo_columns(entity), unit_code=units.get(entity.id))
            elif mode == "replace" or any(
                a.delete and a.name.endswith("/location") for a in entity.attrs
            ):
                values.update(_geo_columns(entity), unit_code=None)
            elif row.lon is not None and row.lat is not None:
                points[entity.id] = (row.lon, row.lat)
            if entity.scopes is not None:
                values["scopes"] = entity.scopes
            moved.append(values)
    if not accepted:
        return set()
    pks: dict[str, int] = {eid: row.pk for eid, row in existing.items()}
    types: dict[str, str] = {eid: row.type for eid, row in existing.items()}
    unit_of: dict[str, str | None] = {eid: row.unit_code for eid, row in existing.items()}
    lost: set[str] = set()
    for part in _chunks(new_rows):
        returned = session.execute(
            _insert_entities(session).returning(Entity.pk, Entity.entity_id), list(part)
        ).all()
        for pk, entity_id in returned:
            pks[entity_id] = pk
        for row_in in part:
            if row_in["entity_id"] not in pks:
                lost.add(row_in["entity_id"])
                continue
            types[row_in["entity_id"]] = row_in["type"]
            unit_of[row_in["entity_id"]] = row_in["unit_code"]
            result.created.append((row_in["entity_id"], row_in["type"], row_in["unit_code"]))
    if lost:
        accepted = [e for e in accepted if e.id not in lost]
    _update_entities(session, sql, moved)
    if moved:
        id_of = {pks[e.id]: e.id for e in accepted}
        for values in moved:
            if "unit_code" in values:
                unit_of[id_of[values["pk"]]] = values["unit_code"]
    existing_pks = [pks[e.id] for e in accepted if e.id in existing]
    previous = _previous_attributes(session, sql, existing_pks) if existing_pks else {}
    if mode == "replace" and existing_pks:
        for part in _chunks(existing_pks):
            session.execute(delete(Attribute).where(Attribute.entity_pk.in_(part)))
    encode_json = sql.encode_json
    decode_json = sql.decode_json
    now_stored = sql.encode_time(now)
    # A batch's observations mostly share a few timestamps: encode each one once.
    times: dict[datetime, Any] = {}

    def stored_time(at: datetime) -> Any:
        found = times.get(at)
        if found is None:
            found = times[at] = sql.encode_time(at)
        return found

    null_json = encode_json(None)
    # SQLite stores the JSON text the processor makes: one serialization serves both tables.
    shared_json = not sql.postgresql
    current: list[tuple[Any, ...]] = []
    history: list[tuple[Any, ...]] = []
    deletions: list[tuple[int, str, str]] = []
    replace = mode == "replace"
    changes = result.changes
    for entity in accepted:
        pk = pks[entity.id]
        entity_type = types[entity.id]
        entity_unit = unit_of.get(entity.id)
        point = points[entity.id]
        kept: list[AttributeIn] = []
        for attr in entity.attrs:
            key = (pk, attr.name, attr.dataset_id)
            prev = previous.get(key)
            if attr.delete:
                if prev is None and mode != "merge":
                    result.not_updated.setdefault(entity.id, []).append(attr.name)
                    continue
                if prev is not None:
                    deletions.append(key)
                    changes.append(
                        AttributeChange(
                            entity,
                            entity_type,
                            entity_unit,
                            point,
                            attr,
                            None if prev.value is None else decode_json(prev.value),
                            now,
                            deleted=True,
                        )
                    )
                continue
            if (mode == "patch" and prev is None) or (no_overwrite and prev is not None):
                result.not_updated.setdefault(entity.id, []).append(attr.name)
                continue
            kept.append(attr)
            observed = attr.observed_at or now
            value = attr.value
            stored_value = encode_json(value)
            subs = attr.sub_attrs
            stored_subs = null_json if subs is None else encode_json(subs)
            if prev is None:
                changed = True
            else:
                changed = (
                    replace
                    or prev.attr_type != attr.attr_type
                    or prev.unit_code != attr.unit_code
                    or not _same_json(prev.value, stored_value, value, sql)
                    or (
                        prev.sub_attrs != stored_subs
                        and (_decoded(prev.sub_attrs, sql) or None) != (subs or None)
                    )
                )
            if changed:
                changes.append(
                    AttributeChange(
                        entity,
                        entity_type,
                        entity_unit,
                        point,
                        attr,
                        None if prev is None or prev.value is None else decode_json(prev.value),
                        observed,
                    )
                )
            value_num = attr.value_num
            current.append(
                (
                    pk,
                    attr.name,
                    attr.dataset_id,
                    attr.attr_type,
                    stored_value,
                    value_num,
                    attr.value_text,
                    attr.unit_code,
                    None if attr.observed_at is None else stored_time(attr.observed_at),
                    stored_subs,
                    # created_at is kept on conflict, so only a new row's value matters.
                    now_stored,
                    now_stored if changed or prev is None else prev.modified_at,
                )
            )
            history.append(
                (
                    pk,
                    attr.name,
                    attr.dataset_id,
                    ms_of(observed),
                    value_num,
                    stored_value if shared_json else value,
                    attr.unit_code,
                )
            )
        entity.attrs = kept
        result.success.append(entity.id)
    connection = session.connection()
    if current:
        connection.exec_driver_sql(sql.upsert_attribute, current)
    if history:
        _append_history_rows(connection, sql, history)
    result.observations += len(history)
    for part in _chunks(deletions):
        session.execute(
            delete(Attribute).where(
                tuple_(Attribute.entity_pk, Attribute.name, Attribute.dataset_id).in_(list(part))
            )
        )
    session.flush()
    return lost


def _append_history_rows(connection: Any, sql: _WriteSql, rows: list[tuple[Any, ...]]) -> None:
    """Append history rows (value as stored text on SQLite, as a Python value on PostgreSQL)."""
    if not sql.postgresql:
        connection.exec_driver_sql(sql.insert_history, rows)
        return
    # One statement for the whole batch: the rows travel as seven arrays (COPY, faster still,
    # cannot skip a row already stored, which idempotent redelivery needs). A round never holds
    # one key twice (an entity comes once per round, its instances are distinct), which
    # ON CONFLICT DO UPDATE requires within one statement.
    columns = list(zip(*rows, strict=True))
    columns[5] = tuple(json.dumps(v) for v in columns[5])
    connection.exec_driver_sql(sql.unnest_history, tuple(list(c) for c in columns))


# --- the single-attribute fast path ----------------------------------------------------------


class StoredInstance(NamedTuple):
    """An entity and one of its attribute instances, read together (attr_type None: absent)."""

    entity_pk: int
    entity_type: str
    entity_unit: str | None
    lon: float | None
    lat: float | None
    dataset_id: str | None
    attr_type: str | None
    value: Any
    unit_code: str | None
    observed_at: datetime | None
    sub_attrs: dict[str, Any] | None
    modified_at: datetime | None


def get_instance(
    *, session: Session, tenant: str, entity_id: str, name: str, dataset_id: str
) -> StoredInstance | None:
    """Return an entity of a tenant and one attribute instance of it with one SELECT."""
    row = session.execute(
        select(
            Entity.pk,
            Entity.type,
            Entity.unit_code,
            Entity.lon,
            Entity.lat,
            Attribute.dataset_id,
            Attribute.attr_type,
            Attribute.value,
            Attribute.unit_code,
            Attribute.observed_at,
            Attribute.sub_attrs,
            Attribute.modified_at,
        )
        .select_from(Entity)
        .join(Tenant, Tenant.id == Entity.tenant_id)
        .outerjoin(
            Attribute,
            and_(
                Attribute.entity_pk == Entity.pk,
                Attribute.name == name,
                Attribute.dataset_id == dataset_id,
            ),
        )
        .where(Tenant.name == tenant, Entity.entity_id == entity_id)
    ).first()
    return None if row is None else StoredInstance(*row)


def write_instance(
    *, session: Session, stored: StoredInstance, attr: AttributeIn, now: datetime
) -> bool:
    """Overwrite one stored attribute instance and append its history row; return if it changed.

    Three statements (attribute upsert, history insert, entity modification time), the same
    rows `write` produces for a one-attribute patch.
    """
    sql = _write_sql(session)
    changed = (
        stored.value != attr.value
        or stored.attr_type != attr.attr_type
        or stored.unit_code != attr.unit_code
        or (stored.sub_attrs or None) != (attr.sub_attrs or None)
    )
    encode_json = sql.encode_json
    now_stored = sql.encode_time(now)
    stored_value = encode_json(attr.value)
    modified = now if changed or stored.modified_at is None else stored.modified_at
    connection = session.connection()
    connection.exec_driver_sql(
        sql.upsert_attribute,
        (
            stored.entity_pk,
            attr.name,
            attr.dataset_id,
            attr.attr_type,
            stored_value,
            attr.value_num,
            attr.value_text,
            attr.unit_code,
            None if attr.observed_at is None else sql.encode_time(attr.observed_at),
            encode_json(attr.sub_attrs),
            now_stored,
            sql.encode_time(modified),
        ),
    )
    history = (
        stored.entity_pk,
        attr.name,
        attr.dataset_id,
        ms_of(attr.observed_at or now),
        attr.value_num,
        stored_value if not sql.postgresql else attr.value,
        attr.unit_code,
    )
    _append_history_rows(connection, sql, [history])
    _update_entities(session, sql, [{"pk": stored.entity_pk, "modified_at": now}])
    return changed


def _check(
    entity: EntityIn,
    row: Any,
    mode: str,
    units: dict[str, str | None],
    scope: Scope,
) -> tuple[NgsiLdError, str] | None:
    if row is not None and not scope.covers_unit(row.unit_code):
        # Out of scope reads as absent: the caller must not learn the entity exists.
        return ResourceNotFound("context.entity.not_found", id=entity.id), "not found"
    if mode == "create" and row is not None:
        return AlreadyExists("context.entity.exists", id=entity.id), "already exists"
    if mode in ("update", "merge", "patch", "append") and row is None:
        return ResourceNotFound("context.entity.not_found", id=entity.id), "not found"
    if row is None and entity.type is None:
        return BadRequestData("context.entity.bad_type"), "type is required"
    if row is not None and entity.type is not None and entity.type != row.type:
        return BadRequestData("context.entity.type_mismatch"), "entity type cannot change"
    unit = units.get(entity.id) if entity.point is not None else (row.unit_code if row else None)
    if not scope.covers_unit(unit):
        return Forbidden("context.entity.out_of_scope", id=entity.id), "outside your units"
    return None


def _geo_columns(entity: EntityIn) -> dict[str, Any]:
    lon, lat = entity.point if entity.point else (None, None)
    box = entity.bbox or (None, None, None, None)
    return {
        "lon": lon,
        "lat": lat,
        "min_lon": box[0],
        "min_lat": box[1],
        "max_lon": box[2],
        "max_lat": box[3],
    }


def _update_entities(session: Session, sql: _WriteSql, moved: list[dict[str, Any]]) -> None:
    # One driver executemany per distinct set of columns (no per-row SQLAlchemy work).
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for values in moved:
        groups[tuple(sorted(k for k in values if k != "pk"))].append(values)
    mark = "%s" if sql.postgresql else "?"
    connection = session.connection()
    encoders = {"modified_at": sql.encode_time, "scopes": sql.encode_json}
    for columns, rows in groups.items():
        statement = (
            f"UPDATE {ENTITY_TABLE.name} SET {', '.join(f'{c} = {mark}' for c in columns)} "  # noqa: S608 (fixed identifiers)
            f"WHERE pk = {mark}"
        )
        coders = [encoders.get(c, _identity) for c in columns]
        connection.exec_driver_sql(
            statement,
            [
                (*[code(row[c]) for code, c in zip(coders, columns, strict=True)], row["pk"])
                for row in rows
            ],
        )


def delete_entities(
    *, session: Session, tenant_id: int, entity_ids: Sequence[str], scope: Scope = GLOBAL_SCOPE
) -> tuple[list[Entity], list[str]]:
    """Delete entities (and their current attributes); return those deleted and ids missing."""
    rows = get_entity_rows(session=session, tenant_id=tenant_id, entity_ids=entity_ids)
    visible = [row for row in rows.values() if scope.covers_unit(row.unit_code)]
    missing = [
        eid for eid in dict.fromkeys(entity_ids) if eid not in {r.entity_id for r in visible}
    ]
    pks = [row.pk for row in visible]
    for part in _chunks(pks):
        session.execute(delete(Attribute).where(Attribute.entity_pk.in_(part)))
        session.execute(delete(Entity).where(Entity.pk.in_(part)))
    session.flush()
    return visible, missing


def delete_attribute(
    *, session: Session, entity: Entity, name: str, dataset_id: str | None, delete_all: bool
) -> list[Attribute]:
    """Delete one attribute instance (or all its instances); return the rows deleted."""
    conditions = [Attribute.entity_pk == entity.pk, Attribute.name == name]
    if not delete_all:
        conditions.append(Attribute.dataset_id == (dataset_id or ""))
    rows = list(session.execute(select(Attribute).where(*conditions)).scalars())
    if rows:
        session.execute(delete(Attribute).where(*conditions))
        if name.endswith("/location") and name.startswith("https://uri.etsi.org/ngsi-ld/"):
            session.execute(
                update(Entity)
                .where(Entity.pk == entity.pk)
                .values(
                    lon=None,
                    lat=None,
                    min_lon=None,
                    min_lat=None,
                    max_lon=None,
                    max_lat=None,
                    unit_code=None,
                )
            )
        session.flush()
    return rows


# --- reads -----------------------------------------------------------------------------------


def get_entity(
    *, session: Session, tenant_id: int, entity_id: str, scope: Scope = GLOBAL_SCOPE
) -> Entity | None:
    """Return one entity if it exists and is in scope."""
    row = session.execute(
        select(Entity).where(
            Entity.tenant_id == tenant_id,
            Entity.entity_id == entity_id,
            scope.unit_filter(Entity.unit_code),
        )
    ).scalar_one_or_none()
    return row


def get_attributes(
    *, session: Session, entity_pks: Sequence[int], names: Sequence[str] | None = None
) -> dict[int, list[Attribute]]:
    """Return the current attributes of entities, keyed by entity key, in name order."""
    out: dict[int, list[Attribute]] = defaultdict(list)
    for part in _chunks(list(entity_pks)):
        statement = select(Attribute).where(Attribute.entity_pk.in_(part))
        if names is not None:
            statement = statement.where(Attribute.name.in_(list(names)))
        for row in session.execute(
            statement.order_by(Attribute.entity_pk, Attribute.name, Attribute.dataset_id)
        ).scalars():
            out[row.entity_pk].append(row)
    return out


# Columns the read routes render: plain rows (attribute access like the ORM objects, without
# identity-map bookkeeping, which cost about as much as the SQL on a 100-entity page).
ENTITY_READ_COLUMNS = (
    Entity.pk,
    Entity.entity_id,
    Entity.type,
    Entity.scopes,
    Entity.unit_code,
    Entity.lon,
    Entity.lat,
    Entity.min_lon,
    Entity.min_lat,
    Entity.max_lon,
    Entity.max_lat,
    Entity.created_at,
    Entity.modified_at,
)
ATTRIBUTE_READ_COLUMNS = (
    Attribute.entity_pk,
    Attribute.name,
    Attribute.dataset_id,
    Attribute.attr_type,
    Attribute.value,
    Attribute.unit_code,
    Attribute.observed_at,
    Attribute.sub_attrs,
    Attribute.created_at,
    Attribute.modified_at,
)


def get_attribute_rows(
    *,
    session: Session,
    entity_pks: Sequence[int],
    names: Sequence[str] | None = None,
    sys_attrs: bool = True,
) -> dict[int, list[Any]]:
    """Return the current attributes of entities as plain rows, keyed by entity key
    (createdAt/modifiedAt left empty unless `sys_attrs`: decoding them was a tenth of a page)."""
    out: dict[int, list[Any]] = defaultdict(list)
    columns: tuple[Any, ...] = ATTRIBUTE_READ_COLUMNS
    if not sys_attrs:
        columns = (
            *ATTRIBUTE_READ_COLUMNS[:-2],
            null().label("created_at"),
            null().label("modified_at"),
        )
    for part in _chunks(list(entity_pks)):
        statement = select(*columns).where(Attribute.entity_pk.in_(part))
        if names is not None:
            statement = statement.where(Attribute.name.in_(list(names)))
        # Core execution (session.connection()): plain column rows need none of the ORM's
        # result machinery, which cost a third of a 100-entity page.
        ordered = statement.order_by(Attribute.entity_pk, Attribute.name, Attribute.dataset_id)
        for row in session.connection().execute(ordered).all():
            out[row.entity_pk].append(row)
    return out


def query_entity_rows(
    *,
    session: Session,
    tenant_id: int,
    conditions: Sequence[ColumnElement[bool]],
    scope: Scope = GLOBAL_SCOPE,
    limit: int | None,
    offset: int,
    count: bool,
) -> tuple[list[Any], int | None]:
    """Return one page of entities (plain rows, id order) matching conditions, and the total."""
    where = [Entity.tenant_id == tenant_id, scope.unit_filter(Entity.unit_code), *conditions]
    total = None
    if count:
        total = int(
            session.execute(select(func.count()).select_from(Entity).where(*where)).scalar_one()
        )
    if limit == 0:
        return [], total
    statement = select(*ENTITY_READ_COLUMNS).where(*where).order_by(Entity.entity_id)
    statement = statement.offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.connection().execute(statement)), total


# CPU seconds one REGEXP call may take outside a query_time_limit block (subscription matching).
REGEXP_CALL_LIMIT = 1.0


def _search(pattern: str, value: Any, timeout: float) -> bool:
    # The `regex` engine stops a match after `timeout` seconds (TimeoutError): Python's `re`
    # cannot be interrupted, and `(a+)+$` against a long value backtracks for hours.
    return regex.search(pattern, str(value), timeout=timeout) is not None


def ensure_regexp(session: Session) -> None:
    """Give SQLite a REGEXP function on this connection (PostgreSQL has `~`); each call is
    bounded in time (REGEXP_CALL_LIMIT)."""
    if session.get_bind().dialect.name != "sqlite":
        return
    raw = session.connection().connection.dbapi_connection
    if raw is None:
        return

    def regexp(pattern: str | None, value: Any) -> bool:
        if pattern is None or value is None:
            return False
        return _search(pattern, value, REGEXP_CALL_LIMIT)

    raw.create_function("regexp", 2, regexp, deterministic=True)


@dataclass
class QueryBudget:
    """The time a read may take; `exceeded` tells whether it was stopped for running over."""

    seconds: float
    exceeded: bool = False


# SQLite virtual-machine steps between two looks at the clock (about a millisecond of work).
PROGRESS_STEPS = 20_000
STATEMENT_TIMEOUT = "57014"  # PostgreSQL's query_canceled


@contextmanager
def query_time_limit(*, session: Session, seconds: float) -> Iterator[QueryBudget]:
    """Stop the reads of this block after `seconds`: PostgreSQL's statement_timeout; on SQLite a
    progress handler and a deadline shared by every REGEXP call. The statement that runs over
    raises DBAPIError and `budget.exceeded` is set."""
    budget = QueryBudget(seconds)
    if session.get_bind().dialect.name == "postgresql":
        previous = session.execute(text("SELECT current_setting('statement_timeout')")).scalar()
        session.execute(
            text("SELECT set_config('statement_timeout', :limit, true)"),
            {"limit": str(max(1, int(seconds * 1000)))},
        )
        try:
            yield budget
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == STATEMENT_TIMEOUT:
                budget.exceeded = True
            raise
        session.execute(
            text("SELECT set_config('statement_timeout', :limit, true)"), {"limit": previous}
        )
        return
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    deadline = time.monotonic() + seconds

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            budget.exceeded = True
        return remaining

    def regexp(pattern: str | None, value: Any) -> bool:
        if pattern is None or value is None:
            return False
        remaining = left()
        if remaining <= 0:
            raise TimeoutError
        try:
            return _search(pattern, value, remaining)
        except TimeoutError:
            budget.exceeded = True
            raise

    raw.create_function("regexp", 2, regexp, deterministic=True)
    raw.set_progress_handler(lambda: int(left() <= 0), PROGRESS_STEPS)
    try:
        yield budget
    finally:
        raw.set_progress_handler(None, 0)
        ensure_regexp(session)


def query_entities(
    *,
    session: Session,
    tenant_id: int,
    conditions: Sequence[ColumnElement[bool]],
    scope: Scope = GLOBAL_SCOPE,
    limit: int | None,
    offset: int,
    count: bool,
) -> tuple[list[Entity], int | None]:
    """Return one page of entities matching SQL conditions (id order) and the total if asked."""
    where = [Entity.tenant_id == tenant_id, scope.unit_filter(Entity.unit_code), *conditions]
    total = None
    if count:
        total = int(
            session.execute(select(func.count()).select_from(Entity).where(*where)).scalar_one()
        )
    if limit == 0:
        return [], total
    statement = select(Entity).where(*where).order_by(Entity.entity_id).offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.execute(statement).scalars()), total


def get_types(
    *, session: Session, tenant_id: int, scope: Scope = GLOBAL_SCOPE
) -> list[tuple[str, int]]:
    """Return each entity type of a tenant with its entity count."""
    rows = session.execute(
        select(Entity.type, func.count())
        .where(Entity.tenant_id == tenant_id, scope.unit_filter(Entity.unit_code))
        .group_by(Entity.type)
        .order_by(Entity.type)
    ).all()
    return [(row[0], int(row[1])) for row in rows]


def get_attribute_summary(
    *,
    session: Session,
    tenant_id: int,
    scope: Scope = GLOBAL_SCOPE,
    entity_type: str | None = None,
    name: str | None = None,
) -> list[tuple[str, str, str, int]]:
    """Return (attribute name, attribute type, entity type, entity count) for a tenant."""
    statement = (
        select(
            Attribute.name, Attribute.attr_type, Entity.type, func.count(func.distinct(Entity.pk))
        )
        .join(Entity, Entity.pk == Attribute.entity_pk)
        .where(Entity.tenant_id == tenant_id, scope.unit_filter(Entity.unit_code))
        .group_by(Attribute.name, Attribute.attr_type, Entity.type)
        .order_by(Attribute.name)
    )
    if entity_type is not None:
        statement = statement.where(Entity.type == entity_type)
    if name is not None:
        statement = statement.where(Attribute.name == name)
    return [(r[0], r[1], r[2], int(r[3])) for r in session.execute(statement).all()]


def get_located_values(
    *,
    session: Session,
    tenant_id: int,
    kinds: Mapping[str, tuple[str, str]],
    label: str,
    scope: Scope = GLOBAL_SCOPE,
    unit_codes: frozenset[str] | None = None,
) -> list[Any]:
    """Return located entities of some types with their label, value and level, one row each.

    `kinds` maps an (expanded) entity type to its value attribute and its level attribute
    (the same name when one attribute is both); `label` is the attribute giving a name. Rows are
    (entity_id, type, lat, lon, unit_code, label_text, value_num, value_text, value_observed,
    level_num, level_text, level_observed), ordered by type and entity id, None where the entity
    lacks the attribute; the level members repeat the value's when one attribute is both.
    Observation times are not decoded: the stored text on SQLite, the driver's datetime on
    PostgreSQL (the map formats each distinct time once). Only the default instance (no
    datasetId) of each attribute is read. Plain rows from one query, an indexed lookup per
    attribute: the map reads every sensor of the province at once, so no ORM object, no JSON
    value and no row per attribute.
    """
    if unit_codes is not None and not unit_codes:
        return []

    def lookup(alias: Any, name: Any) -> ColumnElement[bool]:
        return and_(alias.entity_pk == Entity.pk, alias.name == name, alias.dataset_id == "")

    named, value, level = aliased(Attribute), aliased(Attribute), aliased(Attribute)
    raw = String()  # observation times read as stored: no datetime decoded per row
    # The attribute's name depends on the entity's type: one CASE, one primary-key lookup.
    value_name = case({t: v for t, (v, _) in kinds.items()}, value=Entity.type)
    separate = {t: lv for t, (v, lv) in kinds.items() if lv != v}
    columns: list[Any] = [
        Entity.entity_id,
        Entity.type,
        Entity.lat,
        Entity.lon,
        Entity.unit_code,
        named.value_text,
        value.value_num,
        value.value_text,
        type_coerce(value.observed_at, raw),
    ]
    if separate:
        # Types whose level is their value take the value's members.
        same = Entity.type.not_in(list(separate))
        columns += [
            case((same, value.value_num), else_=level.value_num),
            case((same, value.value_text), else_=level.value_text),
            type_coerce(case((same, value.observed_at), else_=level.observed_at), raw),
        ]
    else:
        columns += [value.value_num, value.value_text, type_coerce(value.observed_at, raw)]
    statement = (
        select(*columns)
        .select_from(Entity)
        .outerjoin(named, lookup(named, label))
        .outerjoin(value, lookup(value, value_name))
    )
    if separate:
        level_name = case(separate, value=Entity.type, else_=null())
        statement = statement.outerjoin(level, lookup(level, level_name))
    statement = statement.where(
        Entity.tenant_id == tenant_id,
        Entity.type.in_(list(kinds)),
        Entity.lat.is_not(None),
        Entity.lon.is_not(None),
        scope.unit_filter(Entity.unit_code),
    ).order_by(
        # The (tenant, type, entity id) index's own order: no sort of the province's sensors.
        Entity.type,
        Entity.entity_id,
    )
    if unit_codes is not None:
        statement = statement.where(Entity.unit_code.in_(sorted(unit_codes)))
    # On the connection: Core rows, without the ORM's result processing (a third of the time).
    return list(session.connection().execute(statement).all())


# --- history ---------------------------------------------------------------------------------


def append_history(*, session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append attribute instances to the history; an instance already stored is overwritten."""
    # One row per key (the last wins), as ON CONFLICT may not touch a row twice in a statement.
    unique = list({tuple(row[c] for c in HISTORY_KEY): row for row in rows}.values())
    if unique:
        statement = _dialect_insert(session)(HISTORY_TABLE)
        statement = statement.on_conflict_do_update(
            index_elements=list(HISTORY_KEY),
            set_={c: statement.excluded[c] for c in HISTORY_UPDATED},
        )
        session.connection().execute(statement, unique)
    session.flush()


def get_history_instance(
    *, session: Session, entity_pk: int, name: str, instance_id: int
) -> History | None:
    """Return one history row (an attribute instance) of an entity's attribute."""
    return session.execute(
        select(History).where(
            History.id == instance_id, History.entity_pk == entity_pk, History.name == name
        )
    ).scalar_one_or_none()


def update_history_instance(*, session: Session, instance: History, attr: AttributeIn) -> History:
    """Change a history row's value (and its unit and time when given)."""
    instance.value = attr.value
    instance.value_num = attr.value_num
    if attr.unit_code is not None:
        instance.unit_code = attr.unit_code
    if attr.observed_at is not None:
        observed_ms = ms_of(attr.observed_at)
        taken = session.execute(
            select(History.id).where(
                History.entity_pk == instance.entity_pk,
                History.name == instance.name,
                History.observed_ms == observed_ms,
                History.dataset_id == instance.dataset_id,
                History.id != instance.id,
            )
        ).first()
        if taken is not None:
            # Two instances of one attribute cannot share a time (the history's unique key).
            raise AlreadyExists("context.history.instance_exists", at=iso(attr.observed_at))
        instance.observed_ms = observed_ms
    session.flush()
    return instance


def delete_history_instance(*, session: Session, instance: History) -> None:
    """Delete a history row."""
    session.delete(instance)
    session.flush()


def _history_where(
    entity_pks: Sequence[int],
    names: Sequence[str] | None,
    start_ms: int | None,
    end_ms: int | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [History.entity_pk.in_(list(entity_pks))]
    if names is not None:
        where.append(History.name.in_(list(names)))
    if start_ms is not None:
        where.append(History.observed_ms >= start_ms)
    if end_ms is not None:
        where.append(History.observed_ms < end_ms)
    return where


# Above this many (entity, attribute) pairs, lastN ranks rows in one window query instead.
LAST_N_PAIRS = 100


def _last_n_per_pair(
    session: Session,
    columns: Sequence[Any],
    pairs: Sequence[tuple[int, str]],
    start_ms: int | None,
    end_ms: int | None,
    last_n: int,
) -> list[Any]:
    # One backward range scan of the (entity, name, time) index per pair, LIMIT n each:
    # milliseconds whatever the history length, where ranking every row costs seconds.
    if not pairs:
        return []
    parts = [
        select(*columns)
        .where(*_history_where([entity_pk], [name], start_ms, end_ms))
        .order_by(History.observed_ms.desc(), History.id.desc())
        .limit(last_n)
        .subquery()
        for entity_pk, name in pairs
    ]
    rows = session.execute(union_all(*(select(*part.c) for part in parts))).all()
    return sorted(rows, key=lambda row: (row.entity_pk, row.name, row.observed_ms, row.id))


def get_history(
    *,
    session: Session,
    entity_pks: Sequence[int],
    names: Sequence[str] | None,
    start_ms: int | None,
    end_ms: int | None,
    last_n: int | None,
    limit: int,
) -> list[Any]:
    """Return attribute instances in time order (the last N per attribute when asked)."""
    where = _history_where(entity_pks, names, start_ms, end_ms)
    columns = (
        History.entity_pk,
        History.name,
        History.dataset_id,
        History.observed_ms,
        History.value,
        History.unit_code,
        History.id,
    )
    if last_n is not None:
        if names is None:
            # The attributes with history (an index-only scan; deleted attributes included).
            found = session.execute(
                select(History.entity_pk, History.name).where(*where).distinct()
            )
            pairs = [(row.entity_pk, row.name) for row in found]
        else:
            pairs = [(entity_pk, name) for entity_pk in entity_pks for name in names]
        if len(pairs) <= LAST_N_PAIRS:
            return _last_n_per_pair(session, columns, pairs, start_ms, end_ms, last_n)
        ranked = (
            select(
                *columns,
                func.row_number()
                .over(
                    partition_by=(History.entity_pk, History.name),
                    order_by=(History.observed_ms.desc(), History.id.desc()),
                )
                .label("rank"),
            )
            .where(*where)
            .subquery()
        )
        statement = (
            select(*[ranked.c[c.key] for c in columns])
            .where(ranked.c.rank <= last_n)
            .order_by(ranked.c.entity_pk, ranked.c.name, ranked.c.observed_ms, ranked.c.id)
        )
        return list(session.execute(statement).all())
    statement = (
        select(*columns)
        .where(*where)
        .order_by(History.entity_pk, History.name, History.observed_ms, History.id)
        .limit(limit)
    )
    return list(session.execute(statement).all())


# The aggregates of aggregate_history and the NGSI-LD methods that need each.
AGGREGATE_NEEDS = {
    "total": ("totalCount",),
    "distinct_num": ("distinctCount",),
    "sum": ("sum", "avg", "stddev"),
    "sumsq": ("sumsq", "stddev"),
    "numeric": ("sum", "avg", "stddev", "sumsq"),
    "min": ("min",),
    "max": ("max",),
}


def _bucket_tree(boundaries: Sequence[int], low: int, high: int) -> Any:
    """Return the index i with boundaries[i] <= observed_ms < boundaries[i + 1], as SQL.

    A balanced tree of CASE expressions: log2(periods) comparisons a row. The boundaries are
    integers computed here, inlined as literals so GROUP BY repeats the very same expression.
    """
    if high - low == 1:
        return literal_column(str(int(low)))
    middle = (low + high) // 2
    return case(
        (
            History.observed_ms < literal_column(str(int(boundaries[middle]))),
            _bucket_tree(boundaries, low, middle),
        ),
        else_=_bucket_tree(boundaries, middle, high),
    )


def aggregate_history(
    *,
    session: Session,
    entity_pks: Sequence[int],
    names: Sequence[str] | None,
    start_ms: int | None,
    end_ms: int | None,
    origin_ms: int,
    period_ms: int,
    methods: Sequence[str] | None = None,
    boundaries: Sequence[int] | None = None,
) -> list[Any]:
    """Aggregate instances per period in SQL: counts, sum, sum of squares, min and max.

    Periods are `period_ms` long from `origin_ms`, or, for calendar periods (months, years),
    run from each of `boundaries` to the next. Only the aggregates `methods` need are computed
    (a distinct count sorts every period's values; avg/min/max need none of that).
    """
    if boundaries is not None:
        bucket = _bucket_tree(boundaries, 0, len(boundaries) - 1).label("bucket")
    else:
        # Integer division on both backends; truncation is floor as every instance is >= origin.
        bucket = ((History.observed_ms - origin_ms) // period_ms).label("bucket")
    wanted = set(methods or AGGREGATIONS_ALL)
    available: dict[str, Any] = {
        "total": func.count(),
        "distinct_num": func.count(func.distinct(History.value_num)),
        "sum": func.sum(History.value_num),
        "sumsq": func.sum(History.value_num * History.value_num),
        "numeric": func.count(History.value_num),
        "min": func.min(History.value_num),
        "max": func.max(History.value_num),
    }
    columns = [
        (expression if wanted & set(AGGREGATE_NEEDS[key]) else null()).label(key)
        for key, expression in available.items()
    ]
    where = _history_where(entity_pks, names, start_ms, end_ms)
    where.append(History.observed_ms >= origin_ms)
    if boundaries is not None:
        where.append(History.observed_ms < boundaries[-1])
    statement = (
        select(History.entity_pk, History.name, bucket, *columns)
        .where(*where)
        .group_by(History.entity_pk, History.name, bucket)
        .order_by(History.entity_pk, History.name, bucket)
    )
    return list(session.execute(statement).all())


def get_last_observation_ms(
    *, session: Session, entity_pks: Sequence[int], names: Sequence[str] | None
) -> int | None:
    """Return the latest observation time of these entities' attributes."""
    value = session.execute(
        select(func.max(History.observed_ms)).where(*_history_where(entity_pks, names, None, None))
    ).scalar_one()
    return None if value is None else int(value)


def get_first_observation_ms(
    *, session: Session, entity_pks: Sequence[int], names: Sequence[str] | None
) -> int | None:
    """Return the earliest observation time of these entities' attributes."""
    value = session.execute(
        select(func.min(History.observed_ms)).where(*_history_where(entity_pks, names, None, None))
    ).scalar_one()
    return None if value is None else int(value)


# --- JSON-LD contexts ------------------------------------------------------------------------


def context_id(url: str) -> str:
    """Return the local id of a context URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def get_ldcontext(
    *, session: Session, url: str | None = None, local_id: str | None = None
) -> LdContext | None:
    """Return a stored context by URL or local id."""
    if url is not None:
        return session.execute(select(LdContext).where(LdContext.url == url)).scalar_one_or_none()
    return session.get(LdContext, local_id)


def get_all_ldcontexts(*, session: Session, kind: str | None = None) -> list[LdContext]:
    """Return the stored contexts, optionally of one kind."""
    statement = select(LdContext).order_by(LdContext.created_at, LdContext.url)
    if kind is not None:
        statement = statement.where(LdContext.kind == kind)
    return list(session.execute(statement).scalars())


def create_ldcontext(
    *,
    session: Session,
    url: str,
    document: Any,
    kind: str,
    now: datetime,
    local_id: str | None = None,
) -> LdContext:
    """Store a context document (replacing the document of a known URL)."""
    row = get_ldcontext(session=session, url=url)
    if row is None:
        row = LdContext(
            id=local_id or context_id(url), url=url, kind=kind, document=document, created_at=now
        )
        session.add(row)
    else:
        row.document = document
        row.kind = kind
    session.flush()
    return row


def delete_ldcontext(*, session: Session, row: LdContext) -> None:
    """Delete a stored context."""
    session.delete(row)
    session.flush()


def entity_filter_ids(ids: Sequence[str]) -> ColumnElement[bool]:
    """A condition keeping entities whose id is in a list."""
    return Entity.entity_id.in_(list(ids))


def entity_filter_types(types: Sequence[str]) -> ColumnElement[bool]:
    """A condition keeping entities of any of these (expanded) types."""
    return Entity.type.in_(list(types))


def entity_filter_has_any(names: Sequence[str]) -> ColumnElement[bool]:
    """A condition keeping entities that hold at least one of these attributes."""
    return (
        select(Attribute.entity_pk)
        .where(Attribute.entity_pk == Entity.pk, Attribute.name.in_(list(names)))
        .exists()
    )


def entity_filter_bbox(
    min_lon: float, min_lat: float, max_lon: float, max_lat: float
) -> ColumnElement[bool]:
    """A condition keeping entities whose location box meets a box."""
    return and_(
        Entity.min_lat <= max_lat,
        Entity.max_lat >= min_lat,
        Entity.min_lon <= max_lon,
        Entity.max_lon >= min_lon,
    )


def entity_filter_or(conditions: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """Combine conditions with OR."""
    return or_(*conditions)
