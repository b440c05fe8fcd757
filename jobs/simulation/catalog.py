"""The configured models, and the one-day step of a model that the simulation job runs.

A *model* is a named strategy with parameters over a symbol universe, with its starting cash and
trading costs (:class:`ModelSpec`). The defaults are three enabled models over the demo tickers;
a desk replaces them with a TOML or JSON file named by ``MARKETDESK_MODELS_FILE``::

    universe = ["AAPL", "MSFT", "NVDA"]        # optional: default universe of the models below

    [models.buy-and-hold]
    strategy = "buy_and_hold"

    [models.ma-fast]
    strategy = "ma_crossover"
    params = { fast = 5, slow = 20 }
    cost_per_trade = 0.5
    enabled = false

(JSON: the same shape, ``{"universe": [...], "models": {"name": {...}}}``; ``models`` may also be
a list of objects that carry their ``name``.) The file replaces the defaults entirely.

A *model-day* is what :func:`step` returns for one trading day: a JSON-ready dict with the
positions, trades, cash, value and the strategy's state. The next day's step takes it back as
``previous``, so a model's days run in date order.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from jobs.prices.calendar import is_trading_day
from jobs.prices.params import tickers
from jobs.prices.universe import WELL_KNOWN_TICKERS
from jobs.simulation import metrics
from jobs.simulation.portfolio import Portfolio, rebalance
from jobs.simulation.strategies import (
    History,
    Point,
    Strategy,
    StrategyError,
    get_strategy,
    history_upto,
    load_strategies,
)

__all__ = [
    "MODELS_FILE_ENV",
    "ModelSpec",
    "ModelsFileError",
    "UnknownModelError",
    "default_models",
    "enabled_models",
    "equity_curve",
    "history_from_bars",
    "history_start",
    "load_models",
    "model_results",
    "models_api",
    "read_models_file",
    "resolve_models",
    "run_model",
    "step",
    "strategies_api",
]

MODELS_FILE_ENV = "MARKETDESK_MODELS_FILE"
MODEL_NAME_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z")
MAX_UNIVERSE = 500


def _default_universe() -> list[str]:
    return list(WELL_KNOWN_TICKERS)


def _tickers(value: Any) -> list[str]:
    return tickers(value, MAX_UNIVERSE, "universe")


class ModelSpec(BaseModel):
    """One configured model; ``params`` are stored validated, with the strategy's defaults filled in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique model name: lower-case letters, digits, '-' and '_'.")
    strategy: str = Field(description="Name of a registered strategy.")
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True,
                                   description="The strategy's parameters.")
    universe: list[str] = Field(default_factory=_default_universe, description="Symbols the model trades.")
    enabled: bool = Field(True, description="Run when a simulation names no models.")
    title: str | None = Field(None, description="Display name; default: the strategy's title.")
    description: str | None = Field(None, description="Default: the strategy's description.")
    initial_cash: float = Field(100_000.0, gt=0, allow_inf_nan=False, description="Starting cash.")
    cost_per_trade: float = Field(1.0, ge=0, allow_inf_nan=False,
                                  description="Flat fee paid on every trade, in cash.")
    cost_bps: float = Field(0.0, ge=0, le=1000, allow_inf_nan=False,
                            description="Proportional fee, in basis points of each trade's value.")
    min_trade_value: float = Field(100.0, ge=0, allow_inf_nan=False,
                                   description="Trades worth less are skipped (a full exit always "
                                               "goes through).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a model name: use 1-64 lower-case letters, digits, "
                             "'-' or '_', starting with a letter or digit (e.g. ma-fast)")
        return value

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        get_strategy(value)  # UnknownStrategyError is a ValueError: it lists the known names
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> Any:
        strategy = info.data.get("strategy")
        if strategy is None:
            return value  # the strategy's own error is reported
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ValueError("must be a table/object of the strategy's parameters")
        try:
            return get_strategy(strategy).parse_params(value).model_dump(mode="json")
        except ValidationError as exc:
            raise ValueError("; ".join(_error_text(err) for err in exc.errors())) from None

    @field_validator("universe", mode="before")
    @classmethod
    def _universe(cls, value: Any) -> list[str]:
        return _tickers(value)

    @property
    def strategy_obj(self) -> Strategy[Any]:
        return get_strategy(self.strategy)

    def parsed_params(self) -> BaseModel:
        return self.strategy_obj.parse_params(self.params)

    @property
    def warmup_days(self) -> int:
        return self.strategy_obj.warmup_days(self.parsed_params())

    @property
    def display_title(self) -> str:
        return self.title or self.strategy_obj.title


class ModelsFileError(ValueError):
    """The models file cannot be used; the message names the file and the field."""


