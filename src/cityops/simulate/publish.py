"""Publishers: how a simulated observation reaches CityOps (MQTT, HTTP ingest, or directly).

MQTT and HTTP go through the ingest context exactly as a real device would (device key, attribute
map, validation); `direct` writes through the context store's `write_entities`, for back-fills
and benchmarks where the transport is not what is being measured.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cityops.context import flows as context_flows
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.ingest.mqtt import parse_url
from cityops.simulate.catalog import Asset
from cityops.simulate.entities import ingest_body, observation_entity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of one asset."""

    asset: Asset
    values: Mapping[str, Any]
    at: datetime


class Publisher(Protocol):
    """Something that delivers readings; returns how many it delivered."""

    def publish(self, readings: Sequence[Reading]) -> int: ...

    def close(self) -> None: ...


class DirectPublisher:
    """Write readings straight into the context store, one transaction per call."""

    def __init__(self, runtime: Runtime, tenant: str) -> None:
        self.runtime = runtime
        self.tenant = tenant

    def publish(self, readings: Sequence[Reading]) -> int:
        """Write the readings; return the number of entities written."""
        if not readings:
            return 0
        entities = [observation_entity(r.asset, r.values, r.at) for r in readings]
        with unit_of_work(self.runtime.session_factory) as session:
            outcome = context_flows.write_entities(
                runtime=self.runtime, session=session, tenant=self.tenant, entities=entities
            )
        for error in outcome.errors:
            log.warning("simulate: entity refused: %s", error)
        return len(outcome.success)

    def close(self) -> None:
        """Release nothing: the runtime owns the database."""


class HttpPublisher:
    """POST each reading to `/api/v1/ingest/{device_id}` with the device's key."""

    def __init__(self, base_url: str, keys: Mapping[str, str], *, timeout: float = 10.0) -> None:
        self.keys = keys
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def publish(self, readings: Sequence[Reading]) -> int:
        """Send the readings; return how many the server accepted."""
        sent = 0
        for r in readings:
            key = self.keys.get(r.asset.device_id)
            if key is None:
                continue
            try:
                response = self.client.post(
                    f"/api/v1/ingest/{r.asset.device_id}",
                    json=ingest_body(r.values, r.at),
                    headers={"X-Device-Key": key},
                )
            except httpx.HTTPError as exc:
                log.warning("simulate: %s not sent: %s", r.asset.device_id, exc)
                continue
            if response.status_code < 300:
                sent += 1
            else:
                log.warning(
                    "simulate: %s refused (%s): %s",
                    r.asset.device_id,
                    response.status_code,
                    response.text[:300],
                )
        return sent

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()


class MqttPublisher:
    """Publish each reading to `cityops/{tenant}/{device_id}/attrs` at QoS 1, key in payload."""

    def __init__(
        self, url: str, tenant: str, keys: Mapping[str, str], *, timeout: float = 10.0
    ) -> None:
        self.tenant = tenant
        self.keys = keys
        self.timeout = timeout
        address = parse_url(url)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"cityops-simulate-{tenant}",
        )
        if address.username:
            self.client.username_pw_set(address.username, address.password)
        if address.tls:
            self.client.tls_set()
        self.client.connect(address.host, address.port, keepalive=30)
        self.client.loop_start()

    def publish(self, readings: Sequence[Reading]) -> int:
        """Publish the readings and wait (bounded) until the broker acknowledged them."""
        infos = []
        for r in readings:
            key = self.keys.get(r.asset.device_id)
            if key is None:
                continue
            payload = {**ingest_body(r.values, r.at), "k": key}
            topic = f"cityops/{self.tenant}/{r.asset.device_id}/attrs"
            infos.append(self.client.publish(topic, json.dumps(payload), qos=1))
        delivered = 0
        for info in infos:
            try:
                info.wait_for_publish(timeout=self.timeout)
            except RuntimeError as exc:
                log.warning("simulate: MQTT publish failed: %s", exc)
                continue
            if info.is_published():
                delivered += 1
        return delivered

    def close(self) -> None:
        """Disconnect from the broker."""
        self.client.loop_stop()
        self.client.disconnect()
