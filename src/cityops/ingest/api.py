"""Routes of the ingest context: the device registry and HTTP ingest of readings."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from cityops.context.service import DEFAULT_TENANT
from cityops.core.deps import MAX_ID, Limit, Offset, RuntimeDep, SessionDep
from cityops.core.errors import Forbidden, Invalid, NotFound, Unauthorized, problem
from cityops.core.schemas import SINGLE_LINE
from cityops.core.security import (
    CurrentPrincipal,
    OptionalPrincipal,
    Permission,
    Principal,
    require,
)
from cityops.ingest import flows, service
from cityops.ingest.enums import DeviceStatus
from cityops.ingest.metrics import metrics_of
from cityops.ingest.models import Device
from cityops.ingest.readings import ReadingOutcome
from cityops.ingest.schemas import (
    DeviceCreate,
    DeviceCreated,
    DevicePage,
    DeviceRead,
    DeviceUpdate,
    IngestRead,
    ReadingResult,
    RefusedValue,
)

router = APIRouter()

DevicePk = Annotated[int, Path(ge=1, le=MAX_ID)]
DeviceIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TenantHeader = Annotated[
    str | None,
    Header(alias="NGSILD-Tenant", max_length=64, pattern=r"^[A-Za-z0-9_.-]+$"),
]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_BODY_BYTES = 1024 * 1024
MAX_READINGS = 1000
TRANSPORT = "http"

AdminPrincipal = Annotated[Principal, Depends(require(Permission.INGEST_ADMIN))]


def _device_in_scope(*, session: SessionDep, principal: Principal, device_pk: int) -> Device:
    device = service.get(session=session, device_pk=device_pk)
    if device is None:
        raise NotFound("ingest.device.not_found", id=device_pk)
    if not principal.scope.covers(
        unit_code=device.unit_code, department_code=device.department_code
    ):
        # Out of scope looks the same as absent.
        raise NotFound("ingest.device.not_found", id=device_pk)
    return device


def _created(device: Device, key: str, response: Response) -> DeviceCreated:
    response.headers.update(NO_STORE)
    return DeviceCreated(**DeviceRead.model_validate(device).model_dump(), key=key)


# --- devices -------------------------------------------------------------------------------------


@router.post(
    "/ingest/devices",
    tags=["ingest"],
    summary="Register a device (its key is shown this once)",
    response_model=DeviceCreated,
    status_code=status.HTTP_201_CREATED,
)
def create_device(
    device_in: DeviceCreate,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
) -> DeviceCreated:
    """Register a device feeding an entity; its unit comes from its location unless given."""
    device, key = flows.create_device(runtime=runtime, session=session, device_in=device_in)
    principal.check_scope(unit_code=device.unit_code, department_code=device.department_code)
    return _created(device, key, response)


@router.get("/ingest/devices", tags=["ingest"], summary="List devices", response_model=DevicePage)
def list_devices(
    session: SessionDep,
    principal: CurrentPrincipal,
    tenant: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
    device_status: Annotated[DeviceStatus | None, Query(alias="status")] = None,
    unit: Annotated[str | None, Query(max_length=16, pattern=SINGLE_LINE)] = None,
    department: Annotated[str | None, Query(max_length=32, pattern=SINGLE_LINE)] = None,
    q: Annotated[str | None, Query(max_length=100, pattern=SINGLE_LINE)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DevicePage:
    """List the devices in the caller's scope (never their keys)."""
    devices, total = service.get_all(
        session=session,
        scope=principal.scope,
        tenant=tenant,
        status=device_status,
        unit_code=unit,
        department_code=department,
        q=q,
        limit=limit,
        offset=offset,
    )
    return DevicePage(
        items=[DeviceRead.model_validate(d) for d in devices],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/ingest/devices/{device_pk}",
    tags=["ingest"],
    summary="Read a device",
    response_model=DeviceRead,
)
def read_device(
    device_pk: DevicePk, session: SessionDep, principal: CurrentPrincipal
) -> DeviceRead:
    """Return one device in the caller's scope."""
    return DeviceRead.model_validate(
        _device_in_scope(session=session, principal=principal, device_pk=device_pk)
    )


@router.patch(
    "/ingest/devices/{device_pk}",
    tags=["ingest"],
    summary="Update a device",
    response_model=DeviceRead,
)
def update_device(
    device_pk: DevicePk,
    device_in: DeviceUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
) -> DeviceRead:
    """Change a device's description, location, owner or attribute map."""
    device = _device_in_scope(session=session, principal=principal, device_pk=device_pk)
    device = flows.update_device(
        runtime=runtime, session=session, device=device, device_in=device_in
    )
    principal.check_scope(unit_code=device.unit_code, department_code=device.department_code)
    return DeviceRead.model_validate(device)


@router.delete(
    "/ingest/devices/{device_pk}",
    tags=["ingest"],
    summary="Delete a device",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_device(device_pk: DevicePk, session: SessionDep, principal: AdminPrincipal) -> Response:
    """Delete a device: its key stops working at once; its entity and history stay."""
    device = _device_in_scope(session=session, principal=principal, device_pk=device_pk)
    service.delete(session=session, device=device)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/ingest/devices/{device_pk}/rotate-key",
    tags=["ingest"],
    summary="Give a device a new key (shown this once; the old key stops working)",
    response_model=DeviceCreated,
)
def rotate_device_key(
    device_pk: DevicePk,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
) -> DeviceCreated:
    """Replace a device's key; the old key is refused from now on."""
    device = _device_in_scope(session=session, principal=principal, device_pk=device_pk)
    device, key = service.rotate_key(session=session, device=device, clock=runtime.clock)
    return _created(device, key, response)


