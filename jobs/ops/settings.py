"""The operations domain's settings (``MARKETDESK_*`` variables), read once per process."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.settings import settings_of


class OpsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETDESK_", extra="ignore")

    # one health sample per period, taken by one worker whatever their number
    health_sample_seconds: float = Field(30.0, gt=0)
    # samples older than this are deleted; raw ones older than health_raw_hours become hourly
    health_retention_days: float = Field(90.0, gt=0)
    health_raw_hours: float = Field(25.0, gt=0)
    # how often each web process checks the database and Redis for the header badge
    health_check_seconds: float = Field(1.0, gt=0)
    # event-loop lag (p99 over the last minute) past which a web process counts as degraded
    health_lag_amber_ms: float = Field(250.0, gt=0)
    # the log buffer each web process keeps (lines from every process), and its bounds
    log_buffer_lines: int = Field(5000, ge=10)
    log_buffer_bytes: int = Field(4_000_000, ge=10_000)
    # HTTP request counts and latencies per route on /metrics (a middleware on every request)
    http_metrics: bool = True
    # how often a worker ships its log lines through the event stream
    log_ship_seconds: float = Field(0.5, gt=0)


def ops_settings() -> OpsSettings:
    return settings_of(OpsSettings)
