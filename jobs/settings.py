"""One typed settings object, read from ``MARKETDESK_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.db import normalize_url


class SettingsError(RuntimeError):
    """A MARKETDESK_* variable holds a value we cannot use."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETDESK_", extra="ignore")

    data_dir: Path = Path(".marketdesk")
    database_url: str | None = None
    redis_url: str | None = None
    max_queued: int = Field(20, ge=1)
    lease_seconds: float = Field(30.0, gt=0)
    heartbeat_seconds: float = Field(5.0, gt=0)
    reconcile_seconds: float = Field(5.0, gt=0)
    cancel_grace_seconds: float = Field(3.0, ge=0)
    max_attempts: int = Field(3, ge=1)
    log_lines_per_job: int = Field(500, ge=10)
    embed_origins: str = "'self'"
    event_stream_maxlen: int = Field(10_000, ge=100)
    sse_keepalive_seconds: float = Field(15.0, gt=0, le=15.0)
    sse_client_queue: int = Field(256, ge=8)
    # what one SSE client may have waiting in memory; past it, it resumes from the stream
    sse_client_bytes: int = Field(4_000_000, ge=10_000)
    max_sse_clients: int = Field(2000, ge=1)
    # host names the web answers to (comma/space separated; "*" any); default: loopback + bind
    allowed_hosts: str = ""
    max_body_bytes: int = Field(1_000_000, ge=10_000)
    # a connection that has not sent a whole request head this long after opening is closed
    header_timeout_seconds: float = Field(10.0, gt=0)
    # a worker process runs at this nice level (0-19): where it shares CPUs with a web process,
    # requests are answered first and jobs take the CPU they leave (under full load ~1/10 of it)
    worker_nice: int = Field(10, ge=0, le=19)

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        return normalize_url(value) if value else None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'marketdesk.db').resolve()}"

    @property
    def embed_origin_list(self) -> list[str]:
        return [o for o in self.embed_origins.replace(",", " ").split() if o]


S = TypeVar("S", bound=BaseSettings)


def read_settings(model: type[S]) -> S:
    """A settings model (the engine's or a domain's) from the environment, failing with the
    variable's name and the bad value."""
    try:
        return model()
    except ValidationError as exc:
        prefix = str(model.model_config.get("env_prefix") or "").upper()
        problems = []
        for err in exc.errors():
            name = prefix + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise SettingsError("Bad settings: " + "; ".join(problems)) from None


def load_settings() -> Settings:
    """The engine's settings from the environment."""
    return read_settings(Settings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


@lru_cache(maxsize=32)
def settings_of(model: type[S]) -> S:
    """The process's instance of a domain's settings model (read once, like the engine's)."""
    return read_settings(model)
