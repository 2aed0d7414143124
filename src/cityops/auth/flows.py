"""Orchestration of the auth context: authentication of requests, logins, tokens, the audit
listener and the first administrator.

`install(runtime)` wires this context into a runtime at start-up.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, NoReturn
from uuid import UUID

import anyio.from_thread
import jwt
from fastapi import Request
from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session, UOWTransaction, sessionmaker
from starlette.datastructures import FormData

from cityops.auth import service
from cityops.auth.enums import AuditAction, Role, SessionKind, role_permissions
from cityops.auth.models import ApiKey, AuditLog, AuthSession, User
from cityops.auth.schemas import TokenRead, UserCreate
from cityops.core.clock import Clock
from cityops.core.config import Settings
from cityops.core.db import Audited
from cityops.core.errors import BadRequest, Forbidden, Invalid, TooManyRequests, Unauthorized
from cityops.core.runtime import Runtime
from cityops.core.security import Principal, PrincipalCache, Scope

SESSION_COOKIE = "cityops_session"
CSRF_COOKIE = "cityops_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JWT_ALGORITHM = "HS256"
# Longer than any token or key CityOps issues; anything bigger is refused before parsing.
MAX_CREDENTIAL_LENGTH = 4096
# Usage timestamps are written at most this often, so reads do not turn into writes.
TOUCH_INTERVAL = timedelta(minutes=1)
# Session ids are `secrets.token_urlsafe` output; anything else is refused before SQL.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# runtime.caches key of the API-key principal cache.
API_KEY_CACHE = "auth.api_key_principals"
_CREDENTIALS_CHANGED = "auth.credentials_changed"


def install(runtime: Runtime) -> None:
    """Install the request authenticator and the audit listener on a runtime."""

    runtime.authenticator = RequestAuthenticator(runtime)
    install_audit(runtime.session_factory, clock=runtime.clock)
    install_key_cache(runtime)


def api_key_cache(runtime: Runtime) -> PrincipalCache:
    """Return the runtime's cache of principals authenticated by API key."""
    cache: PrincipalCache = runtime.caches.setdefault(API_KEY_CACHE, PrincipalCache())
    return cache


def install_key_cache(runtime: Runtime) -> None:
    """Empty the API-key principal cache whenever a key or a user changes in this process."""
    cache = api_key_cache(runtime)

    def changed(session: Session, _context: UOWTransaction) -> None:
        touched = (*session.new, *session.dirty, *session.deleted)
        if any(isinstance(obj, ApiKey | User) for obj in touched):
            # Cleared now (this transaction's own later requests) and again at commit, so a
            # request that read the old row meanwhile cannot leave it cached.
            cache.clear()
            session.info[_CREDENTIALS_CHANGED] = True

    def committed(session: Session) -> None:
        if session.info.pop(_CREDENTIALS_CHANGED, False):
            cache.clear()

    event.listen(runtime.session_factory, "after_flush", changed)
    event.listen(runtime.session_factory, "after_commit", committed)


def _unauthorized(key: str, **params: Any) -> Unauthorized:
    return Unauthorized(
        key, headers={"WWW-Authenticate": 'Bearer realm="cityops", error="invalid_token"'}, **params
    )


def client_ip(request: Request | None) -> str | None:
    """Return the caller's address (the proxy's view when uvicorn trusts forwarded headers)."""
    if request is None or request.client is None:
        return None
    return request.client.host[:64]


def _request_id(request: Request | None) -> str | None:
    if request is None:
        return None
    value = getattr(request.state, "request_id", None)
    return str(value)[:64] if value else None


# --- access tokens -------------------------------------------------------------------------


def issue_access_token(
    *, user: User, session_id: str, settings: Settings, clock: Clock
) -> tuple[str, int]:
    """Sign a short-lived access token for a login session; return it and its lifetime (s)."""
    issued = int(clock.now().timestamp())
    lifetime = settings.access_token_minutes * 60
    claims = {
        "sub": str(user.id),
        "role": user.role,
        "sid": session_id,
        "jti": secrets.token_urlsafe(12),
        "iat": issued,
        "exp": issued + lifetime,
    }
    token = jwt.encode(claims, settings.ensure_secret_key(), algorithm=JWT_ALGORITHM)
    return token, lifetime


