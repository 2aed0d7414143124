"""End to end: the simulator's readings reach the context store over MQTT and HTTP ingest."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cityops.context import service as context_service
from cityops.context.models import History
from cityops.core.clock import FrozenClock
from cityops.core.runtime import Runtime
from cityops.ingest.mqtt import MqttBridge
from cityops.simulate import flows
from cityops.simulate.catalog import build_catalog
from cityops.simulate.generators import observe
from cityops.simulate.publish import MqttPublisher, Reading

from ..broker import Broker

SEED = 5


def _stored(runtime: Runtime, entity_ids: list[str]) -> dict[str, int]:
    with runtime.session_factory() as session:
        tenant = context_service.get_tenant(session=session, name="default")
        if tenant is None:
            return {}
        rows = context_service.get_entity_rows(
            session=session, tenant_id=tenant.id, entity_ids=entity_ids
        )
        out = {}
        for entity_id, row in rows.items():
            out[entity_id] = int(
                session.execute(
                    select(func.count()).select_from(History).where(History.entity_pk == row.pk)
                ).scalar_one()
            )
        return out


def test_readings_reach_the_store_over_mqtt(
    runtime: Runtime, mqtt_broker: Broker, clock: FrozenClock
) -> None:
    assets = [a for a in build_catalog(1) if a.kind in ("air", "traffic", "river_level")][:8]
    flows.provision(runtime=runtime, assets=assets, tenant="default")
    static = _stored(runtime, [a.entity_id for a in assets])
    bridge = MqttBridge(runtime, url=mqtt_broker.url)
    bridge.start()
    try:
        assert bridge.wait_connected(timeout=10)
        publisher = MqttPublisher(mqtt_broker.url, "default", flows.load_keys(runtime, "default"))
        at = clock.now() - timedelta(minutes=5)
        readings = [Reading(a, v, at) for a in assets if (v := observe(a, at, SEED)) is not None]
        try:
            assert publisher.publish(readings) == len(readings)
        finally:
            publisher.close()
        expected = {r.asset.entity_id: static[r.asset.entity_id] + len(r.values) for r in readings}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _stored(runtime, list(expected)) == expected:
                break
            time.sleep(0.1)
        assert _stored(runtime, list(expected)) == expected
    finally:
        bridge.stop()


def test_readings_reach_the_store_over_http(
    runtime: Runtime, client: TestClient, clock: FrozenClock
) -> None:
    assets = [a for a in build_catalog(1) if a.kind in ("weather", "hospital")][:4]
    flows.provision(runtime=runtime, assets=assets, tenant="default")
    static = _stored(runtime, [a.entity_id for a in assets])
    keys = flows.load_keys(runtime, "default")
    at = clock.now() - timedelta(minutes=5)
    from cityops.simulate.entities import ingest_body

    for asset in assets:
        values = observe(asset, at, SEED)
        assert values is not None
        response = client.post(
            f"/api/v1/ingest/{asset.device_id}",
            json=ingest_body(values, at),
            headers={"X-Device-Key": keys[asset.device_id]},
        )
        assert response.status_code < 300, response.text
        assert _stored(runtime, [asset.entity_id])[asset.entity_id] == static[
            asset.entity_id
        ] + len(values)
