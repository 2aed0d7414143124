"""API shapes shared by every context."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")

# One line of text without control characters: PostgreSQL refuses NUL bytes, and no name,
# code or filter needs a newline or escape character.
SINGLE_LINE = r"^[^\x00-\x1f\x7f]*$"
# The days any date a client gives may name (filters, periods, plans, imported dates): a day
# becomes a local midnight, then UTC, and one past these (0001-01-01, 9999-12-31) would not
# survive the move; nothing CityOps holds is older or further ahead (a 4xx, not a 500).
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)


def _with_utc(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_out_of_range",
            "a date-time between {first} and {last} is required",
            {"first": "0001-01-02", "last": "9999-12-30"},
        ) from None
    return value


# A date-time with its time zone that has a UTC equivalent: 0001-01-01T00:00+07:00 has none,
# and would fail where it is stored or compared instead of being refused.
Instant = Annotated[AwareDatetime, AfterValidator(_with_utc)]


class Page(BaseModel, Generic[T]):
    """One page of a list: the items, how many match in all, and where the page starts."""

    items: list[T]
    total: int
    limit: int
    offset: int


class ReadModel(BaseModel):
    """Base of `<Entity>Read` shapes: built from table rows."""

    model_config = ConfigDict(from_attributes=True)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_nul(item) for item in value)
    return False


class WriteModel(BaseModel):
    """Base of `<Entity>Create` / `<Entity>Update` shapes: unknown fields are refused.

    No text may hold a NUL character (PostgreSQL stores none; no person types one), whatever
    the field's own constraints: a 422 naming the field instead of a database error.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain a NUL character")
        return value
