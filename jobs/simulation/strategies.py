"""Trading strategies: what a model holds, decided once a day at the close.

A strategy is a subclass (or an instance of one) of :class:`Strategy`. Each trading day ``D`` of
a simulation it is called with

* ``params`` - its validated ``params_model`` instance;
* ``history`` - ``{symbol: [(day, close), ...]}`` for every symbol of the model's universe,
  oldest first, ending at or before ``D`` (never after: the caller cuts it). A symbol priced on
  ``D`` has ``D`` as its last day; one without a close on ``D`` cannot be traded that day; a
  symbol with no data at all has an empty sequence. Treat it as read-only (the catalog's
  ``step`` hands out tuples);
* ``day`` - ``D``;
* ``state`` - a JSON-serialisable dict, ``{}`` on the first simulated day, which the strategy
  may change in place; the caller stores it with the model-day and hands it back the next day
  (after a JSON round trip, so keep to dicts, lists, strings, numbers, booleans and None).

It answers with *targets*: a mapping ``{symbol: weight}`` (weight = fraction of the portfolio's
value at ``D``'s close, ``0 <= weight <= 1``, weights summing to at most 1; cash is the rest), or
:data:`HOLD` (``None``). Only the symbols named are traded: one left out keeps its shares, so
``{}`` and ``HOLD`` both mean "keep every position as it is". That lets buy-and-hold never trade
after its first day and the crossover trade only the symbols whose signal changed, instead of
rebalancing everything back to its weight every day.

Strategies are found by name in a registry built from :data:`BUILTIN_STRATEGIES` and the
``marketdesk.strategies`` entry-point group: each entry point loads a :class:`Strategy` subclass
or instance, e.g. in a desk's ``pyproject.toml``::

    [project.entry-points."marketdesk.strategies"]
    mean_reversion = "desk_models.reversion:MeanReversion"
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BUILTIN_STRATEGIES",
    "ENTRY_POINT_GROUP",
    "HOLD",
    "BuyAndHold",
    "History",
    "MaCrossover",
    "MomentumRotation",
    "Point",
    "Strategy",
    "StrategyError",
    "Targets",
    "UnknownStrategyError",
    "build_registry",
    "get_strategy",
    "history_upto",
    "load_strategies",
    "priced_on",
    "sma",
    "strategy_names",
    "trailing_return",
]

ENTRY_POINT_GROUP = "marketdesk.strategies"

#: One close: (trading day, closing price).
Point = tuple[date, float]
#: symbol -> closes, oldest first.
History = Mapping[str, Sequence[Point]]
#: symbol -> target weight for the symbols to trade; None (HOLD) keeps every position.
Targets = Mapping[str, float] | None

#: Returned by a strategy that wants no trade today.
HOLD: Targets = None

P = TypeVar("P", bound=BaseModel)


class StrategyError(ValueError):
    """A strategy could not be loaded, or answered something unusable."""


class UnknownStrategyError(StrategyError, LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"Unknown strategy {name!r}; known strategies: {', '.join(self.known)}")


class NoParams(BaseModel):
    """A strategy without parameters."""

    model_config = ConfigDict(extra="forbid")


class Strategy(ABC, Generic[P]):
    """Base class of every strategy; see the module docstring for the calling contract.

    Subclasses set the four class attributes and implement :meth:`target_weights`; they
    override :meth:`warmup_days` when they look back in time.
    """

    #: registry key, used in model files and the API (e.g. ``"ma_crossover"``)
    name: ClassVar[str]
    #: short human name (e.g. ``"Moving-average crossover"``)
    title: ClassVar[str]
    #: one or two sentences for the models page
    description: ClassVar[str]
    #: pydantic model of the parameters: give every field a default, a description and bounds
    params_model: ClassVar[type[BaseModel]] = NoParams
    #: True: ``target_weights`` also takes ``held``, the shares the portfolio holds per symbol
    #: when the day's decision is made (a strategy that decides from what it holds, not from
    #: what it asked for before: a wanted trade may have been dropped)
    uses_holdings: ClassVar[bool] = False

    def parse_params(self, raw: Mapping[str, Any] | BaseModel | None = None) -> P:
        """Validated parameters; raises pydantic's ``ValidationError`` naming each bad field."""
        if isinstance(raw, self.params_model):
            return cast(P, raw)
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        return cast(P, self.params_model.model_validate(dict(raw or {})))

    def warmup_days(self, params: P) -> int:
        """How many trading days of closes, before the first simulated day, the strategy needs
        to decide on that first day (0: none)."""
        return 0

    @abstractmethod
    def target_weights(self, params: P, history: History, day: date,
                       state: dict[str, Any]) -> Targets:
        """The targets after ``day``'s close (see the module docstring)."""

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/models`` shows of the strategy: its parameters' schema and defaults."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "params_schema": self.params_model.model_json_schema(),
            "default_params": self.params_model().model_dump(mode="json"),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} strategy {getattr(self, 'name', '?')!r}>"


