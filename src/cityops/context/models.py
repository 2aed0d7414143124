"""Tables of the context hub: tenants, entities, current attributes, history, JSON-LD contexts
and NGSI-LD subscriptions.

Entity types and attribute names are stored expanded (full IRIs), so two clients using different
`@context`s for the same IRI share data. Values are split into a numeric column and a short text
column (both indexed with the attribute name, for `q`) beside the full JSON value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Audited, Base, JSONType, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit keys.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Longest text value kept in the indexed text column; longer strings are matched on the JSON.
TEXT_INDEX_LENGTH = 256


class Tenant(Base):
    """An NGSI-LD tenant (created by its first write)."""

    __tablename__ = "ngsild_tenant"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Entity(Base):
    """An NGSI-LD entity of one tenant, with its located point, bounding box and unit."""

    __tablename__ = "ngsild_entity"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("ngsild_tenant.id", ondelete="CASCADE")
    )
    entity_id: Mapped[str] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(512))
    # Commune/ward holding the entity's location (None outside the province or unlocated).
    unit_code: Mapped[str | None] = mapped_column(String(16), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    min_lon: Mapped[float | None] = mapped_column(Float)
    min_lat: Mapped[float | None] = mapped_column(Float)
    max_lon: Mapped[float | None] = mapped_column(Float)
    max_lat: Mapped[float | None] = mapped_column(Float)
    scopes: Mapped[list[str] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_ngsild_entity_tenant_id_entity_id", "tenant_id", "entity_id", unique=True),
        Index("ix_ngsild_entity_tenant_type", "tenant_id", "type", "entity_id"),
        Index("ix_ngsild_entity_bbox", "tenant_id", "min_lat", "max_lat", "min_lon", "max_lon"),
    )


class Attribute(Base):
    """The current value of one attribute instance (name + datasetId) of an entity."""

    __tablename__ = "ngsild_attribute"

    entity_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("ngsild_entity.pk", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    # "" is the default instance (no datasetId): a primary key column cannot be NULL.
    dataset_id: Mapped[str] = mapped_column(String(512), primary_key=True, default="")
    attr_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    value_num: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(String(TEXT_INDEX_LENGTH))
    unit_code: Mapped[str | None] = mapped_column(String(16))
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sub_attrs: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_ngsild_attribute_name_num", "name", "value_num"),
        Index("ix_ngsild_attribute_name_text", "name", "value_text"),
    )


class History(Base):
    """One attribute instance as observed (append-only)."""

    __tablename__ = "ngsild_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign key: history outlives a deleted entity row and inserts stay cheap.
    entity_pk: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(512))
    dataset_id: Mapped[str] = mapped_column(String(512), default="")
    # Milliseconds since the Unix epoch (UTC): portable, cheap to bucket and to index.
    observed_ms: Mapped[int] = mapped_column(BigInteger)
    value_num: Mapped[float | None] = mapped_column(Float)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    unit_code: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        # One row per instance: a redelivered observation overwrites itself (idempotent
        # writes); the (entity, name, time) prefix serves time-range reads.
        Index(
            "ix_ngsild_history_key", "entity_pk", "name", "observed_ms", "dataset_id", unique=True
        ),
    )


class LdContext(Base):
    """A JSON-LD context document the server holds: hosted, preloaded or cached after a fetch."""

    __tablename__ = "ngsild_ldcontext"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    # "hosted" (POSTed to /jsonldContexts), "preloaded" (operator), "cached" (fetched).
    kind: Mapped[str] = mapped_column(String(16))
    document: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subscription(Audited, Base):
    """An NGSI-LD subscription: who asked, what to watch, where to notify, and how that went.

    `document` holds the subscription as received with terms expanded (entity types, attribute
    names, geoproperty), so it renders compacted with any caller's context; `context` is the
    @context it was created with (notifications are compacted with it unless `jsonldContext`
    says otherwise). The columns beside it are what matching reads without opening the document.
    """

    __tablename__ = "ngsild_subscription"
    # receiverInfo may carry credentials (Authorization headers): the document stays out of the
    # audit log. Delivery outcomes update the status columns with Core statements, unaudited.
    __audit_exclude__ = frozenset({"document", "context"})

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    subscription_id: Mapped[str] = mapped_column(String(512))
    name: Mapped[str | None] = mapped_column(String(256))
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int] = mapped_column(Integer)
    # Communes/wards the owner may read when subscribing (None: every unit).
    owner_units: Mapped[list[str] | None] = mapped_column(JSONType)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    context: Mapped[Any] = mapped_column(JSONType, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Seconds that must pass between two notifications (None: no throttling).
    throttling: Mapped[float | None] = mapped_column(Float)
    # Seconds between periodic notifications (None: notify on changes).
    time_interval: Mapped[float | None] = mapped_column(Float)
    # Expanded entity types selected (None: any type, the subscription watches attributes only).
    entity_types: Mapped[list[str] | None] = mapped_column(JSONType)
    times_sent: Mapped[int] = mapped_column(Integer, default=0)
    times_failed: Mapped[int] = mapped_column(Integer, default=0)
    last_notification: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "ok" | "failed": the outcome of the latest delivery attempt (None before the first).
    notification_status: Mapped[str | None] = mapped_column(String(8))
    # When the latest notification was queued to leave (throttling spaces the next one).
    last_queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_ngsild_subscription_tenant_id", "tenant", "subscription_id", unique=True),
        Index("ix_ngsild_subscription_active", "tenant", "is_active"),
    )
