"""Open311 GeoReport v2 at /open311/v2: discovery, services, service definitions, requests and
tokens, each as `.xml` (mandatory in the spec) and `.json` (a mechanical mapping: bare arrays).

Errors use the Open311 shape (a list of `{code, description}`) with 400, 403 or 404: the app's
error handlers call `render_error` for every path under /open311/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from cityops.citizen import flows, service
from cityops.citizen.enums import ReportStatus
from cityops.citizen.models import CitizenService
from cityops.citizen.writer import writer_of
from cityops.core.deps import RuntimeDep, SessionDep
from cityops.core.errors import Invalid, NotFound, request_language
from cityops.core.runtime import Runtime
from cityops.units import service as unit_service

PREFIX = "/open311/v2"
router = APIRouter(prefix=PREFIX, tags=["Open311"])

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-27T00:00:00+07:00"
FORMATS = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
MAX_RANGE = timedelta(days=90)
MAX_PAGE_SIZE = 1000
# Element names of a list's items in XML (the JSON mapping drops them).
_ITEM = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
    "values": "value",
    "notes": "note",
}
# Open311 arguments are short; the bounds keep a whole query string within what HTTP clients
# send (a few tens of kilobytes) even when every argument is at its longest.
Opt = Annotated[str | None, Query(max_length=300)]
# A comma-separated list of tracking codes (`PA-XXXX-XXXX`).
RequestIds = Annotated[str | None, Query(max_length=4000, pattern=r"^[A-Za-z0-9, -]*$")]


# --- rendering -------------------------------------------------------------------------------


def _xml_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _xml(name: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append(f"<{name}>")
        for key, item in value.items():
            if item is not None:
                _xml(key, item, out)
        out.append(f"</{name}>")
    elif isinstance(value, list):
        out.append(f"<{name}>")
        for item in value:
            _xml(_ITEM.get(name, "item"), item, out)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_xml_value(value)}</{name}>")


def to_xml(root: str, value: Any) -> bytes:
    """Serialise a document as Open311 XML (no namespace, UTF-8 declaration first)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>']
    _xml(root, value, out)
    return "".join(out).encode("utf-8")


