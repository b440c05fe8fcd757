"""The price domain's settings (``MARKETDESK_*`` variables), read once per process."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.settings import settings_of


class PricesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETDESK_", extra="ignore")

    default_provider: str = "synthetic"
    synthetic_latency_ms: int = Field(0, ge=0)
    synthetic_rate_limit_per_min: int | None = Field(None, ge=1)
    alphavantage_api_key: str | None = None
    alphavantage_url: str = "https://www.alphavantage.co/query"
    alphavantage_min_interval_seconds: float = Field(1.0, ge=0)

    @field_validator("synthetic_rate_limit_per_min", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if value in ("", None) else value


def prices_settings() -> PricesSettings:
    return settings_of(PricesSettings)
