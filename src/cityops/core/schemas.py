"""API shapes shared by every context."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

# One line of text without control characters: PostgreSQL refuses NUL bytes, and no name,
# code or filter needs a newline or escape character.
SINGLE_LINE = r"^[^\x00-\x1f\x7f]*$"


class Page(BaseModel, Generic[T]):
    """One page of a list: the items, how many match in all, and where the page starts."""

    items: list[T]
    total: int
    limit: int
    offset: int


class ReadModel(BaseModel):
    """Base of `<Entity>Read` shapes: built from table rows."""

    model_config = ConfigDict(from_attributes=True)


class WriteModel(BaseModel):
    """Base of `<Entity>Create` / `<Entity>Update` shapes: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