def decode_access_token(*, token: str, settings: Settings, clock: Clock) -> dict[str, Any]:
    """Check an access token's signature and expiry against the injected clock."""
    if len(token) > MAX_CREDENTIAL_LENGTH:
        raise _unauthorized("auth.token_invalid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.ensure_secret_key(),
            algorithms=[JWT_ALGORITHM],
            # Expiry is checked below against the injected clock, not the wall clock.
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["sub", "sid", "exp", "iat"],
            },
        )
    except jwt.PyJWTError as exc:
        raise _unauthorized("auth.token_invalid") from exc
    exp, sid = claims.get("exp"), claims.get("sid")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or not isinstance(sid, str):
        raise _unauthorized("auth.token_invalid")
    if exp <= clock.now().timestamp():
        raise _unauthorized("auth.token_expired")
    return claims


# --- authentication of requests ------------------------------------------------------------


def authenticate(*, request: Request, session: Session, runtime: Runtime) -> Principal | None:
    """Return the caller of a request from its API key, bearer token or session cookie."""
    api_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    if api_key is None and authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            return _from_bearer(session, runtime, value.strip())
        if scheme.lower() == "apikey":
            api_key = value.strip()
        else:
            raise _unauthorized("auth.scheme_unsupported")
    if api_key is not None:
        return _from_api_key(session, runtime, api_key.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return _from_cookie(request, session, runtime, cookie)
    return None


class RequestAuthenticator:
    """The runtime's authenticator: `(request, session) -> Principal | None`, plus `cached`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def __call__(self, request: Request, session: Session) -> Principal | None:
        """Authenticate a request (may read and touch the database)."""
        return authenticate(request=request, session=session, runtime=self.runtime)

    def cached(self, request: Request) -> Principal | None:
        """The caller if known without I/O (see `cached_principal`); None means "ask"."""
        return cached_principal(request=request, runtime=self.runtime)


def cached_principal(*, request: Request, runtime: Runtime) -> Principal | None:
    """Return the caller of a request sent with an API key that the principal cache holds,
    unexpired and used within TOUCH_INTERVAL; None when the full `authenticate` must decide.

    No I/O, so the request dependency runs it on the event loop: a machine client's requests
    skip the thread-pool hop of authentication. The cache (`api_key_cache`) is the one
    `authenticate` fills and that key and user changes clear, so revocation is seen as soon as
    before: at once in this process, within the cache's TTL from another.
    """
    api_key = request.headers.get("x-api-key")
    if api_key is None:
        authorization = request.headers.get("authorization")
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "apikey":
            return None
        api_key = value
    found: _CachedKey | None = api_key_cache(runtime).get(service.secret_digest(api_key.strip()))
    if found is None:
        return None
    now = runtime.clock.now()
    if found.expires_at is not None and found.expires_at <= now:
        return None
    if found.last_used_at is None or now - found.last_used_at >= TOUCH_INTERVAL:
        return None  # `authenticate` records the use
    return found.principal


def _live_session(
    session: Session, runtime: Runtime, session_id: str, kind: str
) -> tuple[AuthSession, User] | None:
    if not SESSION_ID.fullmatch(session_id):
        return None
    row = service.get_session(session=session, session_id=session_id)
    now = runtime.clock.now()
    if row is None or row.kind != kind or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = service.get(session=session, user_id=row.user_id)
    if user is None or not user.is_active:
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        service.touch_session(session=session, session_id=row.id, at=now)
    return row, user


def _from_bearer(session: Session, runtime: Runtime, token: str) -> Principal:
    claims = decode_access_token(token=token, settings=runtime.settings, clock=runtime.clock)
    found = _live_session(session, runtime, claims["sid"], SessionKind.BEARER)
    if found is None or str(found[1].id) != str(claims["sub"]):
        raise _unauthorized("auth.session_ended")
    row, user = found
    return service.user_principal(session=session, user=user, via="bearer", session_id=row.id)


def _from_cookie(
    request: Request, session: Session, runtime: Runtime, cookie: str
) -> Principal | None:
    session_id, _, secret = cookie.partition(".")
    if not session_id or not secret or len(cookie) > MAX_CREDENTIAL_LENGTH:
        return None
    found = _live_session(session, runtime, session_id, SessionKind.COOKIE)
    # A stale cookie makes the caller anonymous (public pages keep working), not an error.
    if found is None or not service.digest_matches(secret, found[0].secret_hash):
        return None
    row, user = found
    if request.method in UNSAFE_METHODS:
        _check_csrf(request, row.csrf_token or "")
    return service.user_principal(session=session, user=user, via="cookie", session_id=row.id)


def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        sent = _form_field(request, CSRF_FIELD)
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("auth.csrf_failed")


def _form_field(request: Request, name: str) -> str | None:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None
    try:
        # Dependencies run in a worker thread; the form is parsed (and cached) on the event loop.
        form = anyio.from_thread.run(_read_form, request)
    except RuntimeError:
        return None
    value = form.get(name)
    return value if isinstance(value, str) else None


async def _read_form(request: Request) -> FormData:
    return await request.form()


@dataclass(slots=True)
class _CachedKey:
    principal: Principal
    expires_at: datetime | None
    last_used_at: datetime | None


def _from_api_key(session: Session, runtime: Runtime, plaintext: str) -> Principal:
    cache = api_key_cache(runtime)
    digest = service.secret_digest(plaintext)
    now = runtime.clock.now()
    cached: _CachedKey | None = cache.get(digest)
    if cached is not None:
        if cached.expires_at is None or cached.expires_at > now:
            if cached.last_used_at is None or now - cached.last_used_at >= TOUCH_INTERVAL:
                service.touch_api_key(session=session, api_key_id=cached.principal.id, at=now)
                cached.last_used_at = now
            return cached.principal
        cache.discard(digest)
    generation = cache.generation
    principal, row = _check_api_key(session, runtime, plaintext)
    used = row.last_used_at
    # _check_api_key has just touched the key unless it was used within TOUCH_INTERVAL.
    last_used = used if used is not None and now - used < TOUCH_INTERVAL else now
    cache.put(digest, _CachedKey(principal, row.expires_at, last_used), generation)
    return principal


def _check_api_key(session: Session, runtime: Runtime, plaintext: str) -> tuple[Principal, ApiKey]:
    prefix = service.split_api_key(plaintext) if len(plaintext) <= 200 else None
    row = service.get_api_key_by_prefix(session=session, prefix=prefix) if prefix else None
    if row is None or not service.digest_matches(plaintext, row.key_hash):
        raise _unauthorized("auth.api_key_invalid")
    now = runtime.clock.now()
    if row.revoked_at is not None:
        raise _unauthorized("auth.api_key_revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise _unauthorized("auth.api_key_expired")
    permissions = frozenset(row.permissions)
    if row.created_by is not None:
        # A key never does more than its creator may do today.
        creator = service.get(session=session, user_id=row.created_by)
        allowed = role_permissions(creator.role) if creator and creator.is_active else frozenset()
        permissions &= allowed
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_INTERVAL:
        service.touch_api_key(session=session, api_key_id=row.id, at=now)
    scope = service.resolve_scope(
        session=session,
        unit_code=row.unit_code,
        area_code=None,
        department_code=row.department_code,
    )
    principal = Principal(
        kind="api_key",
        id=row.id,
        name=row.name,
        role="api_key",
        permissions=permissions,
        scope=scope,
        tenant=row.tenant,
        via="api_key",
    )
    return principal, row


# --- logins --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login: the user, the new session and its secret, and the principal."""

    user: User
    auth_session: AuthSession
    secret: str
    principal: Principal

    @property
    def credential(self) -> str:
        """The session credential handed to the client: `<session id>.<secret>`."""
        return f"{self.auth_session.id}.{self.secret}"


def _dummy_hash(runtime: Runtime) -> str:
    cached = runtime.caches.get("auth.dummy_hash")
    if cached is None:
        cached = service.hash_password(
            password=secrets.token_urlsafe(16), settings=runtime.settings
        )
        runtime.caches["auth.dummy_hash"] = cached
    return str(cached)


def _commit_then_raise(session: Session, error: Exception) -> NoReturn:
    # The request fails, yet what was just recorded (a failed attempt, a revocation) must stand.
    session.commit()
    raise error


def _check_throttle(
    session: Session, runtime: Runtime, *, username: str, ip: str | None, now: datetime
) -> None:
    settings = runtime.settings
    window = timedelta(minutes=settings.login_window_minutes)
    limit = settings.login_max_failures
    by_user, by_ip = service.get_recent_failures(
        session=session, username=username, ip=ip, since=now - window, limit=limit
    )
    blocked_until: datetime | None = None
    for failures in (by_user, by_ip):
        if len(failures) >= limit:
            # Newest first: the block lifts when the limit-th newest failure leaves the window.
            until = failures[limit - 1] + window
            blocked_until = until if blocked_until is None else max(blocked_until, until)
    if blocked_until is not None and blocked_until > now:
        seconds = max(1, math.ceil((blocked_until - now).total_seconds()))
        raise TooManyRequests(
            "auth.login_throttled",
            headers={"Retry-After": str(seconds)},
            minutes=math.ceil(seconds / 60),
        )


def login(
    *,
    runtime: Runtime,
    session: Session,
    request: Request | None,
    username: str,
    password: str,
    kind: SessionKind,
) -> Login:
    """Check a username and password and open a login session, or fail with 401 or 429.

    Unknown users, wrong passwords and inactive accounts get the same answer in comparable time.
    """
    settings, clock = runtime.settings, runtime.clock
    now = clock.now()
    name = username.strip().lower()[:64]
    ip = client_ip(request)
    request_id = _request_id(request)
    try:
        _check_throttle(session, runtime, username=name, ip=ip, now=now)
    except TooManyRequests as exc:
        service.create_audit_entry(
            session=session,
            at=now,
            action=AuditAction.LOGIN_FAILED,
            resource_type="auth_user",
            resource_id=None,
            actor=None,
            actor_name=name,
            after={"reason": "throttled"},
            request_id=request_id,
            ip=ip,
        )
        _commit_then_raise(session, exc)
    user = service.get_by_username(session=session, username=name)
    password_hash = user.password_hash if user is not None else _dummy_hash(runtime)
    matches = service.verify_password(
        password_hash=password_hash, password=password, settings=settings
    )
    if user is None or not matches or not user.is_active:
        reason = "unknown_user" if user is None else "wrong_password" if not matches else "inactive"
        service.create_login_attempt(session=session, username=name, ip=ip, succeeded=False, at=now)
        service.delete_login_attempts_before(
            session=session, before=now - timedelta(minutes=settings.login_window_minutes)
        )
        service.create_audit_entry(
            session=session,
            at=now,
            action=AuditAction.LOGIN_FAILED,
            resource_type="auth_user",
            resource_id=str(user.id) if user is not None else None,
            actor=None,
            actor_name=name,
            unit_code=user.unit_code if user is not None else None,
            after={"reason": reason},
            request_id=request_id,
            ip=ip,
        )
        _commit_then_raise(
            session,
            Unauthorized(
                "auth.invalid_credentials", headers={"WWW-Authenticate": 'Bearer realm="cityops"'}
            ),
        )
    if service.password_hasher(settings).check_needs_rehash(user.password_hash):
        user.password_hash = service.hash_password(password=password, settings=settings)
    service.create_login_attempt(session=session, username=name, ip=ip, succeeded=True, at=now)
    lifetime = (
        timedelta(days=settings.refresh_token_days)
        if kind is SessionKind.BEARER
        else timedelta(hours=settings.web_session_hours)
    )
    auth_session, secret = service.create_session(
        session=session,
        user=user,
        kind=kind,
        lifetime=lifetime,
        clock=clock,
        ip=ip,
        user_agent=request.headers.get("user-agent") if request is not None else None,
        with_csrf=kind is SessionKind.COOKIE,
    )
    service.touch_last_login(session=session, user=user, at=now)
    principal = service.user_principal(
        session=session, user=user, via=str(kind), session_id=auth_session.id
    )
    session.info["actor"] = principal
    service.create_audit_entry(
        session=session,
        at=now,
        action=AuditAction.LOGIN,
        resource_type="auth_user",
        resource_id=str(user.id),
        actor=principal,
        unit_code=user.unit_code,
        after={"session": str(kind)},
        request_id=request_id,
        ip=ip,
    )
    return Login(user=user, auth_session=auth_session, secret=secret, principal=principal)


def token_response(*, result: Login, settings: Settings, clock: Clock) -> TokenRead:
    """Return the OAuth2 token response of a bearer login session."""
    access, lifetime = issue_access_token(
        user=result.user, session_id=result.auth_session.id, settings=settings, clock=clock
    )
    return TokenRead(access_token=access, expires_in=lifetime, refresh_token=result.credential)


def refresh(
    *, runtime: Runtime, session: Session, request: Request | None, refresh_token: str
) -> TokenRead:
    """Exchange a refresh token for new tokens; a reused old token ends the whole session."""
    clock, settings = runtime.clock, runtime.settings
    now = clock.now()
    session_id, _, secret = refresh_token.partition(".")
    row = (
        service.get_session(session=session, session_id=session_id, lock=True)
        if SESSION_ID.fullmatch(session_id) and secret
        else None
    )
    if row is None or row.kind != SessionKind.BEARER or row.revoked_at is not None:
        raise _unauthorized("auth.refresh_invalid")
    if row.expires_at <= now:
        raise _unauthorized("auth.refresh_invalid")
    user = service.get(session=session, user_id=row.user_id)
    if not service.digest_matches(secret, row.secret_hash):
        # Only the holder of an earlier token can present one: the token family has leaked,
        # so the session ends for everyone holding it (RFC 9700 §4.14.2).
        service.revoke_session(session=session, session_id=row.id, clock=clock)
        service.create_audit_entry(
            session=session,
            at=now,
            action=AuditAction.TOKEN_REUSE,
            resource_type="auth_session",
            resource_id=row.id,
            actor=None,
            actor_name=user.username if user else None,
            unit_code=user.unit_code if user else None,
            request_id=_request_id(request),
            ip=client_ip(request),
        )
        _commit_then_raise(session, _unauthorized("auth.refresh_invalid"))
    if user is None or not user.is_active:
        raise _unauthorized("auth.refresh_invalid")
    new_secret = service.rotate_session_secret(session=session, auth_session=row)
    row.last_seen_at = now
    access, lifetime = issue_access_token(
        user=user, session_id=row.id, settings=settings, clock=clock
    )
    return TokenRead(
        access_token=access, expires_in=lifetime, refresh_token=f"{row.id}.{new_secret}"
    )


def logout(
    *, session: Session, principal: Principal, clock: Clock, request: Request | None
) -> None:
    """End the caller's login session and record it."""
    if principal.session_id is None:
        raise BadRequest("auth.logout_no_session")
    service.revoke_session(session=session, session_id=principal.session_id, clock=clock)
    service.create_audit_entry(
        session=session,
        at=clock.now(),
        action=AuditAction.LOGOUT,
        resource_type="auth_user",
        resource_id=str(principal.id),
        actor=principal,
        unit_code=_single_unit(principal.scope),
        request_id=_request_id(request),
        ip=client_ip(request),
    )


def _single_unit(scope: Scope) -> str | None:
    if scope.unit_codes is not None and len(scope.unit_codes) == 1:
        return next(iter(scope.unit_codes))
    return None


def change_own_password(
    *,
    session: Session,
    principal: Principal,
    old_password: str,
    new_password: str,
    settings: Settings,
    clock: Clock,
) -> User:
    """Change the caller's password (the old one is required); their other logins end."""
    user = service.get(session=session, user_id=principal.id) if principal.kind == "user" else None
    if user is None:
        raise Forbidden("auth.password.users_only")
    if not service.verify_password(
        password_hash=user.password_hash, password=old_password, settings=settings
    ):
        raise Invalid(
            "auth.password.old_wrong",
            errors=[{"field": "old_password", "in": "body", "key": "auth.password.old_wrong"}],
        )
    if new_password == old_password:
        raise Invalid(
            "auth.password.same",
            errors=[{"field": "new_password", "in": "body", "key": "auth.password.same"}],
        )
    service.check_password_rules(
        password=new_password, username=user.username, field="new_password"
    )
    service.set_password(
        session=session, user=user, password=new_password, settings=settings, clock=clock
    )
    service.revoke_user_sessions(
        session=session, user_id=user.id, clock=clock, keep=principal.session_id
    )
    return user


# --- first administrator -------------------------------------------------------------------


def generate_password() -> str:
    """Generate a strong random password that follows the password rules."""
    while True:
        candidate = secrets.token_urlsafe(18)
        if not service.password_errors(password=candidate, username="admin"):
            return candidate


def ensure_admin(
    *, session: Session, settings: Settings, clock: Clock, username: str = "admin"
) -> str | None:
    """Make sure an active administrator exists; return the generated password if one was made.

    An existing account of that name is promoted, reactivated and given the new password.
    """
    if service.count_global_admins(session=session) > 0:
        return None
    password = generate_password()
    user = service.get_by_username(session=session, username=username)
    if user is None:
        service.create_user(
            session=session,
            user_in=UserCreate(
                username=username, password=password, full_name="Quản trị hệ thống", role=Role.ADMIN
            ),
            clock=clock,
            settings=settings,
        )
        return password
    user.role = Role.ADMIN
    user.is_active = True
    user.unit_code = user.area_code = user.department_code = None
    service.set_password(
        session=session, user=user, password=password, settings=settings, clock=clock
    )
    service.revoke_user_sessions(session=session, user_id=user.id, clock=clock)
    return password


# --- audit listener ------------------------------------------------------------------------

_PENDING = "audit_pending"


@dataclass(slots=True)
class _Change:
    action: AuditAction
    obj: Any
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def json_safe(value: Any) -> Any:
    """Return a value the JSON column can hold (dates, decimals and enums become strings)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((json_safe(v) for v in value), key=str)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)


def _columns(obj: Any) -> list[str]:
    exclude: frozenset[str] = getattr(obj, "__audit_exclude__", frozenset())
    return [attr.key for attr in inspect(obj).mapper.column_attrs if attr.key not in exclude]


def _snapshot(obj: Any) -> dict[str, Any]:
    return {key: json_safe(getattr(obj, key)) for key in _columns(obj)}


def _diff(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    state = inspect(obj)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key in _columns(obj):
        history = state.attrs[key].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old == new:
            continue
        before[key], after[key] = json_safe(old), json_safe(new)
    return before, after


def _collect_changes(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    if session.info.get("audit") is False:
        return
    pending: list[_Change] = session.info.setdefault(_PENDING, [])
    for obj in session.new:
        if isinstance(obj, Audited):
            pending.append(_Change(AuditAction.CREATE, obj, None, None))
    for obj in session.dirty:
        if isinstance(obj, Audited):
            before, after = _diff(obj)
            if after:
                pending.append(_Change(AuditAction.UPDATE, obj, before, after))
    for obj in session.deleted:
        if isinstance(obj, Audited):
            pending.append(_Change(AuditAction.DELETE, obj, _snapshot(obj), None))


def _drop_pending(session: Session, _previous: Any = None) -> None:
    session.info.pop(_PENDING, None)


def _write_audit_rows(
    session: Session, changes: list[_Change], now: datetime, requests: Sequence[Any] = ()
) -> None:
    # `requests`: the request of each change, when they are not all the session's one.
    actor: Principal | None = session.info.get("actor")
    own: Request | None = session.info.get("request")
    rows = []
    for index, change in enumerate(changes):
        request = requests[index] if requests else own
        obj = change.obj
        mapper = inspect(obj).mapper
        pk_values = mapper.primary_key_from_instance(obj)
        key = {
            attr.key: json_safe(value)
            for attr, value in zip(
                (mapper.get_property_by_column(col) for col in mapper.primary_key),
                pk_values,
                strict=True,
            )
        }
        before, after = change.before, change.after
        if change.action is AuditAction.CREATE:
            after = _snapshot(obj)
        elif change.action is AuditAction.UPDATE:
            before, after = {**key, **(before or {})}, {**key, **(after or {})}
        unit_code = getattr(obj, obj.__audit_unit__, None)
        rows.append(
            {
                "at": now,
                "actor_kind": actor.kind if actor is not None else "anonymous",
                "actor_id": actor.id if actor is not None and actor.kind != "system" else None,
                "actor_name": actor.name[:64] if actor is not None else None,
                "via": actor.via if actor is not None else None,
                "action": str(change.action),
                "resource_type": mapper.local_table.name,
                "resource_id": "/".join(str(v) for v in pk_values)[:64],
                "unit_code": unit_code if isinstance(unit_code, str) else None,
                "before": before,
                "after": after,
                "request_id": _request_id(request),
                "ip": client_ip(request),
            }
        )
    # Core insert on the session's connection: no ORM flush recursion, one multi-row statement.
    session.connection().execute(insert(AuditLog), rows)


def audit_inserted(
    session: Session, objects: Sequence[Any], now: datetime, *, requests: Sequence[Any] = ()
) -> None:
    """Record the creation of `Audited` rows written by a bulk insert (which no flush sees),
    exactly as the flush listener records rows added to the session (`requests`: the request
    each object came with, when not the session's)."""
    if session.info.get("audit") is False:
        return
    kept = [i for i, o in enumerate(objects) if isinstance(o, Audited)]
    changes = [_Change(AuditAction.CREATE, objects[i], None, None) for i in kept]
    if changes:
        _write_audit_rows(session, changes, now, [requests[i] for i in kept] if requests else ())


def install_audit(factory: sessionmaker[Session], *, clock: Clock) -> None:
    """Record every insert, update and delete of `Audited` rows, in the same transaction."""

    def write_changes(session: Session, _context: UOWTransaction) -> None:
        pending: list[_Change] = session.info.pop(_PENDING, [])
        if not pending:
            return
        _write_audit_rows(session, pending, clock.now())

    if not event.contains(factory, "before_flush", _collect_changes):
        event.listen(factory, "before_flush", _collect_changes)
        event.listen(factory, "after_flush", write_changes)
        event.listen(factory, "after_soft_rollback", _drop_pending)
