"""Helpers of the auth tests: seeded codes and problem+json checks."""

from __future__ import annotations

from typing import Any

# Codes of the seeded Đồng Nai profile.
PROVINCE = "75"
UNIT_A = "25195"  # Phường Bình Phước
UNIT_B = "25210"  # Phường Đồng Xoài
DEPT_A = "SYT"  # Sở Y tế
DEPT_B = "SXD"  # Sở Xây dựng
AREA = "bien-hoa-cu"
PASSWORD = "Dong-Nai-2026!"

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    """Authorization headers for an access token."""
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """Check a problem+json answer of a status and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:cityops:problem:")
    return body
