"""Prometheus metrics of the ingest context, registered once per runtime."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from cityops.core.runtime import Runtime

CACHE_KEY = "ingest.metrics"


@dataclass(frozen=True)
class IngestMetrics:
    """Counters of what arrived, what was stored and refused, and how late it was stored."""

    received: Counter
    stored_readings: Counter
    stored_values: Counter
    refused: Counter
    batches: Counter
    lag: Histogram
    queued: Gauge
    connected: Gauge

    def refuse(self, transport: str, reason: str, count: int = 1) -> None:
        """Count refusals of one reason."""
        self.refused.labels(transport, reason).inc(count)


def metrics_of(runtime: Runtime) -> IngestMetrics:
    """Return the ingest metrics of a runtime, registering them on first use."""
    found = runtime.caches.get(CACHE_KEY)
    if isinstance(found, IngestMetrics):
        return found
    registry = runtime.metrics.registry
    metrics = IngestMetrics(
        received=Counter(
            "cityops_ingest_messages_received",
            "Messages (MQTT) or requests (HTTP) received for ingest",
            ["transport"],
            registry=registry,
        ),
        stored_readings=Counter(
            "cityops_ingest_readings_stored",
            "Readings with at least one value stored",
            ["transport"],
            registry=registry,
        ),
        stored_values=Counter(
            "cityops_ingest_values_stored",
            "Attribute values stored",
            ["transport"],
            registry=registry,
        ),
        refused=Counter(
            "cityops_ingest_refused",
            "Messages, readings or values refused, by reason",
            ["transport", "reason"],
            registry=registry,
        ),
        batches=Counter(
            "cityops_ingest_batches",
            "MQTT batches committed",
            registry=registry,
        ),
        lag=Histogram(
            "cityops_ingest_lag_seconds",
            "Time from a reading's observation (or arrival, without one) to its commit",
            ["transport"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        ),
        queued=Gauge(
            "cityops_ingest_mqtt_queued",
            "MQTT messages received and not yet committed",
            registry=registry,
        ),
        connected=Gauge(
            "cityops_ingest_mqtt_connected",
            "1 while the MQTT bridge is connected to the broker",
            registry=registry,
        ),
    )
    runtime.caches[CACHE_KEY] = metrics
    return metrics
