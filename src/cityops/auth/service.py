"""Database work of the auth context: users, passwords, sessions, API keys, attempts, audit.

Functions flush and never commit: the request, the command or the job owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from cityops.auth.enums import Role, role_permissions
from cityops.auth.models import ApiKey, AuditLog, AuthSession, LoginAttempt, User
from cityops.auth.schemas import ApiKeyCreate, UserCreate, UserUpdate
from cityops.core.clock import Clock
from cityops.core.config import Settings
from cityops.core.errors import Conflict, Forbidden, Invalid
from cityops.core.security import Principal, Scope
from cityops.units import service as unit_service

MIN_PASSWORD_LENGTH = 10
# The most common choices in Vietnamese and international leak lists; compared case-insensitively.
COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "0123456789",
        "12345678910",
        "123456789a",
        "a123456789",
        "1234567890a",
        "qwerty1234",
        "qwertyuiop1",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "password12",
        "password123",
        "password1234",
        "passw0rd123",
        "abc1234567",
        "abcd123456",
        "admin12345",
        "admin123456",
        "administrator1",
        "iloveyou123",
        "welcome123",
        "letmein123",
        "matkhau123",
        "matkhau1234",
        "anhyeuem123",
        "vietnam123",
        "vietnam2024",
        "vietnam2025",
        "vietnam2026",
        "dongnai123",
        "dongnai2025",
        "dongnai2026",
        "bienhoa123",
        "cityops123",
        "cityops2026",
    }
)


# --- passwords -----------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def password_hasher(settings: Settings) -> PasswordHasher:
    """Return the argon2id hasher configured by the settings."""
    return _hasher(settings.password_time_cost, settings.password_memory_kib)


def hash_password(*, password: str, settings: Settings) -> str:
    """Hash a password with argon2id."""
    return password_hasher(settings).hash(password)


def verify_password(*, password_hash: str, password: str, settings: Settings) -> bool:
    """Tell whether a password matches its hash."""
    try:
        return password_hasher(settings).verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_errors(
    *, password: str, username: str, field: str = "password"
) -> list[dict[str, Any]]:
    """Return the password rules a password breaks, as field errors (empty when it is fine)."""
    errors: list[dict[str, Any]] = []

    def fail(key: str, **params: Any) -> None:
        errors.append({"field": field, "in": "body", "key": key, "params": params})

    if len(password) < MIN_PASSWORD_LENGTH:
        fail("auth.password.too_short", min=MIN_PASSWORD_LENGTH)
    if not any(ch.isalpha() for ch in password) or not any(ch.isdigit() for ch in password):
        fail("auth.password.letters_and_digits")
    if username and username.lower() in password.lower():
        fail("auth.password.contains_username")
    if password.lower() in COMMON_PASSWORDS:
        fail("auth.password.too_common")
    return errors


def check_password_rules(*, password: str, username: str, field: str = "password") -> None:
    """Raise 422 naming the field unless the password follows the rules."""
    errors = password_errors(password=password, username=username, field=field)
    if errors:
        raise Invalid("auth.password.rejected", errors=errors)


def secret_digest(secret: str) -> str:
    """Return the SHA-256 of a high-entropy secret (tokens, keys), as hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def digest_matches(secret: str, digest: str) -> bool:
    """Compare a secret with a stored digest in constant time."""
    return hmac.compare_digest(secret_digest(secret), digest)


# --- scope ---------------------------------------------------------------------------------


def resolve_scope(
    *,
    session: Session,
    unit_code: str | None,
    area_code: str | None,
    department_code: str | None,
) -> Scope:
    """Return the scope of a unit subtree or an area's units, and/or a department."""
    unit_codes: frozenset[str] | None = None
    if unit_code is not None:
        unit_codes = unit_service.get_subtree_codes(session=session, unit_code=unit_code)
    if area_code is not None:
        members = unit_service.get_area_unit_codes(session=session, area_code=area_code)
        unit_codes = (unit_codes or frozenset()) | (members or frozenset())
    return Scope(unit_codes=unit_codes, department_code=department_code)


def scope_within(inner: Scope, outer: Scope) -> bool:
    """Tell whether every record `inner` reaches is reachable by `outer` too."""
    if outer.unit_codes is not None and (
        inner.unit_codes is None or not inner.unit_codes <= outer.unit_codes
    ):
        return False
    return outer.department_code is None or inner.department_code == outer.department_code


