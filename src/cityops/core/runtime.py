"""The runtime: the collaborators one CityOps instance shares (settings, database, clock, bus)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cityops.core.clock import Clock, SystemClock
from cityops.core.config import Settings
from cityops.core.db import create_db_engine, create_session_factory
from cityops.core.events import EventBus
from cityops.core.i18n import Translator, load_catalogs
from cityops.core.jobs import JobRunner
from cityops.core.metrics import Metrics
from cityops.core.outbox import Dispatcher, http_sender
from cityops.core.refcache import CACHES_KEY, ReferenceCache


@dataclass
class Runtime:
    """What the app, the command line and background jobs are given to work with."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    translate: Translator
    clock: Clock = field(default_factory=SystemClock)
    bus: EventBus = field(default_factory=EventBus)
    metrics: Metrics = field(default_factory=Metrics)
    caches: dict[str, Any] = field(default_factory=dict)
    # Values built from reference tables, followed through `session_factory` (core.refcache).
    reference: ReferenceCache = field(default_factory=lambda: ReferenceCache(0.0))
    jobs: JobRunner = field(default_factory=JobRunner)
    # Delivers the durable outbox (notifications, webhooks); built with the runtime.
    outbox: Dispatcher | None = None
    # Set by the composition root to auth's authenticator: (request, session) -> Principal | None.
    authenticator: Callable[..., Any] | None = None

    @classmethod
    def build(
        cls, settings: Settings, *, packages: list[str], clock: Clock | None = None
    ) -> Runtime:
        """Open the database and load the message catalogues for the given packages."""
        settings.ensure_secret_key()
        engine = create_db_engine(settings.database_url, shared=settings.workers > 1)
        session_factory = create_session_factory(engine)
        clock = clock or SystemClock()
        outbox = Dispatcher(session_factory=session_factory, clock=clock)
        outbox.register_sender("http", http_sender())
        reference = ReferenceCache(settings.reference_cache_seconds)
        reference.install(session_factory)
        return cls(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            translate=load_catalogs(packages, settings.default_language),
            clock=clock,
            outbox=outbox,
            reference=reference,
            caches={CACHES_KEY: reference},
        )
