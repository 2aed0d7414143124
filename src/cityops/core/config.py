"""Settings: one object, read once from `CITYOPS_*` environment variables."""

from __future__ import annotations

import json
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    """Where CityOps runs: developer machines are lenient, production is strict."""

    DEV = "dev"
    PRODUCTION = "production"


# Placeholders a gateway body template may hold; values are inserted JSON-escaped.
GATEWAY_PLACEHOLDERS = ("{phone}", "{phone_national}", "{zalo_user_id}", "{message}")


def _check_gateway(name: str, url: str, template: str) -> None:
    """Refuse a gateway whose URL is not HTTP(S) or whose body template does not render to JSON."""
    if not url:
        return
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"CITYOPS_{name.upper()}_URL must be an http:// or https:// URL")
    sample = template
    for placeholder in GATEWAY_PLACEHOLDERS:
        # A value with a quote and a backslash proves the placeholder sits inside a JSON string.
        sample = sample.replace(placeholder, json.dumps('x"\\y')[1:-1])
    try:
        json.loads(sample)
    except ValueError as exc:
        raise ValueError(
            f"CITYOPS_{name.upper()}_TEMPLATE must be JSON once its placeholders are filled in "
            f"(put each placeholder inside a JSON string): {exc}"
        ) from exc


class Settings(BaseSettings):
    """Every setting CityOps reads; built by `create_app(settings)` or the command line."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_", extra="ignore")

    env: Environment = Environment.DEV
    data_dir: Path = Path("./var")
    database_url: str = ""
    secret_key: str = ""
    default_language: str = "vi"
    timezone: str = "Asia/Ho_Chi_Minh"
    profile: str = "dongnai"
    log_level: str = "INFO"
    log_json: bool | None = None
    # MQTT broker the ingest bridge subscribes to (mqtt:// or mqtts://, user:password@ allowed).
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # Run the MQTT bridge inside the server process.
    mqtt_bridge: bool = False
    # The bridge stores what the broker delivered as one write and one commit: at most this
    # many messages, waiting at most this long after the first one for more to arrive.
    mqtt_batch_max: int = Field(default=2000, ge=1, le=100_000)
    mqtt_batch_wait_ms: int = Field(default=100, ge=0, le=60_000)
    # Server processes sharing the database (set by `cityops serve --workers N`). On SQLite,
    # more than one makes each process send its events to the others through the database and
    # take turns writing (core/fanout.py, core/db.py); PostgreSQL always does the former.
    workers: int = Field(default=1, ge=1, le=64)
    # Run background jobs (device health, notification delivery) inside the server process.
    background_jobs: bool = True
    # Evaluate alert rules in the thread that committed the observation, instead of the
    # evaluator thread (deterministic; for tests and one-shot tools).
    alerts_synchronous: bool = False
    # Folder of JSON-LD context documents preloaded at start-up (file name = URL-encoded URL).
    contexts_dir: Path | None = None
    # Time allowed to fetch a JSON-LD context that is neither shipped nor cached.
    context_fetch_timeout: float = Field(default=2.0, gt=0, le=30)
    # Largest page an NGSI-LD query may ask for (400 TooManyResults above it).
    ngsild_max_limit: int = Field(default=1000, ge=1, le=100_000)
    # Seconds an NGSI-LD query may run (SQL and `~=` patterns) before 400 TooComplexQuery.
    ngsild_query_timeout: float = Field(default=5.0, gt=0, le=600)
    map_tile_url: str = ""
    # Seconds a map layer (sensors, incidents) is reused in one process. Changes this process
    # makes are applied to it (sensor values) or drop it (incidents) at once, so this only bounds
    # how late another worker's writes show on a fresh load (the live stream carries them
    # meanwhile); 0: not reused.
    map_cache_seconds: float = Field(default=10.0, ge=0, le=300)
    # Seconds reference data (categories, SLA policies, calendar, departments, boundaries,
    # service catalogue, API keys) built in one process is reused; changes this process makes
    # drop it at once, so this bounds how late another worker's edits apply; 0: not reused.
    reference_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Largest file attached to an incident (images and PDF), in bytes; larger uploads get 413.
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # E-government: an open dossier due within this many working days is announced "due soon".
    egov_due_soon_working_days: int = Field(default=1, ge=0, le=30)
    # Demo dossiers `cityops seed` generates (once); default 30,000, none in production.
    egov_demo_dossiers: int | None = Field(default=None, ge=0, le=2_000_000)
    # Citizen reports: days after closing when a reporter's personal data are erased
    # (Law 91/2025/QH15: kept only as long as needed).
    citizen_retention_days: int = Field(default=180, ge=1, le=3650)
    # Reports one Open311 client (API key, or address for the public page) may send per minute.
    citizen_rate_per_minute: int = Field(default=120, ge=1, le=1_000_000)
    # Largest photo a citizen may attach to a report from the public page (3 at most), in bytes.
    citizen_photo_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, ge=1, le=365)
    web_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    # argon2id cost; the defaults are argon2-cffi's RFC 9106 "low memory" profile.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65536, ge=8)
    secure_cookies: bool | None = None
    # Build in-memory indexes (point → unit) at start-up instead of on the first request.
    warm_start: bool = True
    # The address people open CityOps at: links in notifications point there.
    public_url: str = "http://localhost:8000"

    # E-mail over SMTP (notifications); no host: e-mail is off.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "CityOps <noreply@localhost>"
    # none: plain SMTP (a local relay); starttls: upgrade on port 587; tls: implicit TLS (465).
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout: float = Field(default=10.0, gt=0, le=120)
    # SMS and Zalo through an HTTP gateway: POST to the URL with these headers (an API key) and
    # the body template, whose {phone} / {phone_national} / {zalo_user_id} / {message}
    # placeholders are filled in JSON-escaped. No URL: the channel is off.
    sms_gateway_url: str = ""
    sms_gateway_headers: dict[str, str] = Field(default_factory=dict)
    sms_gateway_template: str = '{"to": "{phone}", "text": "{message}"}'
    # Strip diacritics from SMS text: 160 plain characters fit one SMS, 70 accented ones do.
    sms_unaccented: bool = True
    zalo_gateway_url: str = ""
    zalo_gateway_headers: dict[str, str] = Field(default_factory=dict)
    zalo_gateway_template: str = (
        '{"recipient": {"user_id": "{zalo_user_id}"}, "message": {"text": "{message}"}}'
    )
    gateway_timeout: float = Field(default=10.0, gt=0, le=120)
    # Named notification groups of the rule pack (`policy.notify`): the roles whose users, where
    # their scope covers the alert, are told of the alert whatever their event preferences.
    notify_groups: dict[str, list[str]] = Field(
        default_factory=lambda: {"ioc": ["operator"], "leaders": ["leader"]}
    )
    # Live stream (GET /api/v1/stream): how long alerts, incidents and device events are kept
    # for resuming, how many entity changes each process keeps in memory (and for how long),
    # how often idle streams send a heartbeat and look for other workers' events, and how long
    # one connection lives before the client is asked to reconnect (and authenticate again).
    stream_retention_days: int = Field(default=7, ge=1, le=365)
    stream_ring_size: int = Field(default=50_000, ge=100, le=10_000_000)
    stream_ring_seconds: int = Field(default=600, ge=10, le=24 * 3600)
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    stream_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    stream_max_seconds: int = Field(default=900, ge=1, le=24 * 3600)
    # Entity changes are coalesced per entity attribute for this long (the latest value wins;
    # a lone change after a quiet window goes out at once), and one connection is sent at most
    # this many of them per window (the rest follow in the next windows, superseded by then).
    stream_entity_coalesce_ms: int = Field(default=1000, ge=0, le=60_000)
    stream_entity_window_max: int = Field(default=2000, ge=1, le=1_000_000)
    # TrueType font of PDF exports; it must cover Vietnamese (a `-Bold` sibling is used for
    # headings when present). None: DejaVu Sans from Debian's fonts-dejavu-core.
    pdf_font: Path | None = None

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'cityops.db').as_posix()}"
        if self.log_json is None:
            self.log_json = self.env is Environment.PRODUCTION
        if self.secure_cookies is None:
            self.secure_cookies = self.env is Environment.PRODUCTION
        self.public_url = self.public_url.rstrip("/")
        _check_gateway("sms_gateway", self.sms_gateway_url, self.sms_gateway_template)
        _check_gateway("zalo_gateway", self.zalo_gateway_url, self.zalo_gateway_template)
        if self.env is Environment.PRODUCTION and len(self.secret_key) < 32:
            raise ValueError(
                "CITYOPS_SECRET_KEY must be set to at least 32 characters in production "
                "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    def ensure_secret_key(self) -> str:
        """Return the secret key, generating and keeping one under data_dir in dev."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            self.secret_key = path.read_text().strip()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.secret_key = secrets.token_urlsafe(48)
            path.write_text(self.secret_key + "\n")
            path.chmod(0o600)
        return self.secret_key

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to print: secrets and passwords in URLs are hidden."""
        data = self.model_dump(mode="json")
        data["secret_key"] = "***" if self.secret_key else ""
        data["smtp_password"] = "***" if self.smtp_password else ""
        for name in ("sms_gateway_headers", "zalo_gateway_headers"):
            data[name] = dict.fromkeys(data[name], "***")
        from sqlalchemy.engine import make_url

        data["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        return data