def user_scope(*, session: Session, user: User) -> Scope:
    """Return the scope of a user."""
    return resolve_scope(
        session=session,
        unit_code=user.unit_code,
        area_code=user.area_code,
        department_code=user.department_code,
    )


def user_principal(
    *, session: Session, user: User, via: str, session_id: str | None = None
) -> Principal:
    """Return the principal acting for a user."""
    return Principal(
        kind="user",
        id=user.id,
        name=user.username,
        role=user.role,
        permissions=role_permissions(user.role),
        scope=user_scope(session=session, user=user),
        session_id=session_id,
        via=via,
        extra={"language": user.language, "full_name": user.full_name},
    )


def _check_scope_fields(
    *,
    session: Session,
    role: str,
    unit_code: str | None,
    department_code: str | None,
    area_code: str | None,
) -> None:
    errors: list[dict[str, Any]] = []

    def fail(field: str, key: str, **params: Any) -> None:
        errors.append({"field": field, "in": "body", "key": key, "params": params})

    if unit_code is not None and unit_service.get(session=session, unit_code=unit_code) is None:
        fail("unit_code", "auth.user.unknown_unit", code=unit_code)
    if (
        department_code is not None
        and unit_service.get_department(session=session, department_code=department_code) is None
    ):
        fail("department_code", "auth.user.unknown_department", code=department_code)
    if (
        area_code is not None
        and unit_service.get_area_unit_codes(session=session, area_code=area_code) is None
    ):
        fail("area_code", "auth.user.unknown_area", code=area_code)
    if unit_code is not None and area_code is not None:
        fail("area_code", "auth.user.unit_or_area")
    if role == Role.UNIT_OFFICER and unit_code is None and area_code is None:
        fail("unit_code", "auth.user.unit_required")
    if role == Role.DEPARTMENT_OFFICER and department_code is None:
        fail("department_code", "auth.user.department_required")
    if errors:
        raise Invalid("auth.user.invalid_scope", errors=errors)


# --- users ---------------------------------------------------------------------------------


def get(*, session: Session, user_id: int) -> User | None:
    """Return a user by id."""
    return session.get(User, user_id)


def get_by_username(*, session: Session, username: str) -> User | None:
    """Return a user by username (usernames are stored in lower case)."""
    return session.scalars(
        select(User).where(User.username == username.strip().lower())
    ).one_or_none()


