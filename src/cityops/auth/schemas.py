"""API shapes of the auth context: users, tokens, sessions, API keys and audit entries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cityops.auth.enums import Language, Role
from cityops.core.schemas import SINGLE_LINE, Instant, Page, ReadModel, WriteModel
from cityops.core.security import Permission

# Single-line text: no control characters (PostgreSQL refuses NUL; none belong in a name).
# Passwords are taken exactly as typed (no trimming); the cap keeps hashing cheap for garbage.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=256)]
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"),
]
# A plausible address (one @, a dotted domain, no spaces or control characters); the mail
# server is the real judge.
Email = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"
    ),
]
FullName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=SINGLE_LINE)]
UnitCode = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=SINGLE_LINE)]
DepartmentCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=SINGLE_LINE)]
Tenant = Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
AreaCode = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SINGLE_LINE)]


class UserCreate(WriteModel):
    """A new user: who they are, their role and scope, and a first password."""

    username: Username
    password: Password
    full_name: FullName
    role: Role
    unit_code: UnitCode | None = None
    department_code: DepartmentCode | None = None
    email: Email | None = None
    area_code: AreaCode | None = None
    language: Language = Language.VI

    @field_validator("username")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class UserUpdate(WriteModel):
    """Changes to a user; fields left out stay as they are, `null` clears a scope field."""

    full_name: FullName | None = None
    email: Email | None = None
    role: Role | None = None
    unit_code: UnitCode | None = None
    department_code: DepartmentCode | None = None
    area_code: AreaCode | None = None
    is_active: bool | None = None
    language: Language | None = None
    # An administrator's password reset; the user's other logins end.
    password: Password | None = None


class UserRead(ReadModel):
    """A user as shown to administrators and to themselves (never the password hash)."""

    id: int
    username: str
    full_name: str
    email: str | None
    role: str
    unit_code: str | None
    department_code: str | None
    area_code: str | None
    is_active: bool
    language: str
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime
    last_login_at: datetime | None


class UserPage(Page[UserRead]):
    """One page of users."""


class LoginRequest(BaseModel):
    """Username and password, as a form (OAuth2 password flow) or JSON."""

    # OAuth2 clients also send grant_type, scope, client_id...: accepted and ignored.
    model_config = ConfigDict(extra="ignore")

    username: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=SINGLE_LINE),
    ]
    password: Password


class RefreshRequest(BaseModel):
    """A refresh token to exchange for a new pair of tokens."""

    model_config = ConfigDict(extra="ignore")

    refresh_token: Annotated[
        str, StringConstraints(min_length=1, max_length=512, pattern=SINGLE_LINE)
    ]


class TokenRead(BaseModel):
    """Tokens of the OAuth2 password flow (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
    refresh_token: str


class CookieLoginRead(BaseModel):
    """A web login: the CSRF token to send back in `X-CSRF-Token` on every change."""

    csrf_token: str
    expires_at: datetime
    user: UserRead


class PasswordChange(WriteModel):
    """A user's change of their own password."""

    old_password: Password
    new_password: Password


class ScopeRead(BaseModel):
    """The records a principal reaches: unit codes (null: every unit) and a department."""

    unit_codes: list[str] | None
    department_code: str | None


class MeRead(BaseModel):
    """The caller: who, how authenticated, what they may do and where."""

    kind: str
    id: int
    name: str
    role: str
    via: str
    permissions: list[str]
    scope: ScopeRead
    tenant: str | None = None
    user: UserRead | None = None


class ApiKeyCreate(WriteModel):
    """A new machine key: its permissions and scope never exceed its creator's."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=SINGLE_LINE)]
    permissions: list[Permission] = Field(default_factory=list, max_length=32)
    unit_code: UnitCode | None = None
    department_code: DepartmentCode | None = None
    tenant: (
        Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] | None
    ) = None
    expires_at: Instant | None = None


class ApiKeyRead(ReadModel):
    """A key as listed: never its secret."""

    id: int
    name: str
    prefix: str
    permissions: list[str]
    unit_code: str | None
    department_code: str | None
    tenant: str | None
    created_by: int | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """A key just created, with its secret: shown this once and never again."""

    key: str


class ApiKeyPage(Page[ApiKeyRead]):
    """One page of API keys."""


class AuditRead(ReadModel):
    """One audit entry."""

    id: int
    at: datetime
    actor_kind: str
    actor_id: int | None
    actor_name: str | None
    via: str | None
    action: str
    resource_type: str
    resource_id: str | None
    unit_code: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    ip: str | None


class AuditPage(Page[AuditRead]):
    """One page of audit entries, newest first."""
