"""The MQTT bridge: device readings from a broker into the context store, losing nothing acked.

Topic `cityops/{tenant}/{device_id}/attrs`, QoS 1, JSON payload: one reading
(`{"pm25": 35.2, "ts": "2026-11-20T03:00:00Z", "k": "<device key>"}`) or several
(`{"k": "<device key>", "readings": [{...}, {...}]}`). The key travels in the payload (`k` or
`key`) because CityOps does not run the broker's authentication: it is either the device's own
key or an API key holding `context:write` for the tenant (a per-tenant gateway key). A broker
that authenticates devices itself (username = device id, password = device key) is still
recommended; the payload key is checked in any case.

Delivery: the bridge connects with MQTT 5, a stable client id, `clean_start=False` and a session
expiry, so the broker keeps the subscription and queues messages while the bridge is away. Each
message is acknowledged only after the transaction holding it committed (`manual_ack`). Messages
redelivered after a reconnect whose batch had already committed are recognised (topic + payload
fingerprint, for payloads carrying a time or flagged as duplicates) and acknowledged without a
second write. Bad messages are acknowledged and dropped, counted by reason and logged; never
written.

Pipeline: a reader thread takes what the network thread received, decodes it (topic, JSON, key)
and adds it to the pending batch; a writer thread takes the whole pending batch — up to
`max_batch` messages (`CITYOPS_MQTT_BATCH_MAX`), waiting at most `max_wait`
(`CITYOPS_MQTT_BATCH_WAIT_MS`) after its first message arrived — and stores it as one
`write_entities` call and one commit, then acknowledges it. So the next batch is received and
decoded while the previous one is written and committed, and a busy writer gets bigger batches.
The pending batch is bounded: the reader waits while it is full (and the broker, past the receive
maximum, waits for acknowledgements).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.exc import InterfaceError, OperationalError

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.ingest import flows, service
from cityops.ingest.enums import Refusal
from cityops.ingest.metrics import IngestMetrics, metrics_of

log = logging.getLogger(__name__)

TOPIC_ROOT = "cityops"
MAX_PAYLOAD = 256 * 1024
MAX_READINGS = 1000
TRANSPORT = "mqtt"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in to it."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_url(url: str) -> BrokerAddress:
    """Parse `mqtt://[user:password@]host[:port]` or `mqtts://...` (TLS, port 8883)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(f"not an MQTT URL: {url!r} (expected mqtt://host:port or mqtts://...)")
    tls = scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(slots=True)
class _Message:
    mid: int
    qos: int
    topic: bytes
    payload: bytes
    dup: bool
    generation: int
    received: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Parsed:
    message: _Message
    fingerprint: int
    tenant: str = ""
    device_id: str = ""
    key: str = ""
    readings: list[Any] = field(default_factory=list)
    # Whether every reading carries its time: only then is an identical payload a redelivery.
    timed: bool = False
    # Why decoding refused the message (fixed), and why this store attempt refuses it (reset
    # on every attempt: a batch split after a failure is judged again).
    decoded: Refusal | None = None
    refusal: Refusal | None = None