def get_all(
    *,
    session: Session,
    scope: Scope,
    role: str | None = None,
    unit_codes: frozenset[str] | None = None,
    department_code: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[User], int]:
    """Return one page of the users in a scope matching the filters, and how many match."""
    conditions: list[ColumnElement[bool]] = [
        scope.unit_filter(User.unit_code),
        scope.department_filter(User.department_code),
    ]
    if role is not None:
        conditions.append(User.role == role)
    if unit_codes is not None:
        conditions.append(User.unit_code.in_(sorted(unit_codes)))
    if department_code is not None:
        conditions.append(User.department_code == department_code)
    if q:
        pattern = f"%{q.lower()}%"
        conditions.append(
            or_(
                func.lower(User.username).like(pattern),
                func.lower(User.full_name).like(pattern),
                func.lower(User.email).like(pattern),
            )
        )
    total = session.scalar(select(func.count()).select_from(User).where(*conditions)) or 0
    rows = session.scalars(
        select(User).where(*conditions).order_by(User.username).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def create_user(*, session: Session, user_in: UserCreate, clock: Clock, settings: Settings) -> User:
    """Create a user after checking the role, the scope and the password rules."""
    username = user_in.username.lower()
    _check_scope_fields(
        session=session,
        role=user_in.role,
        unit_code=user_in.unit_code,
        department_code=user_in.department_code,
        area_code=user_in.area_code,
    )
    check_password_rules(password=user_in.password, username=username)
    if get_by_username(session=session, username=username) is not None:
        raise Conflict(
            "auth.user.username_taken",
            errors=[
                {
                    "field": "username",
                    "in": "body",
                    "key": "auth.user.username_taken",
                    "params": {"username": username},
                }
            ],
            username=username,
        )
    now = clock.now()
    user = User(
        username=username,
        full_name=user_in.full_name,
        email=user_in.email,
        password_hash=hash_password(password=user_in.password, settings=settings),
        role=str(user_in.role),
        unit_code=user_in.unit_code,
        department_code=user_in.department_code,
        area_code=user_in.area_code,
        is_active=True,
        language=str(user_in.language),
        created_at=now,
        updated_at=now,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    return user


def _is_global_admin(user: User) -> bool:
    return (
        user.is_active
        and user.role == Role.ADMIN
        and user.unit_code is None
        and user.area_code is None
        and user.department_code is None
    )


def count_global_admins(*, session: Session, exclude_id: int | None = None) -> int:
    """Count the active administrators without a scope (those who can manage everything)."""
    conditions = [
        User.is_active.is_(True),
        User.role == Role.ADMIN,
        User.unit_code.is_(None),
        User.area_code.is_(None),
        User.department_code.is_(None),
    ]
    if exclude_id is not None:
        conditions.append(User.id != exclude_id)
    return session.scalar(select(func.count()).select_from(User).where(*conditions)) or 0


def _check_not_last_admin(*, session: Session, user: User) -> None:
    if count_global_admins(session=session, exclude_id=user.id) == 0:
        raise Conflict("auth.user.last_admin")


def update_user(
    *, session: Session, user: User, user_in: UserUpdate, clock: Clock, settings: Settings
) -> User:
    """Update a user's profile, role, scope or state; a password reset ends their logins."""
    changes = user_in.model_dump(exclude_unset=True)
    for field in ("full_name", "role", "is_active", "language"):
        # These columns cannot be empty: an explicit null means "leave as is".
        if field in changes and changes[field] is None:
            del changes[field]
    password = changes.pop("password", None)
    was_global_admin = _is_global_admin(user)
    merged = {
        "role": str(changes.get("role", user.role)),
        "unit_code": changes.get("unit_code", user.unit_code),
        "department_code": changes.get("department_code", user.department_code),
        "area_code": changes.get("area_code", user.area_code),
    }
    _check_scope_fields(
        session=session,
        role=str(merged["role"]),
        unit_code=merged["unit_code"],
        department_code=merged["department_code"],
        area_code=merged["area_code"],
    )
    if password is not None:
        check_password_rules(password=password, username=user.username)
    now = clock.now()
    for field, value in changes.items():
        setattr(user, field, str(value) if field in ("role", "language") else value)
    if was_global_admin and not _is_global_admin(user):
        _check_not_last_admin(session=session, user=user)
    if password is not None:
        set_password(session=session, user=user, password=password, settings=settings, clock=clock)
    if not user.is_active or password is not None:
        revoke_user_sessions(session=session, user_id=user.id, clock=clock)
    if session.is_modified(user):
        user.updated_at = now
    session.flush()
    return user


def delete_user(*, session: Session, user: User, clock: Clock) -> User:
    """Deactivate a user (the row stays, so the audit log keeps its actor) and end their logins."""
    if _is_global_admin(user):
        _check_not_last_admin(session=session, user=user)
    if user.is_active:
        user.is_active = False
        user.updated_at = clock.now()
    revoke_user_sessions(session=session, user_id=user.id, clock=clock)
    session.flush()
    return user


def set_password(
    *, session: Session, user: User, password: str, settings: Settings, clock: Clock
) -> None:
    """Set a user's password after checking the rules."""
    check_password_rules(password=password, username=user.username)
    now = clock.now()
    user.password_hash = hash_password(password=password, settings=settings)
    user.password_changed_at = now
    user.updated_at = now
    session.flush()


def touch_last_login(*, session: Session, user: User, at: datetime) -> None:
    """Record a login time without an audit entry (the login itself is audited)."""
    session.execute(update(User).where(User.id == user.id).values(last_login_at=at))


# --- login sessions ------------------------------------------------------------------------


def create_session(
    *,
    session: Session,
    user: User,
    kind: str,
    lifetime: timedelta,
    clock: Clock,
    ip: str | None,
    user_agent: str | None,
    with_csrf: bool,
) -> tuple[AuthSession, str]:
    """Open a login session; return it and its secret (shown to the client once)."""
    now = clock.now()
    secret = secrets.token_urlsafe(32)
    row = AuthSession(
        id=secrets.token_urlsafe(18),
        user_id=user.id,
        kind=kind,
        created_at=now,
        expires_at=now + lifetime,
        secret_hash=secret_digest(secret),
        csrf_token=secrets.token_urlsafe(32) if with_csrf else None,
        ip=ip[:64] if ip else None,
        user_agent=user_agent[:300] if user_agent else None,
        last_seen_at=now,
    )
    session.add(row)
    session.flush()
    return row, secret


def get_session(*, session: Session, session_id: str, lock: bool = False) -> AuthSession | None:
    """Return a login session by id (locked for update when asked)."""
    if lock:
        return session.scalars(
            select(AuthSession).where(AuthSession.id == session_id).with_for_update()
        ).one_or_none()
    return session.get(AuthSession, session_id)


def rotate_session_secret(*, session: Session, auth_session: AuthSession) -> str:
    """Replace a session's secret (refresh-token rotation); return the new one."""
    secret = secrets.token_urlsafe(32)
    auth_session.secret_hash = secret_digest(secret)
    session.flush()
    return secret


def revoke_session(*, session: Session, session_id: str, clock: Clock) -> None:
    """End one login session."""
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )


def revoke_user_sessions(
    *, session: Session, user_id: int, clock: Clock, keep: str | None = None
) -> None:
    """End every login session of a user, except `keep`."""
    statement = update(AuthSession).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
    )
    if keep is not None:
        statement = statement.where(AuthSession.id != keep)
    session.execute(statement.values(revoked_at=clock.now()))


