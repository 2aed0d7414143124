"""Settings: one object, read once from `CITYOPS_*` environment variables."""

from __future__ import annotations

import secrets
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    """Where CityOps runs: developer machines are lenient, production is strict."""

    DEV = "dev"
    PRODUCTION = "production"


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
    # Run background jobs (device health, notification delivery) inside the server process.
    background_jobs: bool = True
    # Folder of JSON-LD context documents preloaded at start-up (file name = URL-encoded URL).
    contexts_dir: Path | None = None
    # Time allowed to fetch a JSON-LD context that is neither shipped nor cached.
    context_fetch_timeout: float = Field(default=2.0, gt=0, le=30)
    # Largest page an NGSI-LD query may ask for (400 TooManyResults above it).
    ngsild_max_limit: int = Field(default=1000, ge=1, le=100_000)
    map_tile_url: str = ""
    # E-government: an open dossier due within this many working days is announced "due soon".
    egov_due_soon_working_days: int = Field(default=1, ge=0, le=30)
    # Demo dossiers `cityops seed` generates (once); default 30,000, none in production.
    egov_demo_dossiers: int | None = Field(default=None, ge=0, le=2_000_000)

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

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'cityops.db').as_posix()}"
        if self.log_json is None:
            self.log_json = self.env is Environment.PRODUCTION
        if self.secure_cookies is None:
            self.secure_cookies = self.env is Environment.PRODUCTION
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
        from sqlalchemy.engine import make_url

        data["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        return data
