"""Who may read and change the programme board, and the department officer's scope: the owner
department reports progress, status and milestones of its own items, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import API, XLSX, workbook

pytestmark = pytest.mark.usefixtures("known")

READS = ["/phases", "/items", "/items/A", "/matrix", "/roadmap", "/budget", "/late", "/progress"]
WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/phases", {"code": "P9", "name": "x", "start_year": 2029, "end_year": 2030}),
    ("PATCH", "/phases/P1", {"name": "Giai đoạn một"}),
    (
        "POST",
        "/items",
        {"code": "Z", "name": "Z", "phase_code": "P1", "sector": "egov",
         "owner_department_code": "SKHCN"},
    ),
    ("PATCH", "/items/C", {"name": "Wifi"}),
    ("PUT", "/items/C/budget", {"lines": []}),
    ("DELETE", "/items/E", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("role", "scope", "reads"),
    [
        ("admin", {}, 200),
        ("leader", {}, 200),
        ("operator", {}, 200),
        ("department_officer", {"department_code": "SYT"}, 200),
        ("viewer", {}, 200),
        ("unit_officer", {"unit_code": "26041"}, 403),
        (None, {}, 401),
    ],
)
def test_who_reads_and_who_writes(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    role: str | None,
    scope: dict[str, str],
    reads: int,
) -> None:
    headers = login_as(role, **scope) if role else {}
    for path in READS:
        assert client.get(f"{API}{path}", headers=headers).status_code == reads, path
    expected = {"admin": None, None: 401}.get(role, 403)
    for method, path, body in WRITES:
        response = client.request(method, f"{API}{path}", json=body, headers=headers)
        if expected is None:
            assert response.status_code < 300, (path, response.text)
        else:
            assert response.status_code == expected, (method, path, response.text)
    upload = client.post(
        f"{API}/import",
        files={"workbook": ("x.xlsx", workbook({"items": [["code"], ["A"]]}), XLSX)},
        headers=headers,
    )
    assert upload.status_code == (200 if role == "admin" else expected or 200)


def test_department_officer_reports_on_own_items_only(
    client: TestClient, login_as: Callable[..., dict[str, str]], admin: dict[str, str]
) -> None:
    health = login_as("department_officer", department_code="SYT")
    # A is SYT's own item: progress, status and milestones.
    own = client.patch(f"{API}/items/A", json={"progress": 70, "status": "delayed"}, headers=health)
    assert own.status_code == 200, own.text
    assert (own.json()["progress"], own.json()["status"]) == (70, "delayed")
    milestone = client.post(
        f"{API}/items/A/milestones", json={"name": "Tập huấn", "due_date": "2026-12-15"},
        headers=health,
    )  # fmt: skip
    assert milestone.status_code == 201
    late = next(m for m in own.json()["milestones"] if m["late"])
    ticked = client.patch(
        f"{API}/items/A/milestones/{late['id']}", json={"done_date": "2026-11-19"}, headers=health
    )
    assert ticked.status_code == 200
    assert client.get(f"{API}/late", headers=health).json()["items"][0]["code"] == "B"
    # Other fields of its own item need an administrator.
    renamed = client.patch(f"{API}/items/A", json={"name": "Tên khác"}, headers=health)
    assert renamed.status_code == 403
    assert "progress" in renamed.json()["detail"] or "tiến độ" in renamed.json()["detail"]
    cancelled = client.patch(f"{API}/items/A", json={"status": "cancelled"}, headers=health)
    assert cancelled.status_code == 403
    # B is SKHCN's item, which SYT only supports: read, not report.
    assert client.get(f"{API}/items/B", headers=health).status_code == 200
    other = client.patch(f"{API}/items/B", json={"progress": 99}, headers=health)
    assert other.status_code == 403
    assert (
        client.post(
            f"{API}/items/B/milestones",
            json={"name": "X", "due_date": "2026-12-01"},
            headers=health,
        ).status_code
        == 403
    )
    b = client.get(f"{API}/items/B", headers=admin).json()
    assert b["progress"] == 30
    assert (
        client.delete(
            f"{API}/items/B/milestones/{b['milestones'][0]['id']}", headers=health
        ).status_code
        == 403
    )
    assert len(client.get(f"{API}/items/B", headers=admin).json()["milestones"]) == 2
    # The budget stays with administrators, even for its own item.
    assert (
        client.put(f"{API}/items/A/budget", json={"lines": []}, headers=health).status_code == 403
    )
