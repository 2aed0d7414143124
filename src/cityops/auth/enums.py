"""Roles and the permissions each holds, session kinds, audit actions and languages."""

from __future__ import annotations

from enum import StrEnum

from cityops.core.security import Permission


class Role(StrEnum):
    """What a user does in the operations centre; each role is a fixed set of permissions."""

    ADMIN = "admin"
    LEADER = "leader"
    OPERATOR = "operator"
    DEPARTMENT_OFFICER = "department_officer"
    UNIT_OFFICER = "unit_officer"
    VIEWER = "viewer"


_WATCH = {
    Permission.CONTEXT_READ,
    Permission.RULE_READ,
    Permission.ALERT_READ,
    Permission.EGOV_READ,
}
_WORK = {*_WATCH, Permission.INCIDENT_READ, Permission.INCIDENT_WORK}

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset(str(p) for p in Permission),
    Role.LEADER: frozenset(
        {Permission.USER_READ, Permission.AUDIT_READ, *_WATCH, Permission.INCIDENT_READ}
    ),
    # Province and area operators watch, open and dispatch; departments and communes do the work.
    Role.OPERATOR: frozenset(
        {
            *_WORK,
            Permission.ALERT_MANAGE,
            Permission.INCIDENT_CREATE,
            Permission.INCIDENT_ASSIGN,
        }
    ),
    # A department officer imports its own department's dossiers (egov checks the scope).
    Role.DEPARTMENT_OFFICER: frozenset(
        {Permission.DEPARTMENT_UPDATE, *_WORK, Permission.ALERT_MANAGE, Permission.EGOV_ADMIN}
    ),
    Role.UNIT_OFFICER: frozenset({Permission.UNIT_UPDATE, *_WORK}),
    Role.VIEWER: frozenset({*_WATCH, Permission.INCIDENT_READ}),
}

# The programme board: read province-wide; a department reports on the items it owns.
for _role in (Role.LEADER, Role.OPERATOR, Role.DEPARTMENT_OFFICER, Role.VIEWER):
    ROLE_PERMISSIONS[_role] |= {Permission.PROGRAMME_READ}
ROLE_PERMISSIONS[Role.DEPARTMENT_OFFICER] |= {Permission.PROGRAMME_REPORT}
# Citizen reports: those who work incidents handle the reports behind them; operators moderate.
for _role in (Role.OPERATOR, Role.DEPARTMENT_OFFICER, Role.UNIT_OFFICER):
    ROLE_PERMISSIONS[_role] |= {Permission.CITIZEN_HANDLE}
ROLE_PERMISSIONS[Role.OPERATOR] |= {Permission.CITIZEN_MODERATE}

# KPIs are province-wide figures: every role reads them; only administrators edit the catalogue.
for _role in Role:
    ROLE_PERMISSIONS[_role] |= {Permission.KPI_READ}


def role_permissions(role: str) -> frozenset[str]:
    """Return the permissions of a role (none for an unknown role)."""
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


class Language(StrEnum):
    """Languages a user may prefer."""

    VI = "vi"
    EN = "en"


class SessionKind(StrEnum):
    """How a login session is carried: bearer tokens (API clients) or a cookie (web pages)."""

    BEARER = "bearer"
    COOKIE = "cookie"


class AuditAction(StrEnum):
    """What an audit entry records."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    TOKEN_REUSE = "token_reuse"  # noqa: S105 - an action name, not a secret
