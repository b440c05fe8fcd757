"""A realistic demo lake (``marketdesk demo lake``; ``serve`` writes one on first run): the
contracts the listing rules give for the last few years, most of them complete, some with
gaps, some with days known to have no data, one never downloaded, and the active contracts
lagging the last trading day by a few days."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

from jobs.contracts import calendar
from jobs.contracts.catalog import rules_contracts
from jobs.contracts.lake import NO_DATA_FILE, symbol_dir
from jobs.db import Database, today_utc

TICK_HEADER = "ts,last,volume,bid1,ask1\n"


def write_day(folder: Path, day: date, rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    price = 70_000 + rng.randint(-3000, 3000)
    rows = "".join(f"{day.isoformat()}T0{9 + i}:00:00+08:00,{price + i * 10},{rng.randint(1, 90)},"
                   f"{price + i * 10 - 10},{price + i * 10 + 10}\n" for i in range(3))
    (folder / "part-0.csv").write_text(TICK_HEADER + rows)


def write_demo_lake(root: Path, exchange: str = "SHFE", var: str = "cu", years: int = 3,
                    today: date | None = None, seed: int = 7) -> dict[str, int]:
    """Write the demo lake under ``root`` (the ``ticks`` folder); returns what was written."""
    today = today or today_utc()
    rng = random.Random(f"{seed}:{exchange}:{var}")
    contracts = rules_contracts(exchange, var, today, years)
    counts = {"contracts": len(contracts), "folders": 0, "not_downloaded": 0, "gaps": 0,
              "no_data_days": 0, "lagging": 0}
    active = [c for c in contracts if c.expiry and c.expiry >= today]
    lagging = {c.symbol for c in active[:3]}
    for i, contract in enumerate(contracts):
        assert contract.open_date and contract.expiry
        if i == 1:  # one old contract nobody downloaded
            counts["not_downloaded"] += 1
            continue
        days = calendar.trading_days(contract.open_date, min(contract.expiry, today))
        folder = symbol_dir(root, contract.symbol)
        skip: set[date] = set()
        no_data: list[date] = []
        if contract.symbol in lagging:
            lag = rng.randint(1, 4)
            skip.update(days[-lag:])
            counts["lagging"] += 1
        elif contract.expiry < today and rng.random() < 0.25:
            skip.update(rng.sample(days[5:-5], k=min(rng.randint(1, 6), max(len(days) - 10, 0))))
            counts["gaps"] += 1
        elif contract.expiry < today and rng.random() < 0.2:
            no_data = rng.sample(days[5:-5], k=min(rng.randint(1, 3), max(len(days) - 10, 0)))
            skip.update(no_data)
            counts["no_data_days"] += len(no_data)
        folder.mkdir(parents=True, exist_ok=True)
        for day in days:
            if day not in skip:
                write_day(folder / f"date={day.isoformat()}", day, rng)
                counts["folders"] += 1
        if no_data:
            tmp = folder / (NO_DATA_FILE + ".tmp")
            tmp.write_text(json.dumps(sorted(d.isoformat() for d in no_data)))
            tmp.replace(folder / NO_DATA_FILE)
        if i == 0:  # leftovers a real lake has: ignored by the scanner
            (folder / "date=unfinished").mkdir(exist_ok=True)
            (folder / "_tmp").mkdir(exist_ok=True)
    return counts


async def seed(db: Database) -> None:
    """First `serve`: a demo lake for SHFE cu (unless the lake has one) and its snapshot."""
    import asyncio

    from jobs.contracts.build import build_snapshot
    from jobs.contracts.lake import ticks_root
    from jobs.contracts.settings import contracts_settings

    settings = contracts_settings()
    root = ticks_root(settings)
    if settings.contracts_catalog != "rules":
        return
    if not await asyncio.to_thread(root.exists):
        await asyncio.to_thread(write_demo_lake, root, "SHFE", "cu", settings.contracts_history_years)
    await build_snapshot(db, "SHFE", "cu")
