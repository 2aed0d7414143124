"""Fixtures of the context hub tests: Đồng Nai entities and NGSI-LD headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
BASE = "/ngsi-ld/v1"


@pytest.fixture
def entities() -> list[dict[str, Any]]:
    """AirQualityObserved stations, Trị An reservoir, QL1A traffic, one Hà Nội station."""
    data: list[dict[str, Any]] = json.loads((FIXTURES / "dongnai_entities.json").read_text())
    return data


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of an administrator (context:read and context:write)."""
    return {**login_as("admin"), "Content-Type": "application/json"}