# -- helpers for strategy authors ------------------------------------------------------------------

def history_upto(points: Sequence[Point], day: date) -> Sequence[Point]:
    """The points on or before ``day`` (points are oldest first)."""
    if not points or points[-1][0] <= day:
        return points
    return points[:bisect_right(points, day, key=lambda p: p[0])]


def priced_on(points: Sequence[Point], day: date) -> bool:
    """Whether the series has a close on ``day`` (its last point, in a history cut at ``day``)."""
    return bool(points) and points[-1][0] == day


def sma(points: Sequence[Point], n: int) -> float | None:
    """Simple moving average of the last ``n`` closes; None with fewer than ``n`` closes."""
    if n < 1 or len(points) < n:
        return None
    return math.fsum(p[1] for p in points[-n:]) / n


def trailing_return(points: Sequence[Point], n: int) -> float | None:
    """Return over the last ``n`` closes-to-close steps (``last / close n points back - 1``);
    None without ``n + 1`` closes or with a non-positive base price."""
    if n < 1 or len(points) < n + 1:
        return None
    base = points[-1 - n][1]
    if base <= 0:
        return None
    return points[-1][1] / base - 1.0


# -- built-in strategies ---------------------------------------------------------------------------

class BuyAndHold(Strategy[NoParams]):
    name = "buy_and_hold"
    title = "Buy and hold"
    description = ("Puts equal weight in every symbol of the universe priced on the first day, "
                   "then never trades again.")
    params_model = NoParams

    uses_holdings = True

    def target_weights(self, params: NoParams, history: History, day: date,
                       state: dict[str, Any], held: Mapping[str, float] | None = None) -> Targets:
        # from what is held when told: a first buy the portfolio dropped is tried again
        if (state.get("bought") if held is None else any(n > 0 for n in held.values())):
            return HOLD
        priced = sorted(s for s, points in history.items() if priced_on(points, day))
        if not priced:
            return HOLD  # nothing to buy yet: try again on the next day
        state["bought"] = True
        return {s: 1.0 / len(priced) for s in priced}


class MaCrossoverParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fast: int = Field(10, ge=1, le=250, description="Trading days in the fast simple moving average.")
    slow: int = Field(50, ge=2, le=500, description="Trading days in the slow simple moving average; "
                                                    "must be greater than fast.")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MaCrossoverParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be less than slow ({self.slow})")
        return self


class MaCrossover(Strategy[MaCrossoverParams]):
    name = "ma_crossover"
    title = "Moving-average crossover"
    description = ("Per symbol: long with 1/N of the portfolio (N = universe size) while the fast "
                   "moving average of closes is above the slow one, out otherwise. Trades only "
                   "the symbols whose signal changed.")
    params_model = MaCrossoverParams

    def warmup_days(self, params: MaCrossoverParams) -> int:
        return params.slow - 1

    uses_holdings = True

    def target_weights(self, params: MaCrossoverParams, history: History, day: date,
                       state: dict[str, Any], held: Mapping[str, float] | None = None) -> Targets:
        # Decide from what the portfolio holds: a buy the portfolio dropped (short of cash, or
        # under min_trade_value) is wanted again the next day while the signal stays up.
        # Without ``held`` (called on its own) the symbols the strategy last asked to be long.
        holding = (set(state.get("long", [])) if held is None
                   else {s for s, shares in held.items() if shares > 0})
        weight = 1.0 / len(history) if history else 0.0
        targets: dict[str, float] = {}
        up_now: set[str] = set()
        for symbol, points in history.items():
            if not priced_on(points, day):
                if symbol in holding:
                    up_now.add(symbol)  # no close today: no new signal, nothing can be traded
                continue
            fast, slow = sma(points, params.fast), sma(points, params.slow)
            up = fast is not None and slow is not None and fast > slow
            if up:
                up_now.add(symbol)
            if up and symbol not in holding:
                targets[symbol] = weight
            elif not up and symbol in holding:
                targets[symbol] = 0.0
        state["long"] = sorted(up_now)
        return targets or HOLD


class MomentumParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lookback: int = Field(60, ge=1, le=500,
                          description="Trading days over which the return is measured.")
    top_n: int = Field(3, ge=1, le=100, description="How many symbols to hold.")
    rebalance_days: int = Field(5, ge=1, le=250,
                                description="Rebalance every this many trading days (1: daily).")