def to_json(value: Any) -> bytes:
    """Serialise a document as JSON (no null members: absent fields are left out)."""

    def strip(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items() if v is not None}
        if isinstance(item, list):
            return [strip(v) for v in item]
        return item

    return json.dumps(strip(value), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def respond(fmt: str, root: str, value: Any, status: int = 200) -> Response:
    """Render a document in the requested format."""
    if fmt == "xml":
        # A bare list in XML sits inside the root element; a document is the root itself.
        return Response(to_xml(root, value), status_code=status, media_type=FORMATS["xml"])
    return Response(to_json(value), status_code=status, media_type=FORMATS["json"])


def _xml_items(root: str, items: list[dict[str, Any]]) -> bytes:
    """Serialise a list of items as `to_xml` does, strings written straight (the long lists)."""
    tag = _ITEM.get(root, "item")
    out = ['<?xml version="1.0" encoding="utf-8"?>', f"<{root}>"]
    append = out.append
    for item in items:
        append(f"<{tag}>")
        for key, value in item.items():
            kind = type(value)
            if kind is str:
                append(f"<{key}>{escape(value)}</{key}>")
            elif kind is float:  # latitude and longitude: str() as _xml_value writes them
                append(f"<{key}>{value}</{key}>")
            elif value is not None:
                _xml(key, value, out)
        append(f"</{tag}>")
    append(f"</{root}>")
    return "".join(out).encode("utf-8")


def respond_items(fmt: str, root: str, items: list[dict[str, Any]]) -> Response:
    """Render a list of items that hold no null member (the long lists: no second pass).

    JSON through orjson: the same bytes as `to_json` but for the spelling of numbers the
    standard library writes in exponent form (1e-05 against 0.00001), which JSON leaves free.
    """
    if fmt == "xml":
        return Response(_xml_items(root, items), media_type=FORMATS["xml"])
    return Response(orjson.dumps(items), media_type=FORMATS["json"])


def _fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise NotFound("citizen.open311.format", format=fmt[:16])
    return fmt


def render_error(
    request: Request, status: int, _slug: str, detail: str, errors: list[dict[str, Any]]
) -> Response:
    """Render an error in the Open311 shape: 404, 403 (api_key) or 400 for what the client
    sent, as the specification has them; 429 (rate limit), 405 (method) and a server's own
    failures (5xx) keep their status, so a client knows to wait, not to retry as is, or that
    its request was not at fault."""
    if status == 401:
        status = 403
    if status not in (403, 404, 405, 429) and status < 500:
        status = 400
    items = [
        {"code": status, "description": f"{e.get('field')}: {e.get('message', '')}"}
        for e in errors
        if e.get("field")
    ] or [{"code": status, "description": detail}]
    fmt = "xml" if request.url.path.endswith(".xml") else "json"
    return respond(fmt, "errors", items, status)


# --- shapes ----------------------------------------------------------------------------------


def _lang_en(request: Request) -> bool:
    return request_language(request) == "en"


class LocalTimes:
    """Format UTC times as local ISO 8601 to the second, exactly as
    `value.astimezone(zone).isoformat(timespec="seconds")` does, for a fraction of its cost.

    A list renders three times per report; re-zoning each is most of a long list's Python time.
    Instead the local hour and offset are worked out once per UTC hour (from zoneinfo, so any
    profile's zone works) and the minutes and seconds copied from the UTC text. Hours whose
    offset is not whole hours or changes within the hour take the exact path.
    """

    _LIMIT = 50_000  # hours kept (about six years); then start afresh

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._hours: dict[str, tuple[str, str] | None] = {}

    def __call__(self, value: str | datetime | None) -> str | None:
        """Return the local time of a UTC time: naive UTC text or datetime, or aware datetime."""
        if value is None:
            return None
        if isinstance(value, datetime):
            offset = value.utcoffset()
            if offset:
                value = value.astimezone(UTC)
            text = value.isoformat(sep=" ")
        else:
            text = value
        if len(text) < 19 or text[13] != ":" or text[10] not in " T":
            return self._exact(text)
        hour = text[:13]
        parts = self._hours.get(hour)
        if parts is None:
            parts = None if hour in self._hours else self._hour(hour)
            if parts is None:
                return self._exact(text)
        return parts[0] + text[13:19] + parts[1]

    def _hour(self, hour: str) -> tuple[str, str] | None:
        if len(self._hours) >= self._LIMIT:
            self._hours.clear()
        start = datetime.fromisoformat(f"{hour}:00:00").replace(tzinfo=UTC)
        first = start.astimezone(self.zone)
        last = (start + timedelta(seconds=3599, microseconds=999_999)).astimezone(self.zone)
        offset = first.utcoffset()
        parts: tuple[str, str] | None = None
        if offset == last.utcoffset() and offset is not None and not offset % timedelta(hours=1):
            rendered = first.isoformat(timespec="seconds")  # YYYY-MM-DDTHH:00:00+HH:MM
            parts = (rendered[:13], rendered[19:])
        self._hours[hour] = parts
        return parts

    def _exact(self, text: str) -> str:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(self.zone).isoformat(timespec="seconds")


@lru_cache(maxsize=4)
def local_times(zone: str) -> LocalTimes:
    """Return the (shared, caching) local time formatter of a zone."""
    return LocalTimes(ZoneInfo(zone))


def service_shape(row: CitizenService, en: bool) -> dict[str, Any]:
    """Return a service as listed by services.{fmt}."""
    return {
        "service_code": row.code,
        "service_name": row.name_en if en else row.name,
        "description": row.description_en if en else row.description,
        "metadata": bool(row.attributes),
        "type": "realtime",
        "keywords": row.keywords,
        "group": row.group_en if en else row.group,
    }


def definition_shape(row: CitizenService, en: bool) -> dict[str, Any]:
    """Return a service definition (its attributes)."""
    return {
        "service_code": row.code,
        "attributes": [
            {
                "variable": a["variable"],
                "code": a["code"],
                "datatype": a["datatype"],
                "required": a["required"],
                "datatype_description": a.get("datatype_description") or None,
                "order": a["order"],
                "description": a["description_en"] if en else a["description"],
                "values": [
                    {"key": v["key"], "name": v["name_en"] if en else v["name"]}
                    for v in a.get("values", [])
                ]
                or None,
            }
            for a in sorted(row.attributes, key=lambda a: a["order"])
        ],
    }


class _Lookup:
    """Service and department names for rendering many reports (read once per request)."""

    def __init__(self, session: Session, en: bool) -> None:
        self.services = {
            s.code: (s.name_en if en else s.name) for s in service.get_all_services(session=session)
        }
        self.departments = {
            d.code: (d.name_en or d.name) if en else d.name
            for d in unit_service.get_all_departments(session=session, limit=1000)[0]
        }


def request_shape(row: Any, lookup: _Lookup, local: LocalTimes) -> dict[str, Any]:
    """Return a report as an Open311 service request (never any personal data).

    Members without a value are left out (Open311 clients read an absent field as empty); the
    others come in the specification's order. `row` holds `service.PUBLIC_COLUMNS` (times as
    datetimes or, from `raw_times`, as the driver's values).
    """
    # Unpacked once: a tuple is cheaper to read than a row's named members, 15,000 times over.
    (_, tracking_code, code, status, notes, description, address, lat, lon, media_url) = row[:10]
    department_code, requested_at, updated_at, expected_at = row[10], row[12], row[13], row[14]
    item: dict[str, Any] = {"service_request_id": tracking_code, "status": status}
    if notes is not None:
        item["status_notes"] = notes
    item["service_name"] = lookup.services.get(code, code)
    item["service_code"] = code
    item["description"] = description
    agency = lookup.departments.get(department_code)
    if agency is not None:
        item["agency_responsible"] = agency
    item["requested_datetime"] = local(requested_at)
    item["updated_datetime"] = local(updated_at)
    if expected_at is not None:
        item["expected_datetime"] = local(expected_at)
    if address is not None:
        item["address"] = address
    if lat is not None and lon is not None:
        item["lat"], item["long"] = lat, lon
    if media_url is not None:
        item["media_url"] = media_url
    return item


# --- routes ----------------------------------------------------------------------------------


@router.get("/discovery.{fmt}", summary="Service discovery")
def discovery(request: Request, runtime: RuntimeDep, fmt: str) -> Response:
    """Describe this Open311 endpoint."""
    fmt = _fmt(fmt)
    base = runtime.settings.public_url.rstrip("/")
    document = {
        "changeset": CHANGESET,
        "contact": "Trung tâm Giám sát, điều hành đô thị thông minh tỉnh Đồng Nai (IOC)",
        "key_service": f"{base}/api/v1/api-keys",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": f"{base}{PREFIX}",
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }
    return respond(fmt, "discovery", document)


@router.get("/services.{fmt}", summary="Service list")
def services(
    request: Request, session: SessionDep, fmt: str, jurisdiction_id: Opt = None
) -> Response:
    """List the services citizens can report under."""
    fmt = _fmt(fmt)
    flows.check_jurisdiction(jurisdiction_id)
    en = _lang_en(request)
    rows = service.get_all_services(session=session, active_only=True)
    return respond(fmt, "services", [service_shape(r, en) for r in rows])


@router.get("/services/{service_code}.{fmt}", summary="Service definition")
def service_definition(
    request: Request, session: SessionDep, service_code: str, fmt: str, jurisdiction_id: Opt = None
) -> Response:
    """Describe the extra questions (attributes) of one service."""
    fmt = _fmt(fmt)
    flows.check_jurisdiction(jurisdiction_id)
    row = service.get_service(session=session, service_code=service_code)
    if row is None or not row.is_active:
        raise NotFound("citizen.service.not_found", code=service_code[:40])
    return respond(fmt, "service_definition", definition_shape(row, _lang_en(request)))


async def _form_fields(request: Request) -> dict[str, list[str]]:
    """Read the form body (repeated keys kept) before the handler runs in a worker thread."""
    form = await request.form()
    fields: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    return fields


FormFields = Annotated[dict[str, list[str]], Depends(_form_fields)]


# A plain function: FastAPI runs it in a worker thread, so a write waiting for SQLite's lock
# never blocks the event loop (and the commit of the request holding the lock).
@router.post("/requests.{fmt}", summary="Create a service request")
def create_request(request: Request, runtime: RuntimeDep, fmt: str, fields: FormFields) -> Response:
    """Take in a citizen report (api_key in the form body or the query string)."""
    fmt = _fmt(fmt)

    def given(name: str) -> str | None:
        values = fields.get(name)
        return (values[-1] if values else None) or request.query_params.get(name)

    api_key = given("api_key")
    flows.check_jurisdiction(given("jurisdiction_id"))
    sub = flows.submission_from_form(fields)
    language = request_language(request)
    # Checked and placed with reads only, beside the other requests; then written with the
    # reports that arrive meanwhile, in one transaction (citizen.writer).
    with runtime.session_factory() as session:
        client_id = flows.open311_client(runtime=runtime, session=session, api_key=api_key)
        flows.check_rate(runtime, f"key:{client_id}")
        plan = flows.plan_report(
            runtime=runtime, session=session, sub=sub, client_id=client_id, language=language
        )
    plan.request = request
    created: flows.Created = writer_of(runtime).run(plan)
    body = [{"service_request_id": created.report.tracking_code, "service_notice": created.notice}]
    return respond(fmt, "service_requests", body, 201)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    parsed = flows.parse_datetime(value)
    if parsed is None:
        raise Invalid(
            "citizen.invalid",
            errors=[{"field": name, "in": "query", "key": "citizen.field.datetime", "params": {}}],
            count=1,
        )
    return parsed


def _bad(name: str, key: str, **params: Any) -> Invalid:
    error = {"field": name, "in": "query", "key": key, "params": params}
    return Invalid("citizen.invalid", errors=[error], count=1)


def _int(value: str | None, name: str, low: int, high: int, default: int) -> int:
    if not value:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise _bad(name, "citizen.field.integer", low=low, high=high)
    return int(value)


@router.get("/requests.{fmt}", summary="Query service requests")
def get_requests(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    fmt: str,
    service_request_id: RequestIds = None,
    service_code: Opt = None,
    start_date: Opt = None,
    end_date: Opt = None,
    status: Opt = None,
    jurisdiction_id: Opt = None,
    page: Opt = None,
    page_size: Opt = None,
    extensions: Opt = None,
) -> Response:
    """List reports: by ids, or by service, status and period (90 days at most), newest first."""
    fmt = _fmt(fmt)
    flows.check_jurisdiction(jurisdiction_id)
    statuses = _split(status)
    for item in statuses:
        if item not in (ReportStatus.OPEN, ReportStatus.CLOSED):
            raise _bad("status", "citizen.field.status")
    start, end = _date(start_date, "start_date"), _date(end_date, "end_date")
    now = runtime.clock.now()
    if start is None and end is None:
        start = now - MAX_RANGE
    elif start is None:
        assert end is not None
        start = end - MAX_RANGE
    elif end is None:
        end = start + MAX_RANGE
    if end is not None and end < start:
        raise _bad("end_date", "citizen.field.range_order")
    if end is not None and end - start > MAX_RANGE:
        raise _bad("end_date", "citizen.field.range")
    size = _int(page_size, "page_size", 1, MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    number = _int(page, "page", 1, 1_000_000, 1)
    rows = service.get_all_public(
        session=session,
        tracking_codes=_split(service_request_id)[:MAX_PAGE_SIZE],
        service_codes=_split(service_code),
        statuses=statuses,
        start=start,
        end=end,
        limit=size,
        offset=(number - 1) * size,
        raw_times=True,
    )
    return respond_items(
        fmt, "service_requests", _shapes(request, runtime, session, rows, extensions)
    )


def _shapes(
    request: Request,
    runtime: Runtime,
    session: Session,
    rows: Sequence[Any],
    extensions: str | None,
) -> list[dict[str, Any]]:
    en = _lang_en(request)
    lookup = runtime.reference.get(
        session,
        f"citizen:open311_names:{'en' if en else 'vi'}",
        ("citizen_service", "department"),
        lambda: _Lookup(session, en),
    )
    local = local_times(runtime.settings.timezone)
    items = [request_shape(row, lookup, local) for row in rows]
    if extensions == "true":
        notes = service.get_notes(session=session, report_ids=[row.id for row in rows])
        for item, row in zip(items, rows, strict=True):
            item["notes"] = [
                {
                    name: value
                    for name, value in (
                        ("datetime", local(n.at)),
                        ("description", n.description),
                        ("type", n.kind),
                        ("status", n.status),
                    )
                    if value is not None
                }
                for n in notes[row.id]
            ]
    return items


@router.get("/requests/{service_request_id}.{fmt}", summary="Single service request")
def get_request(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    service_request_id: str,
    fmt: str,
    jurisdiction_id: Opt = None,
    extensions: Opt = None,
) -> Response:
    """Return one report, as a one-element list."""
    fmt = _fmt(fmt)
    flows.check_jurisdiction(jurisdiction_id)
    rows = service.get_all_public(
        session=session, tracking_codes=[service_request_id[:40]], raw_times=True
    )
    if not rows:
        raise NotFound("citizen.report.not_found", code=service_request_id[:40])
    return respond(fmt, "service_requests", _shapes(request, runtime, session, rows, extensions))


@router.get("/tokens/{token}.{fmt}", summary="Request id from a token")
def get_token(session: SessionDep, token: str, fmt: str, jurisdiction_id: Opt = None) -> Response:
    """Return the service request id a token stands for."""
    fmt = _fmt(fmt)
    flows.check_jurisdiction(jurisdiction_id)
    report = service.get_by_token(session=session, token=token[:64])
    if report is None:
        raise NotFound("citizen.token.not_found")
    body = [{"service_request_id": report.tracking_code, "token": report.token}]
    return respond(fmt, "service_requests", body)
