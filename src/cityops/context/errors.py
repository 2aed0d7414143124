"""NGSI-LD errors: domain errors whose `slug` is the NGSI-LD error type name.

The API renders them as `{"type": "https://uri.etsi.org/ngsi-ld/errors/<slug>", "title", "detail"}`.
"""

from __future__ import annotations

from typing import Any

from cityops.core.errors import DomainError

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiLdError(DomainError):
    """An error of the NGSI-LD API; `slug` is the NGSI-LD error type."""

    status, slug, title_key = 400, "BadRequestData", "context.error.BadRequestData"

    def to_batch_error(self, entity_id: str | None, detail: str) -> dict[str, Any]:
        """Return this error in the NGSI-LD BatchEntityError shape."""
        return {
            "entityId": entity_id,
            "error": {"type": ERROR_BASE + self.slug, "title": self.slug, "detail": detail},
        }


class BadRequestData(NgsiLdError):
    """The request content is not acceptable (malformed entity, bad query)."""


class InvalidRequest(NgsiLdError):
    """The request is not well-formed (bad JSON, wrong parameters combination)."""

    slug, title_key = "InvalidRequest", "context.error.InvalidRequest"


class ResourceNotFound(NgsiLdError):
    """The entity, attribute or context does not exist (or is out of the caller's scope)."""

    status, slug, title_key = 404, "ResourceNotFound", "context.error.ResourceNotFound"


class AlreadyExists(NgsiLdError):
    """The entity already exists."""

    status, slug, title_key = 409, "AlreadyExists", "context.error.AlreadyExists"


class OperationNotSupported(NgsiLdError):
    """The operation is not supported by this broker."""

    status, slug, title_key = 422, "OperationNotSupported", "context.error.OperationNotSupported"


class TooManyResults(NgsiLdError):
    """The query asks for more results than the broker hands out at once."""

    status, slug, title_key = 400, "TooManyResults", "context.error.TooManyResults"


class TooComplexQuery(NgsiLdError):
    """The query ran past the time a read may take (a backtracking pattern, a huge scan)."""

    status, slug, title_key = 400, "TooComplexQuery", "context.error.TooComplexQuery"


class LdContextNotAvailable(NgsiLdError):
    """A JSON-LD context could not be retrieved."""

    status, slug, title_key = 503, "LdContextNotAvailable", "context.error.LdContextNotAvailable"


class NonexistentTenant(NgsiLdError):
    """The tenant named in NGSILD-Tenant has never been written to."""

    status, slug, title_key = 404, "NonexistentTenant", "context.error.NonexistentTenant"


class UnsupportedMediaType(NgsiLdError):
    """The request's Content-Type is not JSON or JSON-LD."""

    status, slug, title_key = 415, "InvalidRequest", "context.error.UnsupportedMediaType"


class NotAcceptable(NgsiLdError):
    """The Accept header names no media type the broker produces."""

    status, slug, title_key = 406, "InvalidRequest", "context.error.NotAcceptable"


class Forbidden(NgsiLdError):
    """The caller may not act on this tenant or entity."""

    status, slug, title_key = 403, "Forbidden", "context.error.Forbidden"


def bad(message: str, **params: Any) -> BadRequestData:
    """Return a BadRequestData error with a message key under `context.`."""
    return BadRequestData(f"context.{message}", **params)
