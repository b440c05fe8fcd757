"""The symbols domain's settings, read once per process."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.settings import settings_of


class SymbolsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETDESK_", extra="ignore", populate_by_name=True)

    # a card is stale when its data is older than this; the source design's variable name is
    # accepted beside ours
    symbol_staleness_hours: float = Field(
        48.0, gt=0, validation_alias=AliasChoices("MARKETDESK_SYMBOL_STALENESS_HOURS",
                                                  "SYMBOL_STALENESS_HOURS"))
    # how often a worker looks for cards that crossed the threshold (pages hear within this)
    symbol_staleness_check_seconds: float = Field(30.0, gt=0, le=60)
    # calendar days of daily bars levels are drawn from (downloaded first when missing)
    symbol_history_days: int = Field(730, ge=60, le=20 * 366)
    # levels kept per symbol (the most touched)
    symbol_max_levels: int = Field(8, ge=1, le=50)
    # the per-symbol run-time lock: its time to live (extended while a refresh runs) and how
    # long a refresh waits for another one of the same symbol to finish
    symbol_lock_seconds: float = Field(30.0, ge=1)
    symbol_lock_wait_seconds: float = Field(120.0, ge=0)
    # GET /api/symbols answers from the last body it built while no symbol changed and no
    # field computed from the clock can have moved (see web.symbols); off: built every time
    symbol_list_cache: bool = True


def symbols_settings() -> SymbolsSettings:
    return settings_of(SymbolsSettings)
