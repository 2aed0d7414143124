"""The `mqtt` channel of the outbox: publish a message's payload to a topic of an MQTT(S) broker.

A message's target is `mqtt[s]://[user:password@]host[:port]/topic`; its payload is published
as is. Its headers set the publication: `MQTT-QoS` ("0", the default, or "1") and
`MQTT-Version` ("mqtt3.1.1", the default, or "mqtt5.0"). With QoS 1 an attempt succeeds only
once the broker's PUBACK arrives within the timeout, so an unacknowledged message is retried
(at least once, as everything the outbox delivers).

One client is kept per broker (host, port, credentials, TLS, protocol version) and reused. The
sender drives the client's network loop itself while it publishes, so no thread runs between
deliveries; a connection the broker dropped meanwhile is noticed and opened again.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from cityops.core.outbox import Delivery, Dispatcher, Parcel

log = logging.getLogger(__name__)

VERSIONS = {"mqtt3.1.1": mqtt.MQTTv311, "mqtt5.0": mqtt.MQTTv5}
KEEPALIVE = 60


class _Failed(Exception):
    """An attempt that cannot succeed now (the client is dropped, the message retried)."""


@dataclass(frozen=True, slots=True)
class _Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    version: str


@dataclass
class _Connection:
    client: mqtt.Client
    refused: list[str] = field(default_factory=list)


def parse_target(target: str) -> tuple[str, int, bool, str | None, str | None, str]:
    """Split `mqtt[s]://[user:password@]host[:port]/topic` into its parts (ValueError if bad)."""
    parts = urlsplit(target)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("not an mqtt:// or mqtts:// URI with a host")
    topic = unquote(parts.path[1:])
    if not topic or any(c in topic for c in "+#"):
        raise ValueError("an MQTT target needs a topic without wildcards")
    tls = parts.scheme == "mqtts"
    return (
        parts.hostname,
        parts.port or (8883 if tls else 1883),
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        topic,
    )


class MqttSender:
    """The sender of the `mqtt` channel (register it with `Dispatcher.register_sender`)."""

    def __init__(self, timeout: float = 5.0, ca_file: str | None = None) -> None:
        self.timeout = timeout
        self.ca_file = ca_file
        self._connections: dict[_Broker, _Connection] = {}
        self._lock = threading.Lock()

    def __call__(self, parcel: Parcel) -> Delivery:
        """Publish one message; success means written (QoS 0) or acknowledged (QoS 1)."""
        try:
            host, port, tls, username, password, topic = parse_target(parcel.target)
        except ValueError as exc:
            return Delivery(ok=False, error=f"bad MQTT target: {exc}", retry=False)
        qos = 1 if parcel.headers.get("MQTT-QoS") == "1" else 0
        version = parcel.headers.get("MQTT-Version", "mqtt3.1.1")
        if version not in VERSIONS:
            return Delivery(ok=False, error=f"unknown MQTT version {version[:20]}", retry=False)
        broker = _Broker(host, port, tls, username, password, version)
        with self._lock:
            try:
                self._publish(broker, topic, parcel.payload, qos)
            except (_Failed, OSError, ssl.SSLError, ValueError, RuntimeError) as exc:
                self._drop(broker)
                return Delivery(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        return Delivery(ok=True)

    def close(self) -> None:
        """Disconnect every cached client."""
        with self._lock:
            for broker in list(self._connections):
                self._drop(broker)

    def _publish(self, broker: _Broker, topic: str, payload: bytes, qos: int) -> None:
        deadline = time.monotonic() + self.timeout
        client = self._client(broker, deadline)
        info = client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            raise _Failed(mqtt.error_string(info.rc))
        while not info.is_published():
            if time.monotonic() > deadline:
                raise _Failed("no acknowledgement from the broker in time")
            self._loop(client, 0.05)

    def _client(self, broker: _Broker, deadline: float) -> mqtt.Client:
        connection = self._connections.get(broker)
        if connection is not None:
            # A broker that dropped us fails here: close the old client and connect afresh.
            with contextlib.suppress(_Failed):
                # Reads what arrived meanwhile: a broker that closed the connection shows here.
                self._loop(connection.client, 0.0)
                if connection.client.is_connected():
                    return connection.client
            self._drop(broker)
        connection = self._connect(broker)
        self._connections[broker] = connection
        while not connection.client.is_connected():
            if connection.refused:
                raise _Failed(f"connection refused: {connection.refused[0]}")
            if time.monotonic() > deadline:
                raise _Failed("no CONNACK from the broker in time")
            self._loop(connection.client, 0.05)
        return connection.client

    def _connect(self, broker: _Broker) -> _Connection:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"cityops-notify-{uuid.uuid4().hex[:12]}",
            protocol=VERSIONS[broker.version],
            reconnect_on_failure=False,
        )
        connection = _Connection(client)

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
            if reason.is_failure:
                connection.refused.append(str(reason))

        client.on_connect = on_connect
        client.connect_timeout = self.timeout
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set_context(ssl.create_default_context(cafile=self.ca_file))
        client.connect(broker.host, broker.port, keepalive=KEEPALIVE)
        return connection

    @staticmethod
    def _loop(client: mqtt.Client, timeout: float) -> None:
        code = client.loop(timeout=timeout)
        if code != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise _Failed(mqtt.error_string(code))

    def _drop(self, broker: _Broker) -> None:
        connection = self._connections.pop(broker, None)
        if connection is None:
            return
        try:
            connection.client.disconnect()
            connection.client.loop(timeout=0.0)
        except (OSError, ValueError, RuntimeError):
            log.debug("MQTT client closed uncleanly", exc_info=True)
        finally:
            sock = connection.client.socket()
            if sock is not None:
                sock.close()


def mqtt_sender(timeout: float = 5.0, ca_file: str | None = None) -> MqttSender:
    """Return a sender for the `mqtt` channel (mqtt:// and mqtts:// targets)."""
    return MqttSender(timeout=timeout, ca_file=ca_file)


def close(dispatcher: Dispatcher | None) -> None:
    """Disconnect the MQTT clients of a dispatcher's `mqtt` sender (at shutdown)."""
    sender = dispatcher.senders.get("mqtt") if dispatcher is not None else None
    if isinstance(sender, MqttSender):
        sender.close()
