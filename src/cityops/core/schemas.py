"""API shapes shared by every context."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


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