def touch_session(*, session: Session, session_id: str, at: datetime) -> None:
    """Record that a session was used."""
    session.execute(update(AuthSession).where(AuthSession.id == session_id).values(last_seen_at=at))


# --- API keys ------------------------------------------------------------------------------

API_KEY_MARK = "cok"


def create_api_key(
    *, session: Session, key_in: ApiKeyCreate, clock: Clock, created_by: Principal | None
) -> tuple[ApiKey, str]:
    """Create an API key within its creator's permissions and scope; return it and its secret."""
    errors: list[dict[str, Any]] = []
    if key_in.unit_code is not None and (
        unit_service.get(session=session, unit_code=key_in.unit_code) is None
    ):
        errors.append(
            {
                "field": "unit_code",
                "in": "body",
                "key": "auth.user.unknown_unit",
                "params": {"code": key_in.unit_code},
            }
        )
    if key_in.department_code is not None and (
        unit_service.get_department(session=session, department_code=key_in.department_code) is None
    ):
        errors.append(
            {
                "field": "department_code",
                "in": "body",
                "key": "auth.user.unknown_department",
                "params": {"code": key_in.department_code},
            }
        )
    if key_in.expires_at is not None and key_in.expires_at <= clock.now():
        errors.append(
            {"field": "expires_at", "in": "body", "key": "auth.api_key.expiry_past", "params": {}}
        )
    if errors:
        raise Invalid("auth.api_key.invalid", errors=errors)
    permissions = sorted({str(p) for p in key_in.permissions})
    if created_by is not None and created_by.kind != "system":
        if not set(permissions) <= created_by.permissions:
            raise Forbidden("auth.api_key.exceeds_permissions")
        key_scope = resolve_scope(
            session=session,
            unit_code=key_in.unit_code,
            area_code=None,
            department_code=key_in.department_code,
        )
        if not scope_within(key_scope, created_by.scope):
            raise Forbidden("auth.api_key.exceeds_scope")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{API_KEY_MARK}_{prefix}_{secret}"
    api_key = ApiKey(
        name=key_in.name,
        prefix=prefix,
        key_hash=secret_digest(plaintext),
        permissions=permissions,
        unit_code=key_in.unit_code,
        department_code=key_in.department_code,
        tenant=key_in.tenant,
        created_by=created_by.id if created_by is not None and created_by.kind == "user" else None,
        created_at=clock.now(),
        expires_at=key_in.expires_at,
    )
    session.add(api_key)
    session.flush()
    return api_key, plaintext


def split_api_key(plaintext: str) -> str | None:
    """Return the public prefix of a key in the CityOps format, or None if it is not one."""
    parts = plaintext.split("_")
    if len(parts) < 3 or parts[0] != API_KEY_MARK or len(parts[1]) != 12:
        return None
    if not all(ch in "0123456789abcdef" for ch in parts[1]):
        return None
    return parts[1]


def get_api_key(*, session: Session, api_key_id: int) -> ApiKey | None:
    """Return an API key by id."""
    return session.get(ApiKey, api_key_id)


