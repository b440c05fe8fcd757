"""What a simulation produced, as people read it: each model-day with its positions, trades and
daily metrics (``GET /results`` and its CSV), and a run's metrics over its own days and since
the model's inception (the job page, the status API and the command line show the same numbers).

Daily metrics of a model-day ``D``: ``portfolio_value`` (the value at ``D``'s close),
``daily_return`` (from the model's value the day before, its ``initial_cash`` on its first day),
``cumulative_return`` (since inception: from ``initial_cash``) and ``drawdown`` (the fall from
the highest value since inception, ``initial_cash`` included, as a fraction of that peak).

A run's metrics: *this run* measures the model's days from the run's first day to its end,
starting from the model's value on the day before that first day (``initial_cash`` for a model
that starts there); *since inception* measures every day of the model up to the run's end,
starting from ``initial_cash``. So the since-inception return equals the last model-day's
``cumulative_return`` in ``/results``, and its max drawdown the deepest ``drawdown`` there.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from jobs.db import Database, today_utc
from jobs.prices.params import end_not_before_start, iso_date
from jobs.registry import ParamsError
from jobs.simulation import catalog, metrics
from jobs.simulation import store as sim_store
from jobs.simulation.catalog import ModelSpec
from jobs.simulation.job import SimulationParams

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NOT_FOUND = "No trading data found"
_DEFAULT_CASH = float(ModelSpec.model_fields["initial_cash"].default)


def initial_cash(model: str, specs: Mapping[str, ModelSpec] | None = None) -> float:
    """The model's starting cash (the default for a model no longer configured)."""
    specs = catalog.load_models() if specs is None else specs
    spec = specs.get(model)
    return spec.initial_cash if spec is not None else _DEFAULT_CASH


# -- a run's metrics ------------------------------------------------------------------------------

def run_and_inception(series: Sequence[tuple[date, float, int]], first_day: date,
                      cash: float) -> dict[str, Any]:
    """``{"run": Metrics, "inception": Metrics, "run_start_value", "first_day"}`` from the model's
    ``(day, value, trades)`` series up to the run's end."""
    before = [p for p in series if p[0] < first_day]
    run = [p for p in series if p[0] >= first_day]
    base = before[-1][1] if before else cash
    return {
        "first_day": first_day.isoformat(),
        "run_start_value": base,
        "run": metrics.summarize([(d, v) for d, v, _ in run], sum(n for *_, n in run),
                                 initial_value=base).to_dict(),
        "inception": metrics.summarize([(d, v) for d, v, _ in series],
                                       sum(n for *_, n in series), initial_value=cash).to_dict(),
    }


async def job_metrics(db: Database, params: SimulationParams) -> dict[str, dict[str, Any]]:
    """Each model of a simulation job: its metrics over this run and since inception."""
    end = min(params.end_date, today_utc())
    specs = catalog.load_models()
    series = await sim_store.daily_series(db, params.models, end)
    return {model: run_and_inception(series[model], start, initial_cash(model, specs))
            for model, start in params.model_starts.items()}


# -- GET /results --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultsQuery:
    job_id: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    model: list[str] | None = None
    limit: int | None = DEFAULT_LIMIT
    offset: int = 0

    def echo(self) -> dict[str, Any]:
        """The filters as given, for the "nothing found" answer."""
        out = asdict(self)
        for key in ("start_date", "end_date"):
            out[key] = out[key].isoformat() if out[key] else None
        out["model"] = ",".join(self.model) if self.model else None
        return out


def _int(raw: str, name: str, low: int, high: int | None) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ParamsError([{"field": name, "message": f"{raw!r} is not a whole number in {allowed}"}])
    return value


async def parse_query(db: Database, raw: Mapping[str, str | None], *, csv_export: bool = False
                      ) -> ResultsQuery:
    """The filters of ``/results`` from query parameters; ParamsError names the bad field."""
    def get(name: str) -> str | None:
        value = raw.get(name)
        return value.strip() or None if isinstance(value, str) else None

    dates: dict[str, date | None] = {}
    for name in ("start_date", "end_date"):
        value = get(name)
        try:
            dates[name] = iso_date(value) if value else None
        except ValueError as exc:
            raise ParamsError([{"field": name, "message": str(exc)}]) from None
    if dates["end_date"] is not None:
        try:
            end_not_before_start(dates["start_date"], dates["end_date"])
        except ValueError as exc:
            raise ParamsError([{"field": "end_date", "message": str(exc)}]) from None
    models = None
    if get("model"):
        models = list(dict.fromkeys(m.strip() for m in str(get("model")).split(",") if m.strip()))
        known = catalog.load_models()
        unknown = [m for m in models if m not in known and not await sim_store.has_results(db, m)]
        if unknown:
            raise ParamsError([{"field": "model",
                                "message": str(catalog.UnknownModelError(unknown, known))}])
    default_limit = None if csv_export else DEFAULT_LIMIT
    limit_raw, offset_raw = get("limit"), get("offset")
    limit = (default_limit if limit_raw is None
             else _int(limit_raw, "limit", 1, None if csv_export else MAX_LIMIT))
    offset = 0 if offset_raw is None else _int(offset_raw, "offset", 0, None)
    return ResultsQuery(get("job_id"), dates["start_date"], dates["end_date"], models, limit, offset)


def _position(cash: float, positions: Mapping[str, float], prices: Mapping[str, float]) -> dict[str, Any]:
    holdings = [{"symbol": s, "shares": float(n), "price": float(prices[s]),
                 "value": float(n) * float(prices[s])} for s, n in sorted(positions.items())]
    held = sum(h["value"] for h in holdings)
    return {"cash": float(cash), "holdings": holdings, "holdings_value": held,
            "value": float(cash) + held}


