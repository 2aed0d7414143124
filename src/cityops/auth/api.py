"""Routes of the auth context: tokens, web sessions, the caller, users, API keys, audit log."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from cityops.auth import flows, service
from cityops.auth.enums import Role, SessionKind, role_permissions
from cityops.auth.models import ApiKey, User
from cityops.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyRead,
    AuditPage,
    AuditRead,
    CookieLoginRead,
    LoginRequest,
    MeRead,
    PasswordChange,
    RefreshRequest,
    ScopeRead,
    TokenRead,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
)
from cityops.core.deps import MAX_ID, ClockDep, Limit, Offset, RuntimeDep, SessionDep, SettingsDep
from cityops.core.errors import Forbidden, Invalid, NotFound
from cityops.core.schemas import SINGLE_LINE, Instant
from cityops.core.security import CurrentPrincipal, Permission, Principal, require
from cityops.units import service as unit_service

router = APIRouter()

M = TypeVar("M", bound=BaseModel)

# Database integer keys are 32-bit on PostgreSQL; larger ids cannot exist and must not reach SQL.
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
ApiKeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Credentials are small; a bigger body is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": schema},
                "application/json": {"schema": schema},
            },
        }
    }


async def _read_body(request: Request, model: type[M]) -> M:
    """Parse a body sent as a form or as JSON into a model; 422 naming the fields otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json" or content_type.endswith("+json"):
            raw = await request.body()
            if len(raw) > MAX_BODY_BYTES:
                raise Invalid(
                    "auth.body.too_large",
                    errors=[{"field": "body", "in": "body", "key": "auth.body.too_large"}],
                )
            # pydantic's own parser: bounded nesting, and errors come back as field errors.
            return model.model_validate_json(raw)
        if content_type in FORM_TYPES:
            form = await request.form(max_files=0, max_fields=50)
            data = {key: value for key, value in form.items() if isinstance(value, str)}
            return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from exc
    raise Invalid(
        "auth.body.unsupported",
        errors=[{"field": "body", "in": "body", "key": "auth.body.unsupported"}],
    )


async def _login_body(request: Request) -> LoginRequest:
    return await _read_body(request, LoginRequest)


async def _refresh_body(request: Request) -> RefreshRequest:
    return await _read_body(request, RefreshRequest)


LoginBody = Annotated[LoginRequest, Depends(_login_body)]
RefreshBody = Annotated[RefreshRequest, Depends(_refresh_body)]


# --- tokens and sessions -------------------------------------------------------------------


@router.post(
    "/auth/token",
    tags=["auth"],
    summary="Log in with username and password (OAuth2 password flow)",
    response_model=TokenRead,
    openapi_extra=_body_doc(LoginRequest),
)
def create_token(
    body: LoginBody, request: Request, response: Response, session: SessionDep, runtime: RuntimeDep
) -> TokenRead:
    """Check the credentials and return a short-lived access token and a refresh token."""
    login = flows.login(
        runtime=runtime,
        session=session,
        request=request,
        username=body.username,
        password=body.password,
        kind=SessionKind.BEARER,
    )
    response.headers.update(NO_STORE)
    return flows.token_response(result=login, settings=runtime.settings, clock=runtime.clock)


@router.post(
    "/auth/refresh",
    tags=["auth"],
    summary="Exchange a refresh token for new tokens",
    response_model=TokenRead,
    openapi_extra=_body_doc(RefreshRequest),
)
def refresh_token(
    body: RefreshBody,
    request: Request,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
) -> TokenRead:
    """Rotate the refresh token: the old one stops working, and reusing it ends the session."""
    tokens = flows.refresh(
        runtime=runtime, session=session, request=request, refresh_token=body.refresh_token
    )
    response.headers.update(NO_STORE)
    return tokens


@router.post(
    "/auth/login",
    tags=["auth"],
    summary="Log in to the web pages (session cookie)",
    response_model=CookieLoginRead,
    openapi_extra=_body_doc(LoginRequest),
)
def login_cookie(
    body: LoginBody,
    request: Request,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
) -> CookieLoginRead:
    """Open a web session: an HttpOnly cookie plus a CSRF token to send with every change."""
    login = flows.login(
        runtime=runtime,
        session=session,
        request=request,
        username=body.username,
        password=body.password,
        kind=SessionKind.COOKIE,
    )
    settings = runtime.settings
    max_age = settings.web_session_hours * 3600
    csrf = login.auth_session.csrf_token or ""
    common: dict[str, Any] = {
        "max_age": max_age,
        "path": "/",
        "samesite": "lax",
        "secure": bool(settings.secure_cookies),
    }
    response.set_cookie(flows.SESSION_COOKIE, login.credential, httponly=True, **common)
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(flows.CSRF_COOKIE, csrf, httponly=False, **common)
    response.headers.update(NO_STORE)
    return CookieLoginRead(
        csrf_token=csrf,
        expires_at=login.auth_session.expires_at,
        user=UserRead.model_validate(login.user),
    )