def get_api_key_by_prefix(*, session: Session, prefix: str) -> ApiKey | None:
    """Return an API key by its public prefix."""
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()


def get_all_api_keys(
    *, session: Session, scope: Scope, limit: int = 50, offset: int = 0
) -> tuple[list[ApiKey], int]:
    """Return one page of the API keys in a scope, newest first, and how many there are."""
    conditions = [
        scope.unit_filter(ApiKey.unit_code),
        scope.department_filter(ApiKey.department_code),
    ]
    total = session.scalar(select(func.count()).select_from(ApiKey).where(*conditions)) or 0
    rows = session.scalars(
        select(ApiKey)
        .where(*conditions)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def delete_api_key(*, session: Session, api_key: ApiKey, clock: Clock) -> ApiKey:
    """Revoke an API key: it stops working at once (the row stays for the audit log)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = clock.now()
        session.flush()
    return api_key


def touch_api_key(*, session: Session, api_key_id: int, at: datetime) -> None:
    """Record that a key was used, without an audit entry."""
    session.execute(update(ApiKey).where(ApiKey.id == api_key_id).values(last_used_at=at))


# --- login attempts ------------------------------------------------------------------------


def create_login_attempt(
    *, session: Session, username: str, ip: str | None, succeeded: bool, at: datetime
) -> None:
    """Record one password check."""
    session.add(
        LoginAttempt(at=at, username=username[:64], ip=ip[:64] if ip else None, succeeded=succeeded)
    )
    session.flush()


def get_recent_failures(
    *, session: Session, username: str, ip: str | None, since: datetime, limit: int
) -> tuple[list[datetime], list[datetime]]:
    """Return up to `limit` latest failure times for a username (since its last success) and IP.

    Both lists are newest first.
    """
    last_success = session.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username == username[:64], LoginAttempt.succeeded.is_(True)
        )
    )
    user_since = max(since, last_success) if last_success is not None else since
    by_user = session.scalars(
        select(LoginAttempt.at)
        .where(
            LoginAttempt.username == username[:64],
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.at > user_since,
        )
        .order_by(LoginAttempt.at.desc())
        .limit(limit)
    ).all()
    by_ip: Sequence[datetime] = []
    if ip:
        by_ip = session.scalars(
            select(LoginAttempt.at)
            .where(
                LoginAttempt.ip == ip[:64],
                LoginAttempt.succeeded.is_(False),
                LoginAttempt.at > since,
            )
            .order_by(LoginAttempt.at.desc())
            .limit(limit)
        ).all()
    return list(by_user), list(by_ip)


def delete_login_attempts_before(*, session: Session, before: datetime) -> None:
    """Forget attempts older than the throttling window."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.at < before))


# --- audit ---------------------------------------------------------------------------------


def create_audit_entry(
    *,
    session: Session,
    at: datetime,
    action: str,
    resource_type: str,
    resource_id: str | None,
    actor: Principal | None,
    actor_name: str | None = None,
    unit_code: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> AuditLog:
    """Append one entry to the audit log."""
    entry = AuditLog(
        at=at,
        actor_kind=actor.kind if actor is not None else "anonymous",
        actor_id=actor.id if actor is not None and actor.kind != "system" else None,
        actor_name=(actor.name if actor is not None else actor_name),
        via=actor.via if actor is not None else None,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        unit_code=unit_code,
        before=before,
        after=after,
        request_id=request_id,
        ip=ip[:64] if ip else None,
    )
    session.add(entry)
    session.flush()
    return entry


def get_all_audit_entries(
    *,
    session: Session,
    scope: Scope,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditLog], int]:
    """Return one page of audit entries in a scope matching the filters, newest first."""
    conditions: list[ColumnElement[bool]] = [scope.unit_filter(AuditLog.unit_code)]
    if actor is not None:
        conditions.append(AuditLog.actor_name == actor.strip())
    if action is not None:
        conditions.append(AuditLog.action == action)
    if resource_type is not None:
        conditions.append(AuditLog.resource_type == resource_type)
    if resource_id is not None:
        conditions.append(AuditLog.resource_id == resource_id)
    if since is not None:
        conditions.append(AuditLog.at >= since)
    if until is not None:
        conditions.append(AuditLog.at < until)
    total = session.scalar(select(func.count()).select_from(AuditLog).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditLog)
        .where(*conditions)
        .order_by(AuditLog.at.desc(), AuditLog.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total
