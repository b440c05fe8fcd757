"""The simulation domain's settings (``MARKETDESK_*`` variables), read once per process."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.settings import settings_of


class SimulationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETDESK_", extra="ignore")

    max_simulation_days: int = Field(30, ge=1)


def simulation_settings() -> SimulationSettings:
    return settings_of(SimulationSettings)