def daily_metrics(series: Sequence[tuple[date, float, int]], cash: float
                  ) -> dict[date, dict[str, float]]:
    """``{day: {portfolio_value, daily_return, cumulative_return, drawdown}}`` over a model's
    whole series (see the module docstring)."""
    out: dict[date, dict[str, float]] = {}
    previous, peak = cash, cash
    for day, value, _ in series:
        peak = max(peak, value)
        out[day] = {"portfolio_value": value,
                    "daily_return": value / previous - 1.0 if previous > 0 else 0.0,
                    "cumulative_return": value / cash - 1.0,
                    "drawdown": (peak - value) / peak if peak > 0 else 0.0}
        previous = value
    return out


async def query_results(db: Database, q: ResultsQuery) -> tuple[list[dict[str, Any]], int]:
    """The model-days matching ``q`` as ``/results`` answers them, and how many match in all."""
    rows, total = await sim_store.results_page(db, q.job_id, q.start_date, q.end_date, q.model,
                                               q.limit, q.offset)
    if not rows:
        return [], total
    specs = catalog.load_models()
    models = sorted({r["model"] for r in rows})
    series = await sim_store.daily_series(db, models, max(r["day"] for r in rows))
    daily = {m: daily_metrics(series[m], initial_cash(m, specs)) for m in models}
    previous_day: dict[tuple[str, date], date | None] = {}
    for m in models:
        days = [d for d, *_ in series[m]]
        previous_day.update({(m, d): p for p, d in zip([None, *days], days, strict=False)})
    page = {(r["model"], r["day"]): r for r in rows}
    wanted = {(r["model"], p) for r in rows
              if (p := previous_day.get((r["model"], r["day"]))) is not None
              and (r["model"], p) not in page}
    before = {**(await sim_store.positions_on(db, wanted) if wanted else {}), **page}
    records = []
    for r in rows:
        key = (r["model"], r["day"])
        prev = before.get((r["model"], previous_day[key])) if previous_day.get(key) else None
        start = (_position(prev["cash"], prev["positions"], prev["prices"]) if prev
                 else _position(initial_cash(r["model"], specs), {}, {}))
        records.append({
            "date": r["day"].isoformat(), "model": r["model"], "job_id": r["job_id"],
            "status": r["status"],
            "starting_position": start,
            "trades": [{"symbol": t["symbol"], "side": t["side"], "shares": abs(float(t["shares"])),
                        "price": float(t["price"]), "value": abs(float(t["value"])),
                        "cost": float(t["cost"])} for t in r["trades"]],
            "final_position": _position(r["cash"], r["positions"], r["prices"]),
            "metrics": daily[r["model"]][r["day"]],
            "warnings": r["warnings"],
            "started_at": r["started_at"].isoformat() if r["started_at"] else None,
            "completed_at": r["completed_at"].isoformat() if r["completed_at"] else None,
            "duration_seconds": r["duration_seconds"],
        })
    return records, total


# -- CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "date", "model", "job_id", "status",
    "start_cash", "start_holdings_value", "start_value", "start_holdings",
    "trades_count", "trades", "buy_value", "sell_value", "trade_costs",
    "end_cash", "end_holdings_value", "end_value", "end_holdings",
    "daily_return", "cumulative_return", "drawdown", "warnings",
    "started_at", "completed_at", "duration_seconds",
)


def _holdings_text(holdings: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{h['symbol']} {h['shares']!r} @ {h['price']!r}" for h in holdings)


def results_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """One row per model-day, positions and trades flattened, a header row; numbers written
    as Python writes floats (they read back exactly)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        s, f, m, t = r["starting_position"], r["final_position"], r["metrics"], r["trades"]
        writer.writerow([
            r["date"], r["model"], r["job_id"], r["status"],
            s["cash"], s["holdings_value"], s["value"], _holdings_text(s["holdings"]),
            len(t), "; ".join(f"{x['side']} {x['symbol']} {x['shares']!r} @ {x['price']!r}"
                              for x in t),
            sum(x["value"] for x in t if x["side"] == "buy"),
            sum(x["value"] for x in t if x["side"] == "sell"),
            sum(x["cost"] for x in t),
            f["cash"], f["holdings_value"], f["value"], _holdings_text(f["holdings"]),
            m["daily_return"], m["cumulative_return"], m["drawdown"], " | ".join(r["warnings"]),
            r["started_at"] or "", r["completed_at"] or "",
            "" if r["duration_seconds"] is None else r["duration_seconds"],
        ])
    return out.getvalue()


def equity_csv(curves: Mapping[str, Sequence[tuple[date, float]]]) -> str:
    """``date`` then one column per model: the value at each day's close (empty where the model
    has no model-day)."""
    days = sorted({d for curve in curves.values() for d, _ in curve})
    by_model = {m: dict(curve) for m, curve in curves.items()}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["date", *curves])
    for day in days:
        writer.writerow([day.isoformat(), *("" if (v := by_model[m].get(day)) is None else v
                                            for m in curves)])
    return out.getvalue()


Series = dict[str, list[tuple[date, float, int]]]  # model -> (day, value, trades that day)
Curves = dict[str, list[tuple[date, float]]]  # model -> (day, value)


async def job_series(db: Database, params: SimulationParams) -> tuple[Series, Curves]:
    """Each model of a simulation job: its whole series up to the run's end (for metrics and
    drawdowns since inception), and the equity curve over the run's days, as the job page draws
    it and its equity.csv exports it."""
    end = min(params.end_date, today_utc())
    series = await sim_store.daily_series(db, params.models, end)
    curves = {m: [(d, v) for d, v, _ in series[m] if d >= params.first_day] for m in params.models}
    return series, curves