class MqttBridge:
    """Subscribe to device topics and store their readings in batches, one transaction each."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        url: str | None = None,
        client_id: str = "cityops-ingest",
        shared_group: str | None = None,
        max_batch: int | None = None,
        max_wait: float | None = None,
        receive_maximum: int | None = None,
        session_expiry: int = 7 * 24 * 3600,
        remember: int = 200_000,
        on_commit: Callable[[list[float]], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.address = parse_url(url or runtime.settings.mqtt_url)
        self.client_id = client_id
        topic = f"{TOPIC_ROOT}/+/+/attrs"
        # Several workers share the load through an MQTT 5 shared subscription.
        self.topic = f"$share/{shared_group}/{topic}" if shared_group else topic
        settings = runtime.settings
        self.max_batch = max_batch or settings.mqtt_batch_max
        self.max_wait = settings.mqtt_batch_wait_ms / 1000 if max_wait is None else max_wait
        # The broker may send this many messages ahead of their acknowledgements: enough for a
        # batch being written, a full pending batch and what the reader holds (MQTT caps it).
        self.receive_maximum = receive_maximum or min(65_535, max(10_000, 4 * self.max_batch))
        self.session_expiry = session_expiry
        self.on_commit = on_commit
        self.metrics: IngestMetrics = metrics_of(runtime)
        self._queue: queue.Queue[_Message] = queue.Queue()
        # The batch being gathered by the reader for the writer, and its guard.
        self._pending: list[_Parsed] = []
        self._pending_changed = threading.Condition()
        self._reader_done = False
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: mqtt.Client | None = None
        # Fingerprints of committed messages, oldest first (bounded).
        self._remember = remember
        self._committed: OrderedDict[int, None] = OrderedDict()
        self.counts: dict[str, int] = {
            "received": 0,
            "stored": 0,
            "refused": 0,
            "duplicates": 0,
            "batches": 0,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (retrying in the background until the broker answers) and start storing."""
        if self._client is not None:
            return
        self._stopping.clear()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_expiry
        # How many unacknowledged messages the broker may send ahead: batches ack late.
        properties.ReceiveMaximum = self.receive_maximum
        client.connect_async(
            self.address.host,
            self.address.port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self._client = client
        self._reader_done = False
        self._threads = [
            threading.Thread(target=self._read, name="cityops-mqtt-read", daemon=True),
            threading.Thread(target=self._write, name="cityops-mqtt-write", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Store and acknowledge what has arrived, then disconnect (the session stays)."""
        if self._client is None:
            return
        self._stopping.set()
        with self._pending_changed:
            self._pending_changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads = []
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None
        self._connected.clear()
        self.metrics.connected.set(0)

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until the bridge is connected and its subscription confirmed; tell whether it is."""
        return self._connected.wait(timeout)

    @property
    def running(self) -> bool:
        """Whether the bridge was started (and not stopped) in this process."""
        return self._client is not None

    @property
    def connected(self) -> bool:
        """Whether the bridge is connected to the broker now."""
        return self._connected.is_set()

    # --- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the bridge", extra={"reason": str(reason_code)})
            return
        with self._ack_lock:
            self._generation += 1
        client.subscribe(self.topic, qos=1)
        self.metrics.connected.set(1)
        log.info("MQTT bridge connected", extra={"host": self.address.host})

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Any,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("MQTT broker refused the subscription", extra={"topic": self.topic})
            return
        self._connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        # Message ids belong to a connection: nothing received before this point may be
        # acknowledged on the next one (the broker redelivers those messages instead).
        with self._ack_lock:
            self._generation += 1
        self._connected.clear()
        self.metrics.connected.set(0)
        if not self._stopping.is_set():
            log.warning("MQTT bridge disconnected", extra={"reason": str(reason_code)})

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._queue.put(
            _Message(
                mid=message.mid,
                qos=message.qos,
                topic=message._topic,  # raw bytes: a topic that is not UTF-8 must not raise here
                payload=bytes(message.payload),
                dup=bool(message.dup),
                generation=self._generation,
            )
        )

    # --- the pipeline: reader (decode) → pending batch → writer (store, commit, ack) ------------

    def _read(self) -> None:
        """Decode received messages into the pending batch until stopped and drained."""
        while True:
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    with self._pending_changed:
                        self._reader_done = True
                        self._pending_changed.notify_all()
                    return
                continue
            messages = [first]
            # Take what else is there at once: one lock round per drain, not per message.
            while len(messages) < self.max_batch:
                try:
                    messages.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            decoded = [self._parse(message) for message in messages]
            with self._pending_changed:
                # Bounded: while the writer is behind, wait (messages stay unacknowledged).
                while len(self._pending) >= self.max_batch and not self._stopping.is_set():
                    self._pending_changed.wait(0.1)
                self._pending.extend(decoded)
                self._pending_changed.notify_all()

    def _take(self) -> list[_Parsed] | None:
        """Wait for the next batch: what is pending once it is full or its first message has
        waited `max_wait`; None when stopped and nothing is left."""
        with self._pending_changed:
            while not self._pending:
                if self._reader_done:
                    return None
                self._pending_changed.wait(0.1)
            deadline = self._pending[0].message.received + self.max_wait
            while len(self._pending) < self.max_batch and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._pending_changed.wait(remaining)
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._pending_changed.notify_all()
            return batch

    def _write(self) -> None:
        """Store batches one after another until the reader is done and nothing is pending."""
        while True:
            batch = self._take()
            if batch is None:
                return
            self.metrics.queued.set(self._queue.qsize() + len(self._pending))
            # Counted once, whatever retries or splits storing the batch takes.
            self.counts["received"] += len(batch)
            self.metrics.received.labels(TRANSPORT).inc(len(batch))
            self._process(batch)

    def _ack(self, batch: list[_Parsed]) -> None:
        client = self._client
        if client is None:
            return
        with self._ack_lock:
            for parsed in batch:
                message = parsed.message
                if message.qos > 0 and message.generation == self._generation:
                    client.ack(message.mid, message.qos)

    def _process(self, batch: list[_Parsed]) -> None:
        """Store a batch, retrying while the database is unreachable; isolate poison messages."""
        delay = 0.2
        while True:
            try:
                self._store(batch)
                return
            except (OperationalError, InterfaceError):
                if self._stopping.is_set():
                    # Not acknowledged: the broker redelivers these on the next connection.
                    log.warning("database unavailable at stop; batch left to the broker")
                    return
                log.warning("database unavailable; retrying the batch", exc_info=True)
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                if len(batch) == 1:
                    log.exception("message could not be stored; dropped")
                    self._refuse(Refusal.STORE_ERROR)
                    self._ack(batch)
                    return
                half = len(batch) // 2
                self._process(batch[:half])
                self._process(batch[half:])
                return

    def _refuse(self, reason: Refusal, count: int = 1) -> None:
        self.counts["refused"] += count
        self.metrics.refuse(TRANSPORT, reason.value, count)

    @staticmethod
    def _parse(message: _Message) -> _Parsed:
        """Decode a message's topic and payload (no database: runs on the reader thread)."""
        fingerprint = hash((message.topic, message.payload))
        parsed = _Parsed(message=message, fingerprint=fingerprint)
        try:
            topic = message.topic.decode("utf-8")
        except UnicodeDecodeError:
            parsed.decoded = Refusal.BAD_TOPIC
            return parsed
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != TOPIC_ROOT or parts[3] != "attrs" or not all(parts):
            parsed.decoded = Refusal.BAD_TOPIC
            return parsed
        parsed.tenant, parsed.device_id = parts[1], parts[2]
        if len(message.payload) > MAX_PAYLOAD:
            parsed.decoded = Refusal.BAD_PAYLOAD
            return parsed
        try:
            body = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError):
            parsed.decoded = Refusal.BAD_JSON
            return parsed
        if not isinstance(body, dict):
            parsed.decoded = Refusal.BAD_PAYLOAD
            return parsed
        key = body.pop("k", None) or body.pop("key", None)
        body.pop("key", None)
        if not isinstance(key, str) or not key:
            parsed.decoded = Refusal.WRONG_KEY
            return parsed
        parsed.key = key
        if "readings" in body:
            readings = body["readings"]
            if not isinstance(readings, list) or not 0 < len(readings) <= MAX_READINGS:
                parsed.decoded = Refusal.BAD_PAYLOAD
                return parsed
            parsed.readings = readings
            parsed.timed = all(
                isinstance(r, dict) and ("ts" in r or "observedAt" in r) for r in readings
            )
        else:
            parsed.readings = [body]
            parsed.timed = "ts" in body or "observedAt" in body
        return parsed

    def _judge(self, parsed: list[_Parsed]) -> None:
        """Set each message's refusal for this attempt: its decoding's, or a redelivery's.

        Runs on the writer thread, after the previous batch committed: a message redelivered
        while its first copy was being written is recognised once that copy is committed.
        """
        seen: set[int] = set()
        committed = self._committed
        for p in parsed:
            p.refusal = p.decoded
            if p.refusal is not None:
                continue
            # A redelivered message is the same topic and payload; without a time in the
            # payload, only the broker's duplicate flag tells a redelivery from a new reading.
            fingerprint = p.fingerprint
            if (p.timed or p.message.dup) and (fingerprint in committed or fingerprint in seen):
                p.refusal = Refusal.DUPLICATE
            seen.add(fingerprint)

    def _store(self, parsed: list[_Parsed]) -> None:
        self._judge(parsed)
        candidates = [p for p in parsed if p.refusal is None]
        items: list[flows.DeviceReadings] = []
        with unit_of_work(self.runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            devices = service.get_many(
                session=session, pairs={(p.tenant, p.device_id) for p in candidates}
            )
            gateway_keys: dict[tuple[str, str], bool] = {}
            for p in candidates:
                device = devices.get((p.tenant, p.device_id))
                if device is None:
                    p.refusal = Refusal.UNKNOWN_DEVICE
                    continue
                if not service.key_matches(device=device, key=p.key):
                    cache_key = (p.key, p.tenant)
                    if cache_key not in gateway_keys:
                        gateway_keys[cache_key] = flows.gateway_key_allows(
                            runtime=self.runtime, session=session, key=p.key, device=device
                        )
                    if not gateway_keys[cache_key]:
                        p.refusal = Refusal.WRONG_KEY
                        continue
                items.append(flows.DeviceReadings(device=device, readings=p.readings))
            if items:
                flows.ingest(
                    runtime=self.runtime, session=session, items=items, transport=TRANSPORT
                )
        committed_at = time.time()
        self._after_commit(parsed, items, committed_at)
        self._ack(parsed)

    def _after_commit(
        self, parsed: list[_Parsed], items: list[flows.DeviceReadings], committed_at: float
    ) -> None:
        for p in parsed:
            if p.refusal is Refusal.DUPLICATE:
                self.counts["duplicates"] += 1
                self.metrics.refuse(TRANSPORT, Refusal.DUPLICATE.value)
            elif p.refusal is not None:
                self._refuse(p.refusal)
                log.info(
                    "MQTT message refused",
                    extra={"reason": p.refusal.value, "tenant": p.tenant, "device": p.device_id},
                )
            else:
                self._committed[p.fingerprint] = None
        while len(self._committed) > self._remember:
            self._committed.popitem(last=False)
        lags: list[float] = []
        for item in items:
            for outcome in item.outcomes:
                if outcome.stored and outcome.observed_at is not None:
                    lags.append(committed_at - outcome.observed_at.timestamp())
                if not outcome.stored:
                    self.counts["refused"] += 1
                else:
                    self.counts["stored"] += 1
        for lag in lags:
            self.metrics.lag.labels(TRANSPORT).observe(max(lag, 0.0))
        self.counts["batches"] += 1
        self.metrics.batches.inc()
        if self.on_commit is not None and lags:
            self.on_commit(lags)