class MomentumRotation(Strategy[MomentumParams]):
    name = "momentum_rotation"
    title = "Momentum rotation"
    description = ("Every rebalance_days trading days (starting on the first day), holds the top_n "
                   "symbols with the highest return over the last lookback trading days, in equal "
                   "weights, and sells the rest.")
    params_model = MomentumParams

    def warmup_days(self, params: MomentumParams) -> int:
        return params.lookback

    def target_weights(self, params: MomentumParams, history: History, day: date,
                       state: dict[str, Any]) -> Targets:
        seen = int(state.get("days", 0))
        state["days"] = seen + 1
        if seen % params.rebalance_days:
            return HOLD
        ranked: list[tuple[float, str]] = []
        for symbol, points in history.items():
            ret = trailing_return(points, params.lookback) if priced_on(points, day) else None
            if ret is not None:
                ranked.append((-ret, symbol))
        picks = [symbol for _, symbol in sorted(ranked)[:params.top_n]]
        state["holding"] = picks
        targets = dict.fromkeys(history, 0.0)
        for symbol in picks:
            targets[symbol] = 1.0 / len(picks)
        return targets


BUILTIN_STRATEGIES: tuple[type[Strategy[Any]], ...] = (BuyAndHold, MaCrossover, MomentumRotation)


# -- registry --------------------------------------------------------------------------------------

def _as_strategy(obj: object, origin: str) -> Strategy[Any]:
    if isinstance(obj, type) and issubclass(obj, Strategy):
        try:
            obj = obj()
        except TypeError as exc:
            raise StrategyError(f"{origin}: cannot instantiate {obj.__name__}: {exc}") from None
    if not isinstance(obj, Strategy):
        raise StrategyError(f"{origin}: {obj!r} is not a Strategy subclass or instance")
    for attr in ("name", "title", "description"):
        if not isinstance(getattr(obj, attr, None), str) or not getattr(obj, attr):
            raise StrategyError(f"{origin}: {type(obj).__name__}.{attr} must be a non-empty string")
    if not (isinstance(obj.params_model, type) and issubclass(obj.params_model, BaseModel)):
        raise StrategyError(f"{origin}: {type(obj).__name__}.params_model must be a pydantic model")
    try:
        obj.params_model()
    except Exception as exc:  # the API shows defaults, and models may omit params
        raise StrategyError(f"{origin}: {type(obj).__name__}.params_model needs a default for "
                            f"every field: {exc}") from None
    return obj


def build_registry(builtins: Iterable[type[Strategy[Any]] | Strategy[Any]],
                   eps: Iterable[EntryPoint] = ()) -> dict[str, Strategy[Any]]:
    """Strategies by name from built-ins and entry points; a name claimed twice is an error
    (unless both are the same class, as when the built-ins are also declared as entry points)."""
    registry: dict[str, Strategy[Any]] = {}
    origins: dict[str, str] = {}
    candidates: list[tuple[object, str]] = [(b, f"built-in {b!r}") for b in builtins]
    for ep in eps:
        origin = f"entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP!r})"
        try:
            candidates.append((ep.load(), origin))
        except Exception as exc:
            raise StrategyError(f"{origin} failed to load: {type(exc).__name__}: {exc}") from exc
    for obj, origin in candidates:
        strategy = _as_strategy(obj, origin)
        existing = registry.get(strategy.name)
        if existing is not None:
            if type(existing) is type(strategy):
                continue
            raise StrategyError(f"strategy name {strategy.name!r} from {origin} is already taken "
                                f"by {origins[strategy.name]}")
        registry[strategy.name] = strategy
        origins[strategy.name] = origin
    return dict(sorted(registry.items()))


_registry: dict[str, Strategy[Any]] | None = None


def load_strategies(*, reload: bool = False) -> dict[str, Strategy[Any]]:
    """Every known strategy by name (built once; ``reload=True`` rescans the entry points)."""
    global _registry
    if _registry is None or reload:
        _registry = build_registry(BUILTIN_STRATEGIES, entry_points(group=ENTRY_POINT_GROUP))
    return _registry


def strategy_names() -> list[str]:
    return list(load_strategies())


def get_strategy(name: str) -> Strategy[Any]:
    strategies = load_strategies()
    if name not in strategies:
        raise UnknownStrategyError(name, strategies)
    return strategies[name]


def __getattr__(attr: str) -> Any:
    # ``STRATEGIES`` is the registry, built on first use rather than at import time so that
    # importing this module never imports a desk's plugins.
    if attr == "STRATEGIES":
        return load_strategies()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