@router.post(
    "/auth/logout",
    tags=["auth"],
    summary="End the current login session",
    status_code=status.HTTP_204_NO_CONTENT,
)
def logout(
    principal: CurrentPrincipal, request: Request, session: SessionDep, clock: ClockDep
) -> Response:
    """Revoke the session: its access token, refresh token and cookie stop working at once."""
    flows.logout(session=session, principal=principal, clock=clock, request=request)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(flows.SESSION_COOKIE, path="/")
    response.delete_cookie(flows.CSRF_COOKIE, path="/")
    return response


def _scope_read(principal: Principal) -> ScopeRead:
    codes = principal.scope.unit_codes
    return ScopeRead(
        unit_codes=sorted(codes) if codes is not None else None,
        department_code=principal.scope.department_code,
    )


@router.get("/auth/me", tags=["auth"], summary="The caller", response_model=MeRead)
def read_me(principal: CurrentPrincipal, session: SessionDep) -> MeRead:
    """Return who is calling, how, with which permissions and in which scope."""
    user = service.get(session=session, user_id=principal.id) if principal.kind == "user" else None
    return MeRead(
        kind=principal.kind,
        id=principal.id,
        name=principal.name,
        role=principal.role,
        via=principal.via,
        permissions=sorted(principal.permissions),
        scope=_scope_read(principal),
        tenant=principal.tenant,
        user=UserRead.model_validate(user) if user is not None else None,
    )


@router.post(
    "/auth/me/password",
    tags=["auth"],
    summary="Change one's own password",
    status_code=status.HTTP_204_NO_CONTENT,
)
def change_password(
    body: PasswordChange,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    """Change the caller's password; the caller's other sessions end."""
    flows.change_own_password(
        session=session,
        principal=principal,
        old_password=body.old_password,
        new_password=body.new_password,
        settings=settings,
        clock=clock,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- users ---------------------------------------------------------------------------------


def _check_can_assign(
    *,
    session: SessionDep,
    principal: Principal,
    role: str,
    unit_code: str | None,
    area_code: str | None,
    department_code: str | None,
) -> None:
    """Refuse to give a user more permissions or a wider scope than the administrator has."""
    if not role_permissions(role) <= principal.permissions:
        raise Forbidden("auth.user.role_exceeds")
    target = service.resolve_scope(
        session=session, unit_code=unit_code, area_code=area_code, department_code=department_code
    )
    if not service.scope_within(target, principal.scope):
        raise Forbidden("error.forbidden.scope")


def _get_user_in_scope(*, session: SessionDep, principal: Principal, user_id: int) -> User:
    user = service.get(session=session, user_id=user_id)
    if user is None:
        raise NotFound("auth.user.not_found", id=user_id)
    principal.check_scope(unit_code=user.unit_code, department_code=user.department_code)
    return user


@router.get("/users", tags=["users"], summary="List users", response_model=UserPage)
def list_users(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Permission.USER_READ))],
    role: Role | None = None,
    unit: Annotated[str | None, Query(pattern=SINGLE_LINE, max_length=16)] = None,
    department: Annotated[str | None, Query(pattern=SINGLE_LINE, max_length=32)] = None,
    q: Annotated[str | None, Query(pattern=SINGLE_LINE, max_length=100)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> UserPage:
    """List the users in the caller's scope: by role, unit (and below), department or text."""
    unit_codes = unit_service.get_subtree_codes(session=session, unit_code=unit) if unit else None
    users, total = service.get_all(
        session=session,
        scope=principal.scope,
        role=role,
        unit_codes=unit_codes,
        department_code=department,
        q=q,
        limit=limit,
        offset=offset,
    )
    return UserPage(
        items=[UserRead.model_validate(u) for u in users], total=total, limit=limit, offset=offset
    )


@router.post(
    "/users",
    tags=["users"],
    summary="Create a user",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
)
def create_user(
    user_in: UserCreate,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: Annotated[Principal, Depends(require(Permission.USER_ADMIN))],
) -> UserRead:
    """Create a user with a role and a scope within the administrator's own."""
    _check_can_assign(
        session=session,
        principal=principal,
        role=user_in.role,
        unit_code=user_in.unit_code,
        area_code=user_in.area_code,
        department_code=user_in.department_code,
    )
    user = service.create_user(session=session, user_in=user_in, clock=clock, settings=settings)
    return UserRead.model_validate(user)


@router.get("/users/{user_id}", tags=["users"], summary="Read a user", response_model=UserRead)
def read_user(
    user_id: UserId,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Permission.USER_READ))],
) -> UserRead:
    """Return one user in the caller's scope."""
    return UserRead.model_validate(
        _get_user_in_scope(session=session, principal=principal, user_id=user_id)
    )


