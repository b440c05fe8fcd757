"""The lake scanner and its date-folder scan cache, in the real database (SQLite, PostgreSQL):
a hit when nothing changed, a rescan of exactly the folder that gained a day, invalid folder
names ignored, no-data markers read, and the cache kept across a restart."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

from jobs.contracts import calendar
from jobs.contracts.build import build_snapshot
from jobs.contracts.lake import held_mask, scan_lake, symbol_dir, ticks_root
from jobs.contracts.settings import ContractsSettings
from jobs.db import Database

DAYS = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]


def make_lake(tmp_path: Path) -> tuple[ContractsSettings, Path]:
    settings = ContractsSettings(lake_dir=tmp_path / "lake", lake_version="v7")
    root = ticks_root(settings)
    for symbol in ("SHFE.cu2501", "SHFE.cu2502", "SHFE.cu2503"):
        for day in DAYS:
            (symbol_dir(root, symbol) / f"date={day.isoformat()}").mkdir(parents=True)
    return settings, root


async def test_cache_hits_when_nothing_changed_and_rescans_exactly_the_changed_folder(
        db: Database, tmp_path: Path, db_url: str) -> None:
    settings, root = make_lake(tmp_path)
    symbols = ["SHFE.cu2501", "SHFE.cu2502", "SHFE.cu2503", "SHFE.cu2504"]
    cold = await scan_lake(db, settings, symbols)
    assert sorted(cold.rescanned) == symbols[:3] and cold.cache_hits == 0
    assert cold.missing == ["SHFE.cu2504"]
    assert calendar.from_mask(held_mask(cold.scans["SHFE.cu2502"])) == DAYS

    warm = await scan_lake(db, settings, symbols)
    assert warm.rescanned == [] and warm.cache_hits == 3
    assert warm.scans == cold.scans

    new_day = date(2024, 3, 7)
    (symbol_dir(root, "SHFE.cu2502") / f"date={new_day.isoformat()}").mkdir()
    changed = await scan_lake(db, settings, symbols)
    assert changed.rescanned == ["SHFE.cu2502"] and changed.cache_hits == 2
    scan = changed.scans["SHFE.cu2502"]
    assert (scan.n_dates, scan.first_date, scan.last_date) == (4, DAYS[0], new_day)

    # a restart: a new process (a new Database) finds the cache in the database
    again = Database(db_url)
    try:
        after = await scan_lake(again, settings, symbols)
    finally:
        await again.dispose()
    assert after.rescanned == [] and after.cache_hits == 3
    assert calendar.from_mask(held_mask(after.scans["SHFE.cu2502"])) == [*DAYS, new_day]


async def test_invalid_folder_names_are_ignored_and_no_data_markers_read(db: Database,
                                                                       tmp_path: Path) -> None:
    settings, root = make_lake(tmp_path)
    folder = symbol_dir(root, "SHFE.cu2501")
    for junk in ("date=2024-13-01", "date=2024-02-30", "date=abc", "date=2024-3-8", "_tmp", "date="):
        (folder / junk).mkdir()
    (folder / "date=2024-03-11").write_text("a file, not a date folder")
    (folder / "_no_data_dates.json").write_text(json.dumps(["2024-03-07", "not a date", "2024-03-08"]))
    found = await scan_lake(db, settings, ["SHFE.cu2501"])
    scan = found.scans["SHFE.cu2501"]
    assert calendar.from_mask(held_mask(scan)) == DAYS and scan.n_dates == 3
    assert scan.no_data == ("2024-03-07", "2024-03-08")


async def test_a_snapshot_counts_the_day_a_folder_gained(db: Database, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"exchanges": {"SHFE": {"cu": [
        {"symbol": "SHFE.cu2501", "open_date": "2024-03-04", "expiry": "2024-03-08"},
        {"symbol": "SHFE.cu2502", "open_date": "2024-03-04", "expiry": "2024-03-08"}]}}}))
    settings = ContractsSettings(lake_dir=tmp_path / "lake", lake_version="v7", contracts_catalog="file",
                                 contracts_catalog_file=catalog)
    root = ticks_root(settings)
    for symbol in ("SHFE.cu2501", "SHFE.cu2502"):
        for day in DAYS:
            (symbol_dir(root, symbol) / f"date={day.isoformat()}").mkdir(parents=True)
    first = (await build_snapshot(db, "SHFE", "cu", settings=settings)).payload
    rows = {c["symbol"]: c for c in first["contracts"]}
    assert rows["SHFE.cu2502"]["status"] == "incomplete" and rows["SHFE.cu2502"]["days_missing"] == 2
    assert first["scan"]["rescanned"] == 2

    os.makedirs(symbol_dir(root, "SHFE.cu2502") / "date=2024-03-07")
    second = (await build_snapshot(db, "SHFE", "cu", settings=settings)).payload
    rows = {c["symbol"]: c for c in second["contracts"]}
    assert second["scan"]["rescanned_symbols"] == ["SHFE.cu2502"] and second["scan"]["cache_hits"] == 1
    assert rows["SHFE.cu2502"]["days_held"] == 4 and rows["SHFE.cu2502"]["last_held"] == "2024-03-07"
    assert rows["SHFE.cu2501"]["days_held"] == 3
