"""The contracts domain's settings (``MARKETDESK_*`` variables), read once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.settings import get_settings, settings_of


class ContractsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETDESK_", extra="ignore")

    # the tick-data lake: <lake_dir>/<lake_version>/ticks/symbol=<SYMBOL>/date=YYYY-MM-DD/
    lake_dir: Path | None = None  # default: <MARKETDESK_DATA_DIR>/lake
    lake_version: str = Field("v1", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # a snapshot younger than this is served as it is; an older one is served and rebuilt
    contracts_snapshot_ttl_s: float = Field(20.0, gt=0)
    # where the list of contracts comes from: "rules" (built in, offline) or "file" (JSON)
    contracts_catalog: Literal["rules", "file"] = "rules"
    contracts_catalog_file: Path | None = Field(None, validate_default=True)
    # a build that does not refresh the catalog uses the cached one while it is younger
    contracts_catalog_ttl_s: float = Field(6 * 3600.0, gt=0)
    # latency of the rules provider (lets the demo show a slow live refresh)
    contracts_rules_latency_ms: int = Field(0, ge=0)
    # how many years of expired contracts the rules provider lists
    contracts_history_years: int = Field(3, ge=1, le=30)

    @field_validator("contracts_catalog_file")
    @classmethod
    def _file_named(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None and info.data.get("contracts_catalog") == "file":
            raise ValueError("MARKETDESK_CONTRACTS_CATALOG=file needs a JSON catalog file "
                             "(format: see jobs/contracts/catalog.py)")
        return value

    @property
    def resolved_lake_dir(self) -> Path:
        return self.lake_dir if self.lake_dir is not None else get_settings().data_dir / "lake"


def contracts_settings() -> ContractsSettings:
    return settings_of(ContractsSettings)
