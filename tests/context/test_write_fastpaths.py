"""The write path's shortcuts give what the general code gives: stored values as the JSON
serializer writes them, a tenant id remembered only once committed, and correlation ids unique
across processes."""

from __future__ import annotations

import json
import multiprocessing
from typing import Any

import hypothesis
from fastapi.testclient import TestClient
from hypothesis import strategies as st

from cityops.context import service
from cityops.core.db import json_dumps, unit_of_work
from cityops.core.events import new_correlation_id
from cityops.core.runtime import Runtime

from .conftest import BASE

STATION = "urn:ngsi-ld:AirQualityObserved:dn-fastpath-1"


def _upsert(client: TestClient, admin: dict[str, str], body: bytes) -> int:
    response = client.post(f"{BASE}/entityOperations/upsert", content=body, headers=admin)
    return response.status_code


def _value(client: TestClient, admin: dict[str, str], name: str) -> Any:
    response = client.get(f"{BASE}/entities/{STATION}", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()[name]["value"]


def test_a_batch_keeps_large_integers_and_text(client: TestClient, admin: dict[str, str]) -> None:
    entity = {
        "id": STATION,
        "type": "Thing",
        "count": {"type": "Property", "value": 9223372036854775807},
        "name": {"type": "Property", "value": 'Trấn Biên "ướt"'},
    }
    body = json.dumps([entity])
    assert _upsert(client, admin, body.encode()) == 204
    assert _value(client, admin, "count") == 9223372036854775807
    assert _value(client, admin, "name") == 'Trấn Biên "ướt"'


def test_a_malformed_batch_body_is_400_and_writes_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = json.dumps([{"id": STATION, "type": "Thing"}])[:-1]  # the closing bracket cut
    response = client.post(f"{BASE}/entityOperations/upsert", content=body, headers=admin)
    assert response.status_code == 400
    assert response.json()["type"].endswith("InvalidRequest")
    assert client.get(f"{BASE}/entities/{STATION}", headers=admin).status_code == 404


@hypothesis.given(
    st.one_of(
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.floats(), max_size=3),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["Point", "LineString"]),
                "coordinates": st.lists(st.integers() | st.floats() | st.booleans(), max_size=3),
            }
        ),
        st.builds(lambda a, b: {"coordinates": [a, b], "type": "Point"}, st.floats(), st.floats()),
    )
)
def test_stored_json_text_is_what_the_serializer_writes(value: Any) -> None:
    encode = service._scalar_first(json_dumps)
    assert encode(value) == json_dumps(value)


def test_a_tenant_is_remembered_only_once_its_transaction_commits(runtime: Runtime) -> None:
    known: dict[str, int] = {}
    now = runtime.clock.now()
    session = runtime.session_factory()
    try:
        service.get_tenant_id(session=session, name="bien-hoa-rollback", now=now, known=known)
        session.rollback()
        assert known == {}
        assert service.get_tenant(session=session, name="bien-hoa-rollback") is None
    finally:
        session.close()
    with unit_of_work(runtime.session_factory) as session:
        tenant_id = service.get_tenant_id(session=session, name="long-khanh", now=now, known=known)
        assert known == {}
    assert known == {"long-khanh": tenant_id}
    with unit_of_work(runtime.session_factory) as session:
        stored = service.get_tenant(session=session, name="long-khanh")
        assert stored is not None
        assert stored.id == tenant_id


def _child_id(queue: Any) -> None:
    queue.put(new_correlation_id())


def test_correlation_ids_are_unique_and_a_forked_worker_draws_its_own() -> None:
    ids = [new_correlation_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child_id, args=(queue,))
    process.start()
    child = queue.get(timeout=30)
    process.join(30)
    assert child[:16] != ids[0][:16]


def test_integers_past_64_bits_are_refused_not_changed(
    client: TestClient, admin: dict[str, str]
) -> None:
    # SQLite would store 2**64 + 1 as a float (1.8446744073709552e19), PostgreSQL exactly:
    # refused on both, so no database changes a value, and nothing is written.
    for value in (2**64 + 1, -(2**63) - 1, {"counts": [1, 2**70]}):
        entity = {"id": STATION, "type": "Thing", "count": {"type": "Property", "value": value}}
        response = client.post(
            f"{BASE}/entityOperations/upsert",
            content=json.dumps([entity]).encode(),
            headers={**admin, "Content-Type": "application/json", "Accept-Language": "en"},
        )
        # A batch answers per entity (NGSI-LD): 207, this entity among the errors.
        assert response.status_code == 207, response.text
        assert response.json()["success"] == []
        (error,) = response.json()["errors"]
        assert error["error"]["type"].endswith("/BadRequestData")
        assert "64 bits" in error["error"]["detail"]
    assert client.get(f"{BASE}/entities/{STATION}", headers=admin).status_code == 404
    # The largest exact ones are kept, as before.
    entity = {"id": STATION, "type": "Thing", "count": {"type": "Property", "value": -(2**63)}}
    assert _upsert(client, admin, json.dumps([entity]).encode()) == 204
    assert _value(client, admin, "count") == -(2**63)