class UnknownModelError(ValueError):
    def __init__(self, unknown: Sequence[str], known: Iterable[str]) -> None:
        self.unknown = list(unknown)
        self.known = sorted(known)
        names = ", ".join(repr(n) for n in self.unknown)
        noun = "model" if len(self.unknown) == 1 else "models"
        super().__init__(f"Unknown {noun} {names}; known models: {', '.join(self.known) or '(none)'}")


# -- loading ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _default_models() -> dict[str, ModelSpec]:
    universe = _default_universe()
    specs = [
        ModelSpec(name="buy-and-hold", strategy="buy_and_hold", universe=universe),
        ModelSpec(name="ma-crossover", strategy="ma_crossover", params={"fast": 10, "slow": 50},
                  universe=universe),
        ModelSpec(name="momentum", strategy="momentum_rotation",
                  params={"lookback": 60, "top_n": 3, "rebalance_days": 5}, universe=universe),
    ]
    return {spec.name: spec for spec in specs}


def default_models() -> dict[str, ModelSpec]:
    """The shipped models: one per built-in strategy, all enabled, over the demo tickers."""
    return dict(_default_models())


def load_models(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Models by name: from ``path``, else from the file named by ``MARKETDESK_MODELS_FILE``,
    else :func:`default_models`. An edited file takes effect at once: it is read again
    whenever its modification time or size changed (parsed once per version, as every
    trigger asks for the models)."""
    if path is None:
        path = os.environ.get(MODELS_FILE_ENV, "").strip() or None
    if path is None:
        return default_models()
    try:
        st = os.stat(path)
    except OSError:
        return read_models_file(Path(path))  # it says what is wrong with the path
    return dict(_read_models_file_version(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=8)
def _read_models_file_version(path: str, mtime_ns: int, size: int) -> dict[str, ModelSpec]:
    return read_models_file(Path(path))


def read_models_file(path: Path) -> dict[str, ModelSpec]:
    where = f"models file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModelsFileError(f"Cannot read {where} (from {MODELS_FILE_ENV}): {reason}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ModelsFileError(f"Bad {where}: use a .toml or .json file")
    except tomllib.TOMLDecodeError as exc:
        raise ModelsFileError(f"Bad {where}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ModelsFileError(f"Bad {where}: not valid JSON: {exc}") from None
    try:
        return parse_models(data)
    except ValueError as exc:
        raise ModelsFileError(f"Bad {where}: {exc}") from None


def parse_models(data: Any) -> dict[str, ModelSpec]:
    """Models from the parsed content of a models file; ValueError names the bad field."""
    if not isinstance(data, Mapping):
        raise ValueError("the top level must be a table/object with a 'models' key")
    extra = sorted(set(data) - {"models", "universe"})
    if extra:
        raise ValueError(f"unknown top-level key(s) {', '.join(extra)}; allowed: models, universe")
    universe = None
    if "universe" in data:
        try:
            universe = _tickers(data["universe"])
        except ValueError as exc:
            raise ValueError(f"universe: {exc}") from None
    raw_models = data.get("models")
    entries: list[tuple[str, Any]] = []
    if isinstance(raw_models, Mapping):
        for key, raw in raw_models.items():
            if isinstance(raw, Mapping) and "name" in raw and raw["name"] != key:
                raise ValueError(f"models.{key}.name: {raw['name']!r} differs from its key {key!r}")
            entries.append((str(key), {**raw, "name": key} if isinstance(raw, Mapping) else raw))
    elif isinstance(raw_models, list):
        for i, raw in enumerate(raw_models):
            label = str(raw.get("name", i)) if isinstance(raw, Mapping) else str(i)
            entries.append((label, raw))
    else:
        raise ValueError("models: give a table/object of models by name (or a list of models)")
    if not entries:
        raise ValueError("models: the file defines no model")
    specs: dict[str, ModelSpec] = {}
    for label, raw in entries:
        if not isinstance(raw, Mapping):
            raise ValueError(f"models.{label}: must be a table/object, got {type(raw).__name__}")
        if universe is not None and "universe" not in raw:
            raw = {**raw, "universe": universe}
        try:
            spec = ModelSpec.model_validate(raw)
        except ValidationError as exc:
            raise ValueError("; ".join(_field_errors(f"models.{label}", exc))) from None
        if spec.name in specs:
            raise ValueError(f"models.{label}.name: model {spec.name!r} is defined twice")
        specs[spec.name] = spec
    return specs


def _error_text(err: Any) -> str:
    """``field: message`` for one pydantic error (just the message for a whole-model check)."""
    message = str(err["msg"]).removeprefix("Value error, ")
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {message}" if loc else message


def _field_errors(prefix: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join([prefix, *(str(p) for p in err["loc"])])
        out.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    return out


def enabled_models(models: Mapping[str, ModelSpec] | None = None) -> list[ModelSpec]:
    models = load_models() if models is None else models
    return [spec for spec in models.values() if spec.enabled]


def resolve_models(names: Sequence[str] | None,
                   models: Mapping[str, ModelSpec] | None = None) -> list[ModelSpec]:
    """The models a simulation runs: the ones named (disabled ones too, duplicates once, in the
    order given), or every enabled model when ``names`` is None or empty.

    Raises :class:`UnknownModelError` naming the unknown ones and listing the known ones, or a
    ValueError when no model is enabled.
    """
    models = load_models() if models is None else models
    if not names:
        chosen = enabled_models(models)
        if not chosen:
            raise ValueError(f"No model is enabled; known models: {', '.join(sorted(models))}")
        return chosen
    unknown = [n for n in dict.fromkeys(names) if n not in models]
    if unknown:
        raise UnknownModelError(unknown, models)
    return [models[n] for n in dict.fromkeys(names)]


def strategies_api() -> list[dict[str, Any]]:
    """Every registered strategy with its parameters' schema and defaults."""
    return [strategy.describe() for strategy in load_strategies().values()]


def models_api(models: Mapping[str, ModelSpec] | None = None) -> list[dict[str, Any]]:
    """What ``GET /api/models`` answers: every configured model with its parameters."""
    models = load_models() if models is None else models
    out = []
    for spec in models.values():
        strategy = spec.strategy_obj
        out.append({
            "name": spec.name,
            "title": spec.display_title,
            "description": spec.description or strategy.description,
            "strategy": strategy.name,
            "strategy_title": strategy.title,
            "params": dict(spec.params),
            "params_schema": strategy.params_model.model_json_schema(),
            "universe": list(spec.universe),
            "enabled": spec.enabled,
            "initial_cash": spec.initial_cash,
            "cost_per_trade": spec.cost_per_trade,
            "cost_bps": spec.cost_bps,
            "min_trade_value": spec.min_trade_value,
            "warmup_days": spec.warmup_days,
        })
    return out


# -- running ---------------------------------------------------------------------------------------

def history_from_bars(bars: Iterable[Any]) -> dict[str, list[Point]]:
    """``{symbol: [(day, close), ...]}`` oldest first, from objects with ``symbol``, ``day`` and
    ``close`` (price bars from a provider or from the store)."""
    out: dict[str, list[Point]] = {}
    for bar in bars:
        out.setdefault(bar.symbol, []).append((bar.day, float(bar.close)))
    for points in out.values():
        points.sort(key=lambda p: p[0])
    return out


def history_start(specs: Iterable[ModelSpec], first_day: date) -> date:
    """The first day of prices to load so every model has its warm-up before ``first_day``:
    ``first_day`` moved back by the largest ``warmup_days`` in NYSE trading days."""
    need = max((spec.warmup_days for spec in specs), default=0)
    day = first_day
    while need > 0:
        day -= timedelta(days=1)
        if is_trading_day(day):
            need -= 1
    return day


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def step(spec: ModelSpec, previous: Mapping[str, Any] | None, history: History,
         day: date) -> dict[str, Any]:
    """Run ``spec`` for trading day ``day`` and return the model-day (JSON-ready).

    ``previous`` is the model-day returned for the model's previous day (None on its first day:
    the portfolio starts as ``initial_cash`` and the state as ``{}``). ``history`` holds the
    closes per symbol; it may run past ``day`` - the strategy sees only closes up to ``day``.
    Trades fill at ``day``'s close; a symbol without a close on ``day`` is not traded (its
    position is kept, with a warning) and is valued at its last close.

    Returns ``{"day", "positions", "prices", "trades", "cash", "value", "state", "targets",
    "warnings"}``: ``prices`` are the closes the positions are valued at, ``targets`` what the
    strategy asked for (None: hold).
    """
    strategy = spec.strategy_obj
    params = strategy.parse_params(spec.params)
    if previous is None:
        portfolio, state, last_prices = Portfolio(cash=spec.initial_cash), {}, {}
    else:
        before = _as_date(previous["day"])
        if before >= day:
            raise ValueError(f"model {spec.name!r}: model-days run in date order, but "
                             f"{day.isoformat()} comes after {before.isoformat()}")
        portfolio = Portfolio.from_dict(previous)
        state = json.loads(json.dumps(previous.get("state") or {}))
        last_prices = {str(s): float(p) for s, p in (previous.get("prices") or {}).items()}

    # tuples: the strategy gets its own read-only copy, cut at the day (no look-ahead)
    visible = {symbol: tuple(history_upto(history.get(symbol, ()), day)) for symbol in spec.universe}
    closes = {s: pts[-1][1] for s, pts in visible.items() if pts and pts[-1][0] == day}
    marks = dict(last_prices)
    for symbol in portfolio.positions:
        points = visible.get(symbol) or history_upto(history.get(symbol, ()), day)
        if points:
            marks[symbol] = points[-1][1]
    marks.update(closes)
    unvalued = sorted(s for s in portfolio.positions if s not in marks)
    if unvalued:
        raise ValueError(f"model {spec.name!r} on {day.isoformat()}: no close on or before that "
                         f"day for held symbol(s) {', '.join(unvalued)}")

    held_before = dict(portfolio.positions)
    if strategy.uses_holdings:
        targets = strategy.target_weights(params, visible, day, state, held=held_before)
    else:
        targets = strategy.target_weights(params, visible, day, state)
    targets = _checked_targets(spec, targets)
    warnings: list[str] = []
    tradable: dict[str, float] = {}
    for symbol, weight in (targets or {}).items():
        if symbol in closes:
            tradable[symbol] = weight
        elif weight > 0 or portfolio.positions.get(symbol):
            warnings.append(f"{symbol}: no close on {day.isoformat()}, not traded "
                            "(its position is kept)")
    total_before = portfolio.value(marks)
    trades = rebalance(portfolio, tradable, marks, cost_per_trade=spec.cost_per_trade,
                       cost_bps=spec.cost_bps, min_trade_value=spec.min_trade_value)
    warnings += _dropped_trades(spec, tradable, held_before, trades, total_before)
    try:
        state = json.loads(json.dumps(state, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"strategy {strategy.name!r} left a state that is not JSON: {exc}") from None
    return {
        "day": day.isoformat(),
        "positions": dict(sorted(portfolio.positions.items())),
        "prices": {s: marks[s] for s in sorted(portfolio.positions)},
        "trades": [t.to_dict() for t in trades],
        "cash": portfolio.cash,
        "value": portfolio.value(marks),
        "state": state,
        "targets": None if targets is None else dict(sorted(targets.items())),
        "warnings": warnings,
    }


def _dropped_trades(spec: ModelSpec, targets: Mapping[str, float], held: Mapping[str, float],
                    trades: Sequence[Any], total: float) -> list[str]:
    """The entries and exits the strategy asked for that the portfolio did not make, each with
    its reason: a new position that stayed unopened, or a held one that stayed unsold."""
    traded = {t.symbol for t in trades}
    out = []
    for symbol, weight in sorted(targets.items()):
        if symbol in traded:
            continue
        wanted = weight * total
        if weight > 0 and not held.get(symbol):
            reason = (f"under min_trade_value {spec.min_trade_value:,.2f}"
                      if wanted < spec.min_trade_value else "not enough cash")
            out.append(f"{symbol}: wanted buy of {wanted:,.2f} ({weight:.2%} of the portfolio) "
                       f"dropped: {reason}")
        elif weight == 0 and held.get(symbol):
            out.append(f"{symbol}: wanted sell of the whole position dropped: its cost exceeds "
                       "the cash")
    return out


def _checked_targets(spec: ModelSpec, targets: Any) -> dict[str, float] | None:
    who = f"strategy {spec.strategy!r} (model {spec.name!r})"
    if targets is None:
        return None
    if not isinstance(targets, Mapping):
        raise StrategyError(f"{who} returned {type(targets).__name__}, not a mapping of weights or None")
    out: dict[str, float] = {}
    for symbol, weight in targets.items():
        if symbol not in spec.universe:
            raise StrategyError(f"{who} targeted {symbol!r}, which is not in the model's universe")
        if (not isinstance(weight, numbers.Real) or isinstance(weight, bool)
                or not math.isfinite(weight) or not 0 <= weight <= 1):
            raise StrategyError(f"{who} gave {symbol} the weight {weight!r}; weights lie in [0, 1]")
        out[symbol] = float(weight)
    if math.fsum(out.values()) > 1 + 1e-9:
        raise StrategyError(f"{who} gave weights summing to {math.fsum(out.values())!r}; "
                            "at most 1 (cash is the rest)")
    return out


def run_model(spec: ModelSpec, history: History, days: Iterable[date],
              previous: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """:func:`step` over ``days`` in order, each day taking the one before as ``previous``."""
    records: list[dict[str, Any]] = []
    for day in days:
        record = step(spec, previous, history, day)
        records.append(record)
        previous = record
    return records


def equity_curve(records: Iterable[Mapping[str, Any]]) -> list[tuple[date, float]]:
    return [(_as_date(r["day"]), float(r["value"])) for r in records]


def model_results(spec: ModelSpec, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The model's results over its model-days: :class:`metrics.Metrics` as a dict, measured from
    ``initial_cash`` (so first-day costs count), plus the equity curve."""
    curve = equity_curve(records)
    trades = sum(len(r.get("trades") or ()) for r in records)
    result = metrics.summarize(curve, trades, initial_value=spec.initial_cash).to_dict()
    result["equity_curve"] = [{"day": d.isoformat(), "value": v} for d, v in curve]
    return result