# --- HTTP ingest ---------------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    """Read the body as JSON, refusing what is too large or not JSON."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise Invalid(
            "ingest.body.too_large",
            errors=[{"field": "body", "in": "body", "key": "ingest.body.too_large"}],
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid(
            "ingest.body.invalid_json",
            errors=[{"field": "body", "in": "body", "key": "ingest.body.invalid_json"}],
        ) from None


JsonBody = Annotated[Any, Depends(_json_body)]

_READING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "payload key → value, plus optional ts/observedAt, lat, lon",
    "additionalProperties": True,
}
_INGEST_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _READING_SCHEMA,
                        {"type": "array", "items": _READING_SCHEMA, "maxItems": MAX_READINGS},
                    ]
                },
                "example": {"pm25": 35.2, "no2": 21, "ts": "2026-11-20T03:00:00Z"},
            }
        },
    }
}


def _authenticate_device(
    *,
    session: SessionDep,
    runtime: RuntimeDep,
    device_id: str,
    device_key: str | None,
    tenant: str | None,
    principal: Principal | None,
) -> Device:
    if device_key is not None:
        device = service.get_by_key(session=session, key=device_key.strip())
        if device is None or device.device_id != device_id:
            raise Unauthorized(
                "ingest.key.invalid", headers={"WWW-Authenticate": 'DeviceKey realm="cityops"'}
            )
        return device
    if principal is None:
        raise Unauthorized(
            "ingest.key.missing", headers={"WWW-Authenticate": 'DeviceKey realm="cityops"'}
        )
    principal.check(Permission.CONTEXT_WRITE)
    if tenant is not None and principal.tenant is not None and tenant != principal.tenant:
        raise Forbidden("ingest.tenant.forbidden", tenant=tenant)
    found = service.get_by_device_id(
        session=session, tenant=tenant or principal.tenant or DEFAULT_TENANT, device_id=device_id
    )
    if found is None or not principal.scope.covers(
        unit_code=found.unit_code, department_code=found.department_code
    ):
        raise NotFound("ingest.device.unknown", device_id=device_id)
    return found


def _reading_result(outcome: ReadingOutcome, runtime: RuntimeDep, lang: str) -> ReadingResult:
    return ReadingResult(
        index=outcome.index,
        observed_at=outcome.observed_at,
        stored=dict(outcome.stored),
        refused=[
            RefusedValue(
                key=r.key,
                reason=r.reason.value,
                message=runtime.translate(r.message_key, lang, field=r.key or "", **r.params),
            )
            for r in outcome.refused
        ],
    )


@router.post(
    "/ingest/{device_id}",
    tags=["ingest"],
    summary="Send readings of a device (X-Device-Key, or X-API-Key with context:write)",
    response_model=IngestRead,
    responses={
        207: {"description": "Some values were refused", "model": IngestRead},
        422: {"description": "Nothing was stored"},
    },
    openapi_extra=_INGEST_DOC,
)
def ingest_readings(
    device_id: DeviceIdPath,
    body: JsonBody,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: OptionalPrincipal,
    device_key: Annotated[str | None, Header(alias="X-Device-Key", max_length=200)] = None,
    tenant: TenantHeader = None,
) -> Response:
    """Convert readings through the device's attribute map and store what is valid.

    200: everything stored; 207: some values refused (listed); 422 problem+json: nothing stored.
    """
    metrics = metrics_of(runtime)
    metrics.received.labels(TRANSPORT).inc()
    device = _authenticate_device(
        session=session,
        runtime=runtime,
        device_id=device_id,
        device_key=device_key,
        tenant=tenant,
        principal=principal,
    )
    readings = body if isinstance(body, list) else [body]
    if not 0 < len(readings) <= MAX_READINGS:
        raise Invalid(
            "ingest.body.readings_count",
            errors=[
                {
                    "field": "body",
                    "in": "body",
                    "key": "ingest.body.readings_count",
                    "params": {"max": MAX_READINGS},
                }
            ],
            max=MAX_READINGS,
        )
    item = flows.DeviceReadings(device=device, readings=readings)
    # The device row is reloaded after its state is written; keep what the answer needs.
    entity_id, name = device.entity_id, device.device_id
    flows.ingest(runtime=runtime, session=session, items=[item], transport=TRANSPORT)
    lang = str(getattr(request.state, "lang", runtime.translate.default_language))
    results = [_reading_result(o, runtime, lang) for o in item.outcomes]
    stored, refused = item.stored_values, item.refused_values
    if stored == 0:
        # Nothing stored; the device's new state (unavailable) is still committed.
        return problem(
            request,
            runtime.translate,
            status=422,
            slug="validation-error",
            title_key="error.validation",
            detail=runtime.translate("ingest.refused.all", lang, device_id=name),
            errors=[
                {
                    "field": f"readings[{r.index}]" + (f".{v.key}" if v.key else ""),
                    "in": "body",
                    "type": v.reason,
                    "message": v.message,
                }
                for r in results
                for v in r.refused
            ],
        )
    outcome = IngestRead(
        device_id=name,
        entity_id=entity_id,
        stored=stored,
        refused=refused,
        readings=results,
    )
    return JSONResponse(
        outcome.model_dump(mode="json"),
        status_code=status.HTTP_207_MULTI_STATUS if refused else status.HTTP_200_OK,
    )
