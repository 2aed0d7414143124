"""The NGSI-LD API (ETSI GS CIM 009) at /ngsi-ld/v1: entities, attributes, queries, batch,
temporal, discovery, JSON-LD contexts and subscriptions. Errors answer in NGSI-LD's own shape."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse, Response
from sqlalchemy import ColumnElement
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cityops.context import datamodels, flows, query, service, subscriptions
from cityops.context.errors import (
    ERROR_BASE,
    AlreadyExists,
    BadRequestData,
    Forbidden,
    InvalidRequest,
    NgsiLdError,
    NonexistentTenant,
    NotAcceptable,
    ResourceNotFound,
    TooComplexQuery,
    TooManyResults,
    UnsupportedMediaType,
    bad,
)
from cityops.context.ldcontext import CORE_URL, ActiveContext
from cityops.context.models import Entity, Subscription, Tenant
from cityops.context.normalize import (
    GEOMETRY_TYPES,
    VALUE_MEMBER,
    AttributeIn,
    EntityIn,
    attribute_body,
    is_uri,
    iso,
    ms_of,
    parse_attribute,
    parse_datetime,
    render_entity,
)
from cityops.context.schemas import (
    AGGREGATIONS,
    GEO_JSON,
    JSON,
    JSON_LD,
    MERGE_PATCH,
    SCHEMA_JSON,
    DataModelList,
    DataModelRead,
    Options,
    Period,
    link_header,
    parse_duration,
    parse_link,
)
from cityops.core.deps import RuntimeDep, SessionDep
from cityops.core.errors import NotFound
from cityops.core.runtime import Runtime
from cityops.core.security import Permission, Principal, require

router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD"])
MAX_BATCH = 1000
MAX_BODY = 16 * 1024 * 1024
TEMPORAL_LIMIT = 10_000

Reader = Annotated[Principal, Depends(require(Permission.CONTEXT_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CONTEXT_WRITE))]


def render_error(
    request: Request, status: int, slug: str, detail: str, errors: list[Any]
) -> Response:
    """Render an error in the NGSI-LD shape (problem details with an NGSI-LD error type)."""
    names = {
        400: "BadRequestData",
        404: "ResourceNotFound",
        405: "OperationNotSupported",
        409: "AlreadyExists",
        413: "RequestEntityTooLarge",
        422: "InvalidRequest",
        500: "InternalError",
        503: "LdContextNotAvailable",
    }
    if slug == "validation-error":
        # A parameter the framework checked (or the app-wide NUL check): NGSI-LD answers bad
        # input data with 400 BadRequestData, as for the parameters parsed here by hand.
        status, name = 400, "BadRequestData"
    elif slug[:1].isupper():
        name = slug
    elif status in (401, 403):
        name = "Unauthorized" if status == 401 else "Forbidden"
    else:
        name = names.get(status, "BadRequestData")
    body: dict[str, Any] = {"type": ERROR_BASE + name, "title": name, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=JSON)


# --- request plumbing ------------------------------------------------------------------------


async def document_body(request: Request) -> Any:
    """Read the request body as JSON, checking the content type (415) and size."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, JSON_LD, MERGE_PATCH):
        raise UnsupportedMediaType("context.media.unsupported", type=content_type[:80] or "-")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise bad("request.too_large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("context.request.bad_json") from exc
    return data


async def json_body(request: Request) -> Any:
    """Read an NGSI-LD body: @context in the body for JSON-LD, in a Link header for JSON."""
    data = await document_body(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    link = parse_link(request.headers.get("link"))
    if content_type == JSON_LD:
        if link is not None:
            raise bad("ld.link_with_ld_json")
        items = data if isinstance(data, list) else [data]
        if not all(isinstance(i, dict) and "@context" in i for i in items) and not (
            isinstance(data, dict) and "@context" in data
        ):
            raise bad("ld.missing_context")
    elif isinstance(data, dict) and "@context" in data:
        raise bad("ld.context_in_json")
    request.state.ngsi_link = link
    return data


Body = Annotated[Any, Depends(json_body)]
Document = Annotated[Any, Depends(document_body)]


async def accepted(request: Request) -> str:
    """Negotiate the response type: application/json or application/ld+json (406 otherwise)."""
    return _negotiate(request, {})


async def accepted_geo(request: Request) -> str:
    """Negotiate as `accepted`, GeoJSON (application/geo+json) included."""
    return _negotiate(request, {GEO_JSON: GEO_JSON})


def _negotiate(request: Request, extra: dict[str, str]) -> str:
    header = request.headers.get("accept", "")
    if not header.strip():
        return JSON
    best: tuple[float, str] | None = None
    for part in header.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if not math.isfinite(quality) or quality <= 0:
            continue
        media = media.lower()
        offers = {JSON: JSON, JSON_LD: JSON_LD, "*/*": JSON, "application/*": JSON, **extra}
        produced = offers.get(media)
        if produced and (best is None or quality > best[0]):
            best = (quality, produced)
    if best is None:
        raise NotAcceptable("context.media.not_acceptable")
    return best[1]


Accept = Annotated[str, Depends(accepted)]
AcceptGeo = Annotated[str, Depends(accepted_geo)]


def tenant_name(request: Request, principal: Principal) -> str:
    """Return the tenant of a request; an API key bound to a tenant may use only that one."""
    name = request.headers.get("ngsild-tenant") or principal.tenant or service.DEFAULT_TENANT
    if len(name) > 128 or not re.fullmatch(r"[A-Za-z0-9_\-.:/]+", name):
        raise bad("tenant.bad_name")
    if principal.tenant is not None and name != principal.tenant:
        raise Forbidden("context.tenant.forbidden", tenant=name)
    return name


def read_tenant(request: Request, session: Session, principal: Principal) -> Tenant | None:
    """Return the tenant read from (None: the default tenant before any write)."""
    name = tenant_name(request, principal)
    tenant = service.get_tenant(session=session, name=name)
    if tenant is None and name != service.DEFAULT_TENANT:
        raise NonexistentTenant("context.tenant.not_found", tenant=name)
    return tenant


def request_context(
    request: Request, runtime: Runtime, session: Session, body_context: Any = None
) -> ActiveContext:
    """Return the active context of a request (body @context, Link header, or the core)."""
    value = body_context
    if value is None:
        link = getattr(request.state, "ngsi_link", None)
        if link is None:
            link = parse_link(request.headers.get("link"))
        value = link
    return flows.resolve_context(runtime=runtime, session=session, value=value)


def respond(
    data: Any,
    ctx: ActiveContext,
    media: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Answer with JSON (context in a Link header) or JSON-LD (context in the body)."""
    headers = dict(headers or {})
    context_value: Any = ctx.source if ctx.source is not None else CORE_URL
    if media == JSON_LD:
        if isinstance(data, list):
            data = [{**item, "@context": context_value} for item in data]
        elif isinstance(data, dict):
            data = {**data, "@context": context_value}
    else:
        url = ctx.urls[0] if ctx.urls else CORE_URL
        # Pagination links, when given, travel in the same header as the context link.
        link = link_header(url)
        headers["Link"] = f"{headers['Link']}, {link}" if headers.get("Link") else link
    return JSONResponse(data, status_code=status, media_type=media, headers=headers)


def _int(value: str | None, name: str, default: int | None, minimum: int = 0) -> int | None:
    if value is None or value == "":
        return default
    if not re.fullmatch(r"\d{1,9}", value) or int(value) < minimum:
        raise bad("request.bad_integer", name=name)
    return int(value)


def _list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise bad("request.empty_list")
    return items


# --- projection (pick, omit) and GeoJSON ----------------------------------------------------

ENTITY_KEYS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt"})


@dataclass(frozen=True)
class Projection:
    """The members `pick` keeps or `omit` drops (NGSI-LD 1.8), as rendered (compacted) names."""

    pick: frozenset[str] | None = None
    omit: frozenset[str] | None = None

    @classmethod
    def parse(cls, ctx: ActiveContext, pick: str | None, omit: str | None) -> Projection:
        """Parse `pick` and `omit` (comma lists; not both)."""
        picked, omitted = _list(pick), _list(omit)
        if picked and omitted:
            raise bad("query.pick_and_omit")

        def names(items: list[str] | None) -> frozenset[str] | None:
            if items is None:
                return None
            # A member may be named by its term or its IRI: compare as rendered.
            return frozenset(n if n in ENTITY_KEYS else ctx.compact(ctx.expand(n)) for n in items)

        return cls(names(picked), names(omitted))

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return an entity with only the picked members, or without the omitted ones."""
        if self.pick is not None:
            return {k: v for k, v in data.items() if k in self.pick}
        if self.omit is not None:
            return {k: v for k, v in data.items() if k not in self.omit}
        return data


def _geometry(value: Any) -> Any:
    """Return the GeoJSON geometry of a rendered GeoProperty (any representation) or None."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, dict):
        return None
    if value.get("type") in GEOMETRY_TYPES:
        return value
    inner = value.get("value")
    if isinstance(inner, dict) and inner.get("type") in GEOMETRY_TYPES:
        return inner
    return None


def geojson_feature(
    data: dict[str, Any], ctx: ActiveContext, projection: Projection, geometry: str | None
) -> dict[str, Any]:
    """Render an entity as a GeoJSON Feature: geometry from `geometry` (default location)."""
    name = ctx.compact(ctx.expand(geometry or "location"))
    properties = projection.apply({k: v for k, v in data.items() if k != "id"})
    return {
        "id": data["id"],
        "type": "Feature",
        "geometry": _geometry(data.get(name)),
        "properties": properties,
    }


def respond_geojson(
    data: dict[str, Any] | list[dict[str, Any]],
    ctx: ActiveContext,
    projection: Projection,
    geometry: str | None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Answer application/geo+json: a Feature, or a FeatureCollection for a list."""
    body: dict[str, Any]
    if isinstance(data, list):
        features = [geojson_feature(item, ctx, projection, geometry) for item in data]
        body = {"type": "FeatureCollection", "features": features}
    else:
        body = geojson_feature(data, ctx, projection, geometry)
    url = ctx.urls[0] if ctx.urls else CORE_URL
    return JSONResponse(
        body, media_type=GEO_JSON, headers={**(headers or {}), "Link": link_header(url)}
    )


# --- entities --------------------------------------------------------------------------------


def _one_entity(outcome: flows.BatchOutcome, entity_id: str | None) -> None:
    if outcome.errors:
        error = outcome.raised.get(entity_id or "")
        if error is not None:
            raise error
        raise BadRequestData("context.entity.bad_id")


@router.post("/entities", status_code=201)
@router.post("/entities/", status_code=201, include_in_schema=False)
def create_entity(
    request: Request, body: Body, principal: Writer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Create an entity (201 with Location; 409 if it exists)."""
    if not isinstance(body, dict):
        raise bad("entity.not_object")
    tenant = tenant_name(request, principal)
    ctx_value = request.state.ngsi_link
    outcome = flows.write_entities(
        runtime=runtime,
        session=session,
        tenant=tenant,
        entities=[body],
        mode="create",
        context=ctx_value,
        scope=principal.scope,
    )
    entity_id = body.get("id") if isinstance(body.get("id"), str) else None
    _one_entity(outcome, entity_id)
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/entities/{entity_id}"})


def _get_entity_or_404(
    session: Session, tenant: Tenant | None, entity_id: str, principal: Principal
) -> Entity:
    if not is_uri(entity_id):
        raise bad("entity.bad_id")
    row = None
    if tenant is not None:
        row = service.get_entity(
            session=session, tenant_id=tenant.id, entity_id=entity_id, scope=principal.scope
        )
    if row is None:
        raise ResourceNotFound("context.entity.not_found", id=entity_id)
    return row


@router.get("/entities/{entity_id}")
def get_entity(
    entity_id: str,
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: AcceptGeo,
    attrs: str | None = None,
    pick: str | None = None,
    omit: str | None = None,
    options: str | None = None,
    format: str | None = None,
    lang: str | None = None,
    geometryProperty: str | None = None,  # noqa: N803 - NGSI-LD parameter
) -> Response:
    """Return one entity (pick/omit project its members; GeoJSON Feature on request)."""
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session)
    opts = Options.parse(options, format)
    projection = Projection.parse(ctx, pick, omit)
    row = _get_entity_or_404(session, tenant, entity_id, principal)
    names = [ctx.expand(a) for a in _list(attrs) or []] or None
    found = service.get_attribute_rows(session=session, entity_pks=[row.pk], names=names)
    data = render_entity(row, found.get(row.pk, []), ctx, opts, lang=lang)
    if media == GEO_JSON:
        return respond_geojson(data, ctx, projection, geometryProperty)
    return respond(projection.apply(data), ctx, media)


def _write_one(
    request: Request,
    body: Any,
    entity_id: str,
    principal: Principal,
    session: Session,
    runtime: Runtime,
    mode: str,
    *,
    no_overwrite: bool = False,
) -> flows.BatchOutcome:
    if not isinstance(body, dict):
        raise bad("entity.not_object")
    if not is_uri(entity_id):
        raise bad("entity.bad_id")
    if "id" in body and body["id"] != entity_id:
        raise bad("entity.id_mismatch")
    entity = {**body, "id": entity_id}
    tenant = tenant_name(request, principal)
    if mode in ("replace",) and service.get_tenant(session=session, name=tenant) is None:
        raise ResourceNotFound("context.entity.not_found", id=entity_id)
    outcome = flows.write_entities(
        runtime=runtime,
        session=session,
        tenant=tenant,
        entities=[entity],
        mode=mode,
        context=request.state.ngsi_link,
        scope=principal.scope,
        no_overwrite=no_overwrite,
    )
    _one_entity(outcome, entity_id)
    return outcome


@router.patch("/entities/{entity_id}", status_code=204)
def merge_entity(
    entity_id: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Merge attributes into an entity (urn:ngsi-ld:null deletes one)."""
    _write_one(request, body, entity_id, principal, session, runtime, "merge")
    return Response(status_code=204)


@router.put("/entities/{entity_id}", status_code=204)
def replace_entity(
    entity_id: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Replace every attribute of an existing entity."""
    tenant = service.get_tenant(session=session, name=tenant_name(request, principal))
    _get_entity_or_404(session, tenant, entity_id, principal)
    _write_one(request, body, entity_id, principal, session, runtime, "replace")
    return Response(status_code=204)


@router.delete("/entities/{entity_id}", status_code=204)
def delete_entity(
    entity_id: str, request: Request, principal: Writer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Delete an entity."""
    name = tenant_name(request, principal)
    tenant = service.get_tenant(session=session, name=name)
    _get_entity_or_404(session, tenant, entity_id, principal)
    assert tenant is not None
    rows, _ = service.delete_entities(
        session=session, tenant_id=tenant.id, entity_ids=[entity_id], scope=principal.scope
    )
    flows.publish_deleted(runtime=runtime, session=session, tenant=name, rows=rows)
    return Response(status_code=204)


# --- attributes ------------------------------------------------------------------------------


def _updated_response(
    outcome: flows.BatchOutcome, body: dict[str, Any], entity_id: str
) -> Response:
    failed = outcome.not_updated.get(entity_id, [])
    if not failed:
        return Response(status_code=204)
    updated = [k for k in body if k not in ("id", "type", "@context") and k not in failed]
    return JSONResponse(
        {
            "updated": updated,
            "notUpdated": [
                {"attributeName": name, "reason": "not updated (absent or not overwritten)"}
                for name in failed
            ],
        },
        status_code=207,
    )


@router.post("/entities/{entity_id}/attrs", status_code=204)
@router.post("/entities/{entity_id}/attrs/", status_code=204, include_in_schema=False)
def append_attributes(
    entity_id: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    options: str | None = None,
) -> Response:
    """Append attributes to an entity (options=noOverwrite keeps existing ones)."""
    opts = Options.parse(options)
    outcome = _write_one(
        request,
        body,
        entity_id,
        principal,
        session,
        runtime,
        "append",
        no_overwrite=opts.no_overwrite,
    )
    return _updated_response(outcome, body, entity_id)


@router.patch("/entities/{entity_id}/attrs", status_code=204)
@router.patch("/entities/{entity_id}/attrs/", status_code=204, include_in_schema=False)
def update_attributes(
    entity_id: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Update existing attributes of an entity (207 lists those that do not exist)."""
    outcome = _write_one(request, body, entity_id, principal, session, runtime, "patch")
    return _updated_response(outcome, body, entity_id)


def _attribute_write(
    entity_id: str,
    attr: str,
    request: Request,
    body: Any,
    principal: Principal,
    session: Session,
    runtime: Runtime,
    mode: str,
) -> None:
    if not isinstance(body, dict):
        raise bad("entity.not_object")
    tenant = tenant_name(request, principal)
    if not is_uri(entity_id):
        raise bad("entity.bad_id")
    ctx = request_context(request, runtime, session, body.get("@context"))
    name = ctx.expand(attr)
    dataset = body.get("datasetId", "")
    # One SELECT for the entity and the instance (the hot path of sensor gateways).
    stored = service.get_instance(
        session=session,
        tenant=tenant,
        entity_id=entity_id,
        name=name,
        dataset_id=dataset if isinstance(dataset, str) else "",
    )
    if stored is None or not principal.scope.covers_unit(stored.entity_unit):
        raise ResourceNotFound("context.entity.not_found", id=entity_id)
    if stored.attr_type is None or not isinstance(dataset, str):
        raise ResourceNotFound("context.attribute.not_found", name=attr[:64])
    payload = {k: v for k, v in body.items() if k != "@context"}
    if mode == "patch":
        merged = attribute_body(stored, False)
        merged.update(payload)
        payload = merged
    if not flows.write_attribute(
        runtime=runtime,
        session=session,
        tenant=tenant,
        entity_id=entity_id,
        short=attr,
        payload=payload,
        ctx=ctx,
        stored=stored,
    ):
        _write_one(request, {attr: payload}, entity_id, principal, session, runtime, "patch")


@router.patch("/entities/{entity_id}/attrs/{attr}", status_code=204)
def patch_attribute(
    entity_id: str,
    attr: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Partially update one attribute."""
    _attribute_write(entity_id, attr, request, body, principal, session, runtime, "patch")
    return Response(status_code=204)


@router.put("/entities/{entity_id}/attrs/{attr}", status_code=204)
def replace_attribute(
    entity_id: str,
    attr: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Replace one attribute."""
    _attribute_write(entity_id, attr, request, body, principal, session, runtime, "put")
    return Response(status_code=204)


@router.delete("/entities/{entity_id}/attrs/{attr}", status_code=204)
def delete_attribute(
    entity_id: str,
    attr: str,
    request: Request,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    datasetId: str | None = None,  # noqa: N803 - NGSI-LD parameter
    deleteAll: str | None = None,  # noqa: N803 - NGSI-LD parameter
) -> Response:
    """Delete one attribute instance (or every instance with deleteAll=true)."""
    name = tenant_name(request, principal)
    tenant = service.get_tenant(session=session, name=name)
    row = _get_entity_or_404(session, tenant, entity_id, principal)
    ctx = request_context(request, runtime, session)
    rows = service.delete_attribute(
        session=session,
        entity=row,
        name=ctx.expand(attr),
        dataset_id=datasetId,
        delete_all=deleteAll == "true",
    )
    if not rows:
        raise ResourceNotFound("context.attribute.not_found", name=attr[:64])
    flows.publish_attributes_deleted(
        runtime=runtime, session=session, tenant=name, entity=row, rows=rows
    )
    return Response(status_code=204)


# --- queries ---------------------------------------------------------------------------------


def _query_params(params: dict[str, Any]) -> dict[str, Any]:
    allowed = {
        "type",
        "id",
        "idPattern",
        "attrs",
        "q",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "lang",
        "scopeQ",
        "timerel",
        "timeAt",
        "endTimeAt",
        "lastN",
        "aggrMethods",
        "aggrPeriodDuration",
        "timeproperty",
        "pick",
        "omit",
        "local",
        "details",
        "csf",
        "geometryProperty",
        "kind",
    }
    unknown = set(params) - allowed
    if unknown:
        raise bad("request.unknown_parameter", name=sorted(unknown)[0][:64])
    return params


def _conditions(
    session: Session, ctx: ActiveContext, params: dict[str, Any]
) -> tuple[list[ColumnElement[bool]], query.GeoQuery | None, list[str] | None]:
    types = _list(params.get("type"))
    ids = _list(params.get("id"))
    attrs = _list(params.get("attrs"))
    q_text = params.get("q")
    scope_q = params.get("scopeQ")
    filters = (types, ids, attrs, q_text, scope_q, params.get("georel"), params.get("idPattern"))
    if not any(filters):
        raise bad("query.no_filter")
    conditions: list[ColumnElement[bool]] = []
    dialect = session.get_bind().dialect.name
    if types:
        expanded: list[str] = []
        for t in types:
            expanded.extend(ctx.expand(part) for part in re.split(r"[|;]", t) if part)
        conditions.append(service.entity_filter_types(expanded))
    if ids:
        if not all(is_uri(i) for i in ids):
            raise bad("entity.bad_id")
        conditions.append(service.entity_filter_ids(ids))
    pattern = params.get("idPattern")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise bad("query.bad_pattern") from exc
        service.ensure_regexp(session)
        conditions.append(Entity.entity_id.regexp_match(pattern))
    names = [ctx.expand(a) for a in attrs] if attrs else None
    if names:
        conditions.append(service.entity_filter_has_any(names))
    if q_text:
        tree = query.parse_q(q_text)
        service.ensure_regexp(session)
        conditions.append(query.compile_q(tree, ctx.expand, dialect))
    if scope_q:
        service.ensure_regexp(session)
        conditions.append(query.compile_scope_q(query.parse_scope_q(scope_q), dialect))
    geo = query.parse_geo(
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
        params.get("geoproperty"),
    )
    if geo is not None and ctx.expand(geo.geoproperty) == ctx.expand("location"):
        box = query.prefilter_box(geo)
        if box is not None:
            conditions.append(service.entity_filter_bbox(*box))
    return conditions, geo, names


def _run_query(
    request: Request,
    params: dict[str, Any],
    principal: Principal,
    session: Session,
    runtime: Runtime,
    media: str,
    body_context: Any = None,
) -> Response:
    params = _query_params(params)
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session, body_context)
    opts = Options.parse(params.get("options"), params.get("format"))
    max_limit = runtime.settings.ngsild_max_limit
    limit = _int(params.get("limit"), "limit", min(20, max_limit))
    offset = _int(params.get("offset"), "offset", 0) or 0
    assert limit is not None
    if limit > max_limit:
        raise TooManyResults("context.query.too_many", limit=max_limit)
    count = params.get("count") == "true"
    projection = Projection.parse(ctx, params.get("pick"), params.get("omit"))
    conditions, geo, names = _conditions(session, ctx, params)
    if tenant is None:
        headers = {"NGSILD-Results-Count": "0"} if count else {}
        if media == GEO_JSON:
            return respond_geojson([], ctx, projection, None, headers=headers)
        return respond([], ctx, media, headers=headers)
    rows, total, attrs = _select(
        session, tenant, conditions, geo, ctx, names, principal, limit, offset, count, runtime,
        sys_attrs=opts.sys_attrs,
    )  # fmt: skip
    data = [
        render_entity(row, attrs.get(row.pk, []), ctx, opts, lang=params.get("lang"))
        for row in rows
    ]
    headers = {"NGSILD-Results-Count": str(total)} if count and total is not None else {}
    if media == GEO_JSON:
        return respond_geojson(
            data, ctx, projection, params.get("geometryProperty"), headers=headers
        )
    return respond([projection.apply(item) for item in data], ctx, media, headers=headers)


def _select(
    session: Session,
    tenant: Tenant,
    conditions: list[ColumnElement[bool]],
    geo: query.GeoQuery | None,
    ctx: ActiveContext,
    names: list[str] | None,
    principal: Principal,
    limit: int,
    offset: int,
    count: bool,
    runtime: Runtime,
    *,
    sys_attrs: bool = True,
) -> tuple[list[Any], int | None, dict[int, list[Any]]]:
    """Run a query within the read time limit (400 TooComplexQuery past it)."""
    seconds = runtime.settings.ngsild_query_timeout
    budget: service.QueryBudget | None = None
    try:
        with service.query_time_limit(session=session, seconds=seconds) as budget:
            return _select_rows(
                session, tenant, conditions, geo, ctx, names, principal, limit, offset, count,
                sys_attrs=sys_attrs,
            )  # fmt: skip
    except DBAPIError as exc:
        session.rollback()
        if budget is not None and budget.exceeded:
            raise TooComplexQuery("context.query.too_complex", seconds=f"{seconds:g}") from exc
        # PostgreSQL refuses some regular expressions Python accepts: a client error.
        raise bad("query.bad_pattern") from exc


def _select_rows(
    session: Session,
    tenant: Tenant,
    conditions: list[ColumnElement[bool]],
    geo: query.GeoQuery | None,
    ctx: ActiveContext,
    names: list[str] | None,
    principal: Principal,
    limit: int,
    offset: int,
    count: bool,
    *,
    sys_attrs: bool = True,
) -> tuple[list[Any], int | None, dict[int, list[Any]]]:
    # Plain rows, not ORM objects: the page is only rendered, never changed.
    if geo is None:
        rows, total = service.query_entity_rows(
            session=session,
            tenant_id=tenant.id,
            conditions=conditions,
            scope=principal.scope,
            limit=limit,
            offset=offset,
            count=count,
        )
    else:
        # Box prefilter in SQL, exact geometry check here, then the page.
        candidates, _ = service.query_entity_rows(
            session=session,
            tenant_id=tenant.id,
            conditions=conditions,
            scope=principal.scope,
            limit=None,
            offset=0,
            count=False,
        )
        geo_name = ctx.expand(geo.geoproperty)
        shapes = service.get_attribute_rows(
            session=session,
            entity_pks=[r.pk for r in candidates],
            names=[geo_name],
            sys_attrs=False,
        )
        matched = [
            r
            for r in candidates
            if any(
                a.attr_type == "GeoProperty" and query.matches(geo, a.value)
                for a in shapes.get(r.pk, [])
            )
        ]
        total = len(matched) if count else None
        rows = matched[offset : offset + limit]
    attrs = service.get_attribute_rows(
        session=session, entity_pks=[r.pk for r in rows], names=names, sys_attrs=sys_attrs
    )
    return rows, total, attrs


@router.get("/entities")
@router.get("/entities/", include_in_schema=False)
def query_entities(
    request: Request, principal: Reader, session: SessionDep, runtime: RuntimeDep, media: AcceptGeo
) -> Response:
    """Query entities by type, id, idPattern, attrs, q and geo-query (pick/omit, GeoJSON)."""
    return _run_query(request, dict(request.query_params), principal, session, runtime, media)


@router.post("/entityOperations/query")
@router.post("/entityOperations/query/", include_in_schema=False)
def post_query(
    request: Request,
    body: Body,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
) -> Response:
    """Query entities with a Query body (entities, attrs, q, geoQ)."""
    params = _body_params(body)
    params.update(
        {
            k: v
            for k, v in request.query_params.items()
            if k in ("limit", "offset", "count", "options", "format", "lang", "pick", "omit")
        }
    )
    return _run_query(request, params, principal, session, runtime, media, body.get("@context"))


def _body_params(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise bad("query.bad_body")
    params: dict[str, Any] = {}
    entities = body.get("entities")
    if entities is not None:
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            raise bad("query.bad_body")
        types = [e.get("type") for e in entities if e.get("type")]
        ids = [e.get("id") for e in entities if e.get("id")]
        patterns = [e.get("idPattern") for e in entities if e.get("idPattern")]
        if not all(isinstance(x, str) for x in [*types, *ids, *patterns]):
            raise bad("query.bad_body")
        if types:
            params["type"] = ",".join(types)
        if ids:
            params["id"] = ",".join(ids)
        if patterns:
            params["idPattern"] = "|".join(f"(?:{p})" for p in patterns)
    for key in ("attrs", "q", "scopeQ", "lang"):
        value = body.get(key)
        if value is not None:
            if (
                key == "attrs"
                and isinstance(value, list)
                and all(isinstance(v, str) for v in value)
            ):
                value = ",".join(value)
            if not isinstance(value, str):
                raise bad("query.bad_body")
            params[key] = value
    geo = body.get("geoQ")
    if geo is not None:
        if not isinstance(geo, dict):
            raise bad("query.bad_body")
        for key in ("georel", "geometry", "geoproperty"):
            if key in geo:
                if not isinstance(geo[key], str):
                    raise bad("query.bad_body")
                params[key] = geo[key]
        if "coordinates" in geo:
            params["coordinates"] = geo["coordinates"]
    for key in ("timerel", "timeAt", "endTimeAt", "timeproperty"):
        temporal = body.get("temporalQ") or {}
        if isinstance(temporal, dict) and isinstance(temporal.get(key), str):
            params[key] = temporal[key]
    return params


# --- batch -----------------------------------------------------------------------------------


def _batch(
    request: Request,
    body: Any,
    principal: Principal,
    session: Session,
    runtime: Runtime,
    mode: str,
    options: str | None,
) -> Response:
    if not isinstance(body, list):
        raise bad("batch.not_list")
    if not body:
        raise bad("batch.empty")
    if len(body) > MAX_BATCH:
        raise bad("batch.too_many", limit=MAX_BATCH)
    opts = Options.parse(options)
    if mode == "upsert" and opts.replace:
        mode = "replace"
    tenant = tenant_name(request, principal)
    outcome = flows.write_entities(
        runtime=runtime,
        session=session,
        tenant=tenant,
        entities=body,
        mode=mode,
        context=request.state.ngsi_link,
        scope=principal.scope,
        no_overwrite=opts.no_overwrite,
    )
    if not outcome.errors:
        if mode == "create":
            return JSONResponse(outcome.success, status_code=201)
        return Response(status_code=204)
    return JSONResponse({"success": outcome.success, "errors": outcome.errors}, status_code=207)


@router.post("/entityOperations/create")
@router.post("/entityOperations/create/", include_in_schema=False)
def batch_create(
    request: Request, body: Body, principal: Writer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Create up to 1,000 entities (201, or 207 with errors)."""
    return _batch(request, body, principal, session, runtime, "create", None)


@router.post("/entityOperations/upsert")
@router.post("/entityOperations/upsert/", include_in_schema=False)
def batch_upsert(
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    options: str | None = None,
) -> Response:
    """Create or update up to 1,000 entities (options=update merges, replace replaces)."""
    return _batch(request, body, principal, session, runtime, "upsert", options)


@router.post("/entityOperations/update")
@router.post("/entityOperations/update/", include_in_schema=False)
def batch_update(
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    options: str | None = None,
) -> Response:
    """Update attributes of up to 1,000 existing entities."""
    return _batch(request, body, principal, session, runtime, "update", options)


@router.post("/entityOperations/merge")
@router.post("/entityOperations/merge/", include_in_schema=False)
def batch_merge(
    request: Request, body: Body, principal: Writer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Merge attributes into up to 1,000 existing entities."""
    return _batch(request, body, principal, session, runtime, "merge", None)


@router.post("/entityOperations/delete")
@router.post("/entityOperations/delete/", include_in_schema=False)
def batch_delete(
    request: Request, body: Body, principal: Writer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Delete up to 1,000 entities by id."""
    if not isinstance(body, list) or not body or len(body) > MAX_BATCH:
        raise bad("batch.not_list")
    name = tenant_name(request, principal)
    tenant = service.get_tenant(session=session, name=name)
    valid = [i for i in body if is_uri(i)]
    errors = [
        BadRequestData().to_batch_error(i if isinstance(i, str) else None, "not a valid URI")
        for i in body
        if not is_uri(i)
    ]
    rows: list[Entity] = []
    missing = valid
    if tenant is not None and valid:
        rows, missing = service.delete_entities(
            session=session, tenant_id=tenant.id, entity_ids=valid, scope=principal.scope
        )
    errors += [ResourceNotFound().to_batch_error(i, "not found") for i in missing]
    flows.publish_deleted(runtime=runtime, session=session, tenant=name, rows=rows)
    if not errors:
        return Response(status_code=204)
    return JSONResponse({"success": [r.entity_id for r in rows], "errors": errors}, status_code=207)


# --- temporal --------------------------------------------------------------------------------


def _time_window(params: dict[str, Any]) -> tuple[int | None, int | None]:
    timerel = params.get("timerel")
    if timerel is None:
        if params.get("timeAt") or params.get("endTimeAt"):
            raise bad("temporal.bad_timerel")
        return None, None
    if timerel not in ("before", "after", "between"):
        raise bad("temporal.bad_timerel")
    if not params.get("timeAt"):
        raise bad("temporal.bad_timerel")
    start = ms_of(parse_datetime(params["timeAt"], "timeAt"))
    if timerel == "before":
        return None, start
    if timerel == "after":
        return start, None
    if not params.get("endTimeAt"):
        raise bad("temporal.bad_timerel")
    end = ms_of(parse_datetime(params["endTimeAt"], "endTimeAt"))
    if end <= start:
        raise bad("temporal.bad_timerel")
    return start, end


def _iso_ms(ms: int) -> str:
    from datetime import UTC, datetime

    return iso(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _temporal(
    request: Request,
    params: dict[str, Any],
    principal: Principal,
    session: Session,
    runtime: Runtime,
    media: str,
    entity_id: str | None = None,
    body_context: Any = None,
) -> Response:
    params = _query_params(params)
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session, body_context)
    opts = Options.parse(params.get("options"), params.get("format"))
    start, end = _time_window(params)
    last_n = _int(params.get("lastN"), "lastN", None, minimum=1)
    methods = _list(params.get("aggrMethods"))
    if methods and not set(methods) <= set(AGGREGATIONS):
        raise bad("temporal.bad_aggregation")
    raw_period = params.get("aggrPeriodDuration")
    period = parse_duration(raw_period) if raw_period else None
    if entity_id is not None:
        row = _get_entity_or_404(session, tenant, entity_id, principal)
        rows = [row]
        names = [ctx.expand(a) for a in _list(params.get("attrs")) or []] or None
    else:
        if tenant is None:
            return respond([], ctx, media)
        max_limit = runtime.settings.ngsild_max_limit
        limit = _int(params.get("limit"), "limit", min(20, max_limit)) or 0
        if limit > max_limit:
            raise TooManyResults("context.query.too_many", limit=max_limit)
        offset = _int(params.get("offset"), "offset", 0) or 0
        conditions, geo, names = _conditions(session, ctx, params)
        rows, _, _ = _select(
            session, tenant, conditions, geo, ctx, None, principal, limit, offset, False, runtime
        )
    pks = [r.pk for r in rows]
    current = service.get_attribute_rows(session=session, entity_pks=pks, names=names)
    kinds = {(a.entity_pk, a.name): a.attr_type for attrs in current.values() for a in attrs}
    out: dict[int, dict[str, Any]] = {
        r.pk: {"id": r.entity_id, "type": ctx.compact(r.type)} for r in rows
    }
    headers: dict[str, str] = {}
    if methods:
        origin = start
        if origin is None:
            first = service.get_first_observation_ms(session=session, entity_pks=pks, names=names)
            origin = first or 0
        boundaries = None
        if period is not None and period.months:
            boundaries = _calendar_boundaries(session, pks, names, origin, end, period)
            step = 0
        else:
            step = period.ms if period else max(1, (end or ms_of(runtime.clock.now()) + 1) - origin)
        for item in service.aggregate_history(
            session=session,
            entity_pks=pks,
            names=names,
            start_ms=start,
            end_ms=end,
            origin_ms=origin,
            period_ms=step,
            methods=methods,
            boundaries=boundaries,
        ):
            index = int(item.bucket)
            if boundaries is not None:
                span = [_iso_ms(boundaries[index]), _iso_ms(boundaries[index + 1])]
            else:
                span = [_iso_ms(origin + index * step), _iso_ms(origin + (index + 1) * step)]
            values = _aggregates(item)
            attr = out[item.entity_pk].setdefault(
                ctx.compact(item.name), {"type": kinds.get((item.entity_pk, item.name), "Property")}
            )
            for method in methods:
                attr.setdefault(method, []).append([values[method], *span])
    else:
        instances = service.get_history(
            session=session,
            entity_pks=pks,
            names=names,
            start_ms=start,
            end_ms=end,
            last_n=last_n,
            limit=TEMPORAL_LIMIT + 1,
        )
        if len(instances) > TEMPORAL_LIMIT:
            instances = instances[:TEMPORAL_LIMIT]
            headers["Content-Range"] = (
                f"date-time {_iso_ms(instances[0].observed_ms)}-"
                f"{_iso_ms(instances[-1].observed_ms)}/*"
            )
        for item in instances:
            kind = kinds.get((item.entity_pk, item.name), "Property")
            name = ctx.compact(item.name)
            member = VALUE_MEMBER.get(kind, "value")
            if opts.temporal_values:
                attr = out[item.entity_pk].setdefault(
                    name, {"type": kind, "values" if member != "object" else "objects": []}
                )
                attr["values" if member != "object" else "objects"].append(
                    [item.value, _iso_ms(item.observed_ms)]
                )
                continue
            instance: dict[str, Any] = {
                "type": kind,
                member: item.value,
                "observedAt": _iso_ms(item.observed_ms),
            }
            if item.unit_code:
                instance["unitCode"] = item.unit_code
            if item.dataset_id:
                instance["datasetId"] = item.dataset_id
            instance["instanceId"] = f"urn:ngsi-ld:instance:{item.id}"
            out[item.entity_pk].setdefault(name, []).append(instance)
    status = 206 if "Content-Range" in headers else 200
    data = [out[r.pk] for r in rows]
    if entity_id is not None:
        return respond(data[0], ctx, media, status=status, headers=headers)
    return respond(data, ctx, media, status=status, headers=headers)


# Most calendar periods one aggregation answers (a century of months).
MAX_PERIODS = 1200


def _calendar_boundaries(
    session: Session,
    pks: list[int],
    names: list[str] | None,
    origin: int,
    end: int | None,
    period: Period,
) -> list[int]:
    """Return the starts of the calendar periods from `origin` past the last instance asked for."""
    if end is None:
        last = service.get_last_observation_ms(session=session, entity_pks=pks, names=names)
        end = (last if last is not None else origin) + 1
    boundaries = [origin]
    while boundaries[-1] < end:
        if len(boundaries) > MAX_PERIODS:
            raise bad("temporal.too_many_periods", limit=MAX_PERIODS)
        boundaries.append(period.boundary(origin, len(boundaries)))
    if len(boundaries) == 1:
        boundaries.append(period.boundary(origin, 1))
    return boundaries


def _aggregates(item: Any) -> dict[str, Any]:
    count = int(item.numeric or 0)
    total = float(item.sum) if item.sum is not None else None
    avg = total / count if total is not None and count else None
    sumsq = float(item.sumsq) if item.sumsq is not None else None
    stddev = None
    if avg is not None and sumsq is not None:
        stddev = math.sqrt(max(sumsq / count - avg * avg, 0.0))
    return {
        "totalCount": None if item.total is None else int(item.total),
        "distinctCount": None if item.distinct_num is None else int(item.distinct_num),
        "sum": total,
        "avg": avg,
        "min": item.min,
        "max": item.max,
        "stddev": stddev,
        "sumsq": sumsq,
    }


@router.get("/temporal/entities")
@router.get("/temporal/entities/", include_in_schema=False)
def temporal_query(
    request: Request, principal: Reader, session: SessionDep, runtime: RuntimeDep, media: Accept
) -> Response:
    """Query the temporal evolution of entities."""
    return _temporal(request, dict(request.query_params), principal, session, runtime, media)


@router.get("/temporal/entities/{entity_id}")
def temporal_entity(
    entity_id: str,
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
) -> Response:
    """Return the temporal evolution of one entity (lastN, timerel, aggregation)."""
    return _temporal(
        request, dict(request.query_params), principal, session, runtime, media, entity_id
    )


@router.post("/temporal/entityOperations/query")
@router.post("/temporal/entityOperations/query/", include_in_schema=False)
def temporal_post_query(
    request: Request,
    body: Body,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
) -> Response:
    """Query temporal evolution with a Query body."""
    params = _body_params(body)
    params.update(dict(request.query_params))
    return _temporal(
        request, params, principal, session, runtime, media, None, body.get("@context")
    )


@router.post("/temporal/entities/{entity_id}/attrs", status_code=204)
def temporal_add(
    entity_id: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Add attribute instances to an entity's history."""
    if not isinstance(body, dict):
        raise bad("entity.not_object")
    tenant = service.get_tenant(session=session, name=tenant_name(request, principal))
    row = _get_entity_or_404(session, tenant, entity_id, principal)
    ctx = request_context(request, runtime, session, body.get("@context"))
    rows: list[dict[str, Any]] = []
    attrs: list[AttributeIn] = []
    now = runtime.clock.now()
    for key, value in body.items():
        if key in ("id", "type", "@context"):
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            for attr in parse_attribute(key, item, ctx):
                attrs.append(attr)
                rows.append(
                    {
                        "entity_pk": row.pk,
                        "name": attr.name,
                        "dataset_id": attr.dataset_id,
                        "observed_ms": ms_of(attr.observed_at or now),
                        "value_num": attr.value_num,
                        "value": attr.value,
                        "unit_code": attr.unit_code,
                    }
                )
    if not rows:
        raise bad("entity.no_attributes")
    _check_instances(row, attrs)
    service.append_history(session=session, rows=rows)
    return Response(status_code=204)


def _by_time(instance: Any) -> float:
    observed = instance.get("observedAt") if isinstance(instance, dict) else None
    try:
        return parse_datetime(observed).timestamp() if observed is not None else math.inf
    except NgsiLdError:
        return math.inf


def temporal_rounds(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a temporal entity into entity fragments, the k-th instance of each attribute in
    the k-th (oldest first), so the write pipeline appends each to history in time order."""
    head = {k: body[k] for k in ("id", "type", "@context") if k in body}
    members = {k: v for k, v in body.items() if k not in ("id", "type", "@context", "scope")}
    series = {
        name: sorted(value if isinstance(value, list) else [value], key=_by_time)
        for name, value in members.items()
    }
    depth = max((len(items) for items in series.values()), default=0)
    rounds = [
        {**head, **{name: items[k] for name, items in series.items() if k < len(items)}}
        for k in range(max(depth, 1))
    ]
    if "scope" in body:
        rounds[0]["scope"] = body["scope"]
    return rounds


@router.post("/temporal/entities", status_code=201)
@router.post("/temporal/entities/", status_code=201, include_in_schema=False)
def temporal_create(
    request: Request, body: Body, principal: Writer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Create an entity's temporal representation (201), or add instances to it (204)."""
    if not isinstance(body, dict):
        raise bad("entity.not_object")
    entity_id = body.get("id")
    if not is_uri(entity_id):
        raise bad("entity.bad_id")
    assert isinstance(entity_id, str)
    tenant = tenant_name(request, principal)
    tenant_row = service.get_tenant(session=session, name=tenant)
    exists = tenant_row is not None and (
        service.get_entity(session=session, tenant_id=tenant_row.id, entity_id=entity_id)
        is not None
    )
    if exists and not set(body) - {"id", "type", "@context", "scope"}:
        raise bad("entity.no_attributes")
    rounds = temporal_rounds(body)
    # A new entity is created from the oldest instances (its model's required members are
    # checked); the later ones update it, each appended to history through the one pipeline.
    steps = [("update", rounds)] if exists else [("create", rounds[:1]), ("update", rounds[1:])]
    for mode, fragments in steps:
        if not fragments:
            continue
        outcome = flows.write_entities(
            runtime=runtime,
            session=session,
            tenant=tenant,
            entities=fragments,
            mode=mode,
            context=request.state.ngsi_link,
            scope=principal.scope,
        )
        _one_entity(outcome, entity_id)
    if exists:
        return Response(status_code=204)
    return Response(
        status_code=201, headers={"Location": f"/ngsi-ld/v1/temporal/entities/{entity_id}"}
    )


INSTANCE_ID = re.compile(r"urn:ngsi-ld:instance:(\d{1,18})")


def _history_instance(
    request: Request,
    entity_id: str,
    attr: str,
    instance_id: str,
    principal: Principal,
    session: Session,
    runtime: Runtime,
) -> tuple[Entity, Any, ActiveContext]:
    tenant = service.get_tenant(session=session, name=tenant_name(request, principal))
    row = _get_entity_or_404(session, tenant, entity_id, principal)
    match = INSTANCE_ID.fullmatch(instance_id)
    if match is None:
        raise bad("temporal.bad_instance", instance=instance_id[:100])
    ctx = request_context(request, runtime, session)
    instance = service.get_history_instance(
        session=session, entity_pk=row.pk, name=ctx.expand(attr), instance_id=int(match.group(1))
    )
    if instance is None:
        raise ResourceNotFound(
            "context.temporal.instance_not_found", name=attr[:64], instance=instance_id[:100]
        )
    return row, instance, ctx


@router.patch("/temporal/entities/{entity_id}/attrs/{attr}/{instance_id}", status_code=204)
def temporal_patch_instance(
    entity_id: str,
    attr: str,
    instance_id: str,
    request: Request,
    body: Body,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Change one attribute instance of an entity's history (its value, unit or time)."""
    if not isinstance(body, dict):
        raise bad("entity.not_object")
    row, instance, _ = _history_instance(
        request, entity_id, attr, instance_id, principal, session, runtime
    )
    ctx = request_context(request, runtime, session, body.get("@context"))
    fragment = {k: v for k, v in body.items() if k not in ("@context", "instanceId", "datasetId")}
    if not set(fragment) & set(VALUE_MEMBER.values()):
        raise bad("entity.missing_member", name=attr[:64], member="value")
    (changed,) = parse_attribute(attr, fragment, ctx)
    _check_instances(row, [changed])
    service.update_history_instance(session=session, instance=instance, attr=changed)
    return Response(status_code=204)


@router.delete("/temporal/entities/{entity_id}/attrs/{attr}/{instance_id}", status_code=204)
def temporal_delete_instance(
    entity_id: str,
    attr: str,
    instance_id: str,
    request: Request,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Delete one attribute instance from an entity's history."""
    _, instance, _ = _history_instance(
        request, entity_id, attr, instance_id, principal, session, runtime
    )
    service.delete_history_instance(session=session, instance=instance)
    return Response(status_code=204)


def _check_instances(row: Entity, attrs: list[AttributeIn]) -> None:
    """Refuse attribute instances that do not fit the entity's data model (before writing)."""
    error = datamodels.check(
        EntityIn(id=row.entity_id, type=row.type, attrs=attrs), row.type, False
    )
    if error is not None:
        raise error


# --- discovery -------------------------------------------------------------------------------


@router.get("/types")
@router.get("/types/", include_in_schema=False)
def get_types(
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
    details: str | None = None,
) -> Response:
    """List the entity types (details=true: with their attribute names)."""
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session)
    types = (
        service.get_types(session=session, tenant_id=tenant.id, scope=principal.scope)
        if tenant
        else []
    )
    if details == "true":
        summary = (
            service.get_attribute_summary(
                session=session, tenant_id=tenant.id, scope=principal.scope
            )
            if tenant
            else []
        )
        names: dict[str, set[str]] = defaultdict(set)
        for name, _, entity_type, _ in summary:
            names[entity_type].add(ctx.compact(name))
        data: Any = [
            {
                "id": t,
                "type": "EntityType",
                "typeName": ctx.compact(t),
                "attributeNames": sorted(names[t]),
            }
            for t, _ in types
        ]
    else:
        data = {
            "id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}",
            "type": "EntityTypeList",
            "typeList": [ctx.compact(t) for t, _ in types],
        }
    return respond(data, ctx, media)


@router.get("/types/{entity_type}")
def get_type(
    entity_type: str,
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
) -> Response:
    """Describe one entity type: entity count and attributes."""
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session)
    expanded = ctx.expand(entity_type)
    types = (
        dict(service.get_types(session=session, tenant_id=tenant.id, scope=principal.scope))
        if tenant
        else {}
    )
    if expanded not in types:
        raise ResourceNotFound("context.type.not_found", type=entity_type[:64])
    assert tenant is not None
    summary = service.get_attribute_summary(
        session=session, tenant_id=tenant.id, scope=principal.scope, entity_type=expanded
    )
    kinds: dict[str, set[str]] = defaultdict(set)
    for name, kind, _, _ in summary:
        kinds[name].add(kind)
    data = {
        "id": expanded,
        "type": "EntityTypeInfo",
        "typeName": ctx.compact(expanded),
        "entityCount": types[expanded],
        "attributeDetails": [
            {
                "id": name,
                "type": "Attribute",
                "attributeName": ctx.compact(name),
                "attributeTypes": sorted(kinds[name]),
            }
            for name in sorted(kinds)
        ],
    }
    return respond(data, ctx, media)


@router.get("/attributes")
@router.get("/attributes/", include_in_schema=False)
def get_attribute_list(
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
    details: str | None = None,
) -> Response:
    """List the attribute names in use (details=true: with counts and types)."""
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session)
    summary = (
        service.get_attribute_summary(session=session, tenant_id=tenant.id, scope=principal.scope)
        if tenant
        else []
    )
    names = sorted({row[0] for row in summary})
    if details == "true":
        data: Any = [_attribute_info(ctx, name, summary) for name in names]
    else:
        data = {
            "id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}",
            "type": "AttributeList",
            "attributeList": [ctx.compact(n) for n in names],
        }
    return respond(data, ctx, media)


def _attribute_info(
    ctx: ActiveContext, name: str, summary: list[tuple[str, str, str, int]]
) -> dict[str, Any]:
    rows = [row for row in summary if row[0] == name]
    return {
        "id": name,
        "type": "Attribute",
        "attributeName": ctx.compact(name),
        "attributeCount": sum(row[3] for row in rows),
        "attributeTypes": sorted({row[1] for row in rows}),
        "typeNames": sorted({ctx.compact(row[2]) for row in rows}),
    }


@router.get("/attributes/{attr}")
def get_attribute_info(
    attr: str,
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
) -> Response:
    """Describe one attribute: how many entities hold it, its types and entity types."""
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session)
    name = ctx.expand(attr)
    summary = (
        service.get_attribute_summary(
            session=session, tenant_id=tenant.id, scope=principal.scope, name=name
        )
        if tenant
        else []
    )
    if not summary:
        raise ResourceNotFound("context.attribute.not_found", name=attr[:64])
    return respond(_attribute_info(ctx, name, summary), ctx, media)


# --- JSON-LD contexts ------------------------------------------------------------------------


@router.get("/jsonldContexts")
@router.get("/jsonldContexts/", include_in_schema=False)
def list_contexts(
    principal: Reader, session: SessionDep, details: str | None = None, kind: str | None = None
) -> Response:
    """List the contexts the broker holds (details=true: with local ids and kinds)."""
    if kind is not None and kind not in ("hosted", "cached", "preloaded"):
        raise bad("ld.bad_kind")
    rows = service.get_all_ldcontexts(session=session, kind=kind)
    if details == "true":
        data: Any = [
            {
                "URL": r.url,
                "localId": f"urn:ngsi-ld:{r.id}",
                "kind": r.kind.capitalize(),
                "createdAt": iso(r.created_at),
            }
            for r in rows
        ]
        data.insert(
            0, {"URL": CORE_URL, "localId": "urn:ngsi-ld:core", "kind": "ImplicitlyCreated"}
        )
    else:
        data = [CORE_URL, *[r.url for r in rows]]
    return JSONResponse(data)


@router.post("/jsonldContexts", status_code=201)
@router.post("/jsonldContexts/", status_code=201, include_in_schema=False)
def add_context(
    request: Request, body: Document, principal: Writer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Host a context document; answer its URL in Location."""
    if not isinstance(body, dict) or not isinstance(body.get("@context"), dict | list | str):
        raise bad("ld.no_context", url="-")
    from cityops.context.ldcontext import build

    build(
        body["@context"], lambda url: flows.load_document(runtime=runtime, session=session, url=url)
    )
    local_id = uuid.uuid4().hex
    url = str(request.base_url).rstrip("/") + flows.HOSTED_PATH + local_id
    service.create_ldcontext(
        session=session,
        url=url,
        document=body,
        kind="hosted",
        now=runtime.clock.now(),
        local_id=local_id,
    )
    return Response(status_code=201, headers={"Location": flows.HOSTED_PATH + local_id})


def _context_row(session: Session, context_id: str) -> Any:
    local = context_id.removeprefix("urn:ngsi-ld:")
    row = service.get_ldcontext(session=session, local_id=local)
    if row is None:
        row = service.get_ldcontext(session=session, url=context_id)
    if row is None:
        raise ResourceNotFound("context.ld.not_found", id=context_id[:100])
    return row


@router.get("/jsonldContexts/{context_id:path}")
def get_context(context_id: str, principal: Reader, session: SessionDep) -> Response:
    """Serve a context the broker holds (the core context by its URL too)."""
    if context_id in (CORE_URL, "urn:ngsi-ld:core") or context_id.startswith(
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context"
    ):
        from cityops.context.ldcontext import core_document

        return JSONResponse(core_document(), media_type=JSON_LD)
    row = _context_row(session, context_id)
    return JSONResponse(row.document, media_type=JSON_LD)


@router.delete("/jsonldContexts/{context_id:path}", status_code=204)
def delete_context(
    context_id: str,
    principal: Writer,
    session: SessionDep,
    runtime: RuntimeDep,
    reload: str | None = None,
) -> Response:
    """Delete a hosted or cached context (reload=true refetches a cached one next time)."""
    if context_id.startswith("https://uri.etsi.org/ngsi-ld/") or context_id == "urn:ngsi-ld:core":
        raise bad("ld.core_protected")
    row = _context_row(session, context_id)
    service.delete_ldcontext(session=session, row=row)
    flows.forget_contexts(runtime)
    return Response(status_code=204)


# --- subscriptions ---------------------------------------------------------------------------


def _subscription_or_404(
    session: Session, tenant: str, subscription_id: str, principal: Principal
) -> Subscription:
    row = subscriptions.get(
        session=session, tenant=tenant, subscription_id=subscription_id, scope=principal.scope
    )
    if row is None:
        raise ResourceNotFound("context.subscription.not_found", id=subscription_id[:200])
    return row


def _check_context(runtime: Runtime, session: Session, document: dict[str, Any]) -> None:
    # A jsonldContext the broker cannot load is refused now (503), not at notification time.
    url = document.get("jsonldContext")
    if url:
        flows.resolve_context(runtime=runtime, session=session, value=url)


@router.post("/subscriptions", status_code=201)
@router.post("/subscriptions/", status_code=201, include_in_schema=False)
def create_subscription(
    request: Request, body: Body, principal: Reader, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Create a subscription (201 with Location; 409 if its id is taken)."""
    if not isinstance(body, dict):
        raise bad("subscription.not_object")
    tenant = tenant_name(request, principal)
    ctx = request_context(request, runtime, session, body.get("@context"))
    now = runtime.clock.now()
    document = subscriptions.parse(body, ctx=ctx, now=now)
    _check_context(runtime, session, document)
    service.get_or_create_tenant(session=session, name=tenant, now=now)
    row = subscriptions.create(
        session=session,
        tenant=tenant,
        document=document,
        context=ctx.source,
        owner=principal,
        now=now,
    )
    subscriptions.forget(runtime, tenant, session)
    return Response(
        status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{row.subscription_id}"}
    )


@router.get("/subscriptions")
@router.get("/subscriptions/", include_in_schema=False)
def list_subscriptions(
    request: Request, principal: Reader, session: SessionDep, runtime: RuntimeDep, media: Accept
) -> Response:
    """List the subscriptions the caller may see (limit, offset, count; Link to the next page)."""
    params = dict(request.query_params)
    unknown = set(params) - {"limit", "offset", "count"}
    if unknown:
        raise bad("request.unknown_parameter", name=sorted(unknown)[0][:64])
    tenant = read_tenant(request, session, principal)
    ctx = request_context(request, runtime, session)
    max_limit = runtime.settings.ngsild_max_limit
    limit = _int(params.get("limit"), "limit", min(20, max_limit))
    offset = _int(params.get("offset"), "offset", 0) or 0
    assert limit is not None
    if limit > max_limit:
        raise TooManyResults("context.query.too_many", limit=max_limit)
    if offset > 1_000_000:
        raise bad("request.bad_integer", name="offset")
    rows: list[Subscription] = []
    total = 0
    if tenant is not None:
        rows, total = subscriptions.get_all(
            session=session,
            tenant=tenant.name,
            scope=principal.scope,
            limit=limit,
            offset=offset,
        )
    now = runtime.clock.now()
    headers: dict[str, str] = {}
    if params.get("count") == "true":
        headers["NGSILD-Results-Count"] = str(total)
    links = []
    if limit and offset + limit < total:
        links.append(
            f'</ngsi-ld/v1/subscriptions?limit={limit}&offset={offset + limit}>; rel="next"'
        )
    if limit and offset > 0:
        previous = max(0, offset - limit)
        links.append(f'</ngsi-ld/v1/subscriptions?limit={limit}&offset={previous}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    data = [subscriptions.render(row, ctx, now) for row in rows]
    return respond(data, ctx, media, headers=headers)


@router.get("/subscriptions/{subscription_id}")
def get_subscription(
    subscription_id: str,
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    media: Accept,
) -> Response:
    """Return one subscription with its status and notification status fields."""
    tenant = tenant_name(request, principal)
    ctx = request_context(request, runtime, session)
    row = _subscription_or_404(session, tenant, subscription_id, principal)
    return respond(subscriptions.render(row, ctx, runtime.clock.now()), ctx, media)


@router.patch("/subscriptions/{subscription_id}", status_code=204)
def update_subscription(
    subscription_id: str,
    request: Request,
    body: Body,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Merge a fragment into a subscription (notification merges member by member)."""
    if not isinstance(body, dict):
        raise bad("subscription.not_object")
    tenant = tenant_name(request, principal)
    row = _subscription_or_404(session, tenant, subscription_id, principal)
    if "id" in body and body["id"] != subscription_id:
        raise bad("subscription.id_mismatch")
    ctx = request_context(request, runtime, session, body.get("@context"))
    now = runtime.clock.now()
    fragment = subscriptions.parse(body, ctx=ctx, now=now, partial=True)
    _check_context(runtime, session, fragment)
    subscriptions.update(session=session, row=row, fragment=fragment, now=now)
    subscriptions.forget(runtime, tenant, session)
    return Response(status_code=204)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(
    subscription_id: str,
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Delete a subscription."""
    tenant = tenant_name(request, principal)
    row = _subscription_or_404(session, tenant, subscription_id, principal)
    subscriptions.delete(session=session, row=row)
    subscriptions.forget(runtime, tenant, session)
    return Response(status_code=204)


# --- data models (platform API) ---------------------------------------------------------------
# Read-only and public: the schemas are CityOps's statement of what it accepts, for integrators.

platform_router = APIRouter(prefix="/datamodels", tags=["data models"])
DataModelType = Annotated[str, FastApiPath(pattern=r"^[A-Za-z][A-Za-z0-9]{0,63}$")]


def _data_model_summary(entity_type: str) -> DataModelRead:
    found = datamodels.schema(entity_type) or {}
    return DataModelRead(
        type=entity_type,
        title=str(found.get("title", entity_type)),
        description=str(found.get("description", "")),
        required=[str(name) for name in found.get("required", [])],
        schema_url=f"/api/v1/datamodels/{entity_type}",
    )


@platform_router.get("", response_model=DataModelList, summary="Entity types validated on write")
def list_data_models() -> DataModelList:
    """List the entity types whose writes are checked against a Smart Data Models schema."""
    return DataModelList(items=[_data_model_summary(t) for t in datamodels.types()])


@platform_router.get(
    "/{entity_type}",
    summary="The JSON Schema of one entity type",
    responses={
        200: {
            "description": "A JSON Schema (draft 2020-12) of attribute values (keyValues form).",
            "content": {SCHEMA_JSON: {"schema": {"type": "object"}}},
        },
        404: {"description": "No schema for this type."},
    },
)
def get_data_model(entity_type: DataModelType) -> Response:
    """Return the merged, self-contained JSON Schema CityOps validates a type against."""
    found = datamodels.schema(entity_type)
    if found is None:
        raise NotFound("context.datamodel.not_found", type=entity_type)
    return JSONResponse(found, media_type=SCHEMA_JSON)


__all__ = ["AlreadyExists", "NgsiLdError", "platform_router", "render_error", "router"]