@router.patch("/users/{user_id}", tags=["users"], summary="Update a user", response_model=UserRead)
def update_user(
    user_id: UserId,
    user_in: UserUpdate,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: Annotated[Principal, Depends(require(Permission.USER_ADMIN))],
) -> UserRead:
    """Change a user's profile, role, scope or state, or reset their password."""
    user = _get_user_in_scope(session=session, principal=principal, user_id=user_id)
    changes = user_in.model_dump(exclude_unset=True)
    _check_can_assign(
        session=session,
        principal=principal,
        role=str(changes.get("role") or user.role),
        unit_code=changes.get("unit_code", user.unit_code),
        area_code=changes.get("area_code", user.area_code),
        department_code=changes.get("department_code", user.department_code),
    )
    user = service.update_user(
        session=session, user=user, user_in=user_in, clock=clock, settings=settings
    )
    return UserRead.model_validate(user)


@router.delete(
    "/users/{user_id}",
    tags=["users"],
    summary="Deactivate a user",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_user(
    user_id: UserId,
    session: SessionDep,
    clock: ClockDep,
    principal: Annotated[Principal, Depends(require(Permission.USER_ADMIN))],
) -> Response:
    """Deactivate a user (kept for the audit log); their sessions end at once."""
    user = _get_user_in_scope(session=session, principal=principal, user_id=user_id)
    service.delete_user(session=session, user=user, clock=clock)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- API keys ------------------------------------------------------------------------------


def _get_api_key_in_scope(*, session: SessionDep, principal: Principal, api_key_id: int) -> ApiKey:
    api_key = service.get_api_key(session=session, api_key_id=api_key_id)
    if api_key is None:
        raise NotFound("auth.api_key.not_found", id=api_key_id)
    principal.check_scope(unit_code=api_key.unit_code, department_code=api_key.department_code)
    return api_key


@router.post(
    "/api-keys",
    tags=["api-keys"],
    summary="Create an API key (its secret is shown this once)",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
)
def create_api_key(
    key_in: ApiKeyCreate,
    response: Response,
    session: SessionDep,
    clock: ClockDep,
    principal: Annotated[Principal, Depends(require(Permission.APIKEY_ADMIN))],
) -> ApiKeyCreated:
    """Create a machine key within the caller's permissions and scope."""
    api_key, plaintext = service.create_api_key(
        session=session, key_in=key_in, clock=clock, created_by=principal
    )
    response.headers.update(NO_STORE)
    return ApiKeyCreated(**ApiKeyRead.model_validate(api_key).model_dump(), key=plaintext)


@router.get("/api-keys", tags=["api-keys"], summary="List API keys", response_model=ApiKeyPage)
def list_api_keys(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Permission.APIKEY_ADMIN))],
    limit: Limit = 50,
    offset: Offset = 0,
) -> ApiKeyPage:
    """List the API keys in the caller's scope, newest first (never their secrets)."""
    keys, total = service.get_all_api_keys(
        session=session, scope=principal.scope, limit=limit, offset=offset
    )
    return ApiKeyPage(
        items=[ApiKeyRead.model_validate(k) for k in keys], total=total, limit=limit, offset=offset
    )


@router.get(
    "/api-keys/{api_key_id}",
    tags=["api-keys"],
    summary="Read an API key",
    response_model=ApiKeyRead,
)
def read_api_key(
    api_key_id: ApiKeyId,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Permission.APIKEY_ADMIN))],
) -> ApiKeyRead:
    """Return one API key (never its secret)."""
    return ApiKeyRead.model_validate(
        _get_api_key_in_scope(session=session, principal=principal, api_key_id=api_key_id)
    )


@router.delete(
    "/api-keys/{api_key_id}",
    tags=["api-keys"],
    summary="Revoke an API key",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_api_key(
    api_key_id: ApiKeyId,
    session: SessionDep,
    clock: ClockDep,
    principal: Annotated[Principal, Depends(require(Permission.APIKEY_ADMIN))],
) -> Response:
    """Revoke an API key: it stops working at once."""
    api_key = _get_api_key_in_scope(session=session, principal=principal, api_key_id=api_key_id)
    service.delete_api_key(session=session, api_key=api_key, clock=clock)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- audit log -----------------------------------------------------------------------------


@router.get("/audit", tags=["audit"], summary="Read the audit log", response_model=AuditPage)
def list_audit_entries(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
    actor: Annotated[str | None, Query(pattern=SINGLE_LINE, max_length=64)] = None,
    action: Annotated[str | None, Query(pattern=SINGLE_LINE, max_length=32)] = None,
    resource_type: Annotated[str | None, Query(pattern=SINGLE_LINE, max_length=64)] = None,
    resource_id: Annotated[str | None, Query(pattern=SINGLE_LINE, max_length=64)] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AuditPage:
    """List audit entries in the caller's scope, newest first."""
    entries, total = service.get_all_audit_entries(
        session=session,
        scope=principal.scope,
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return AuditPage(
        items=[AuditRead.model_validate(e) for e in entries],
        total=total,
        limit=limit,
        offset=offset,
    )
