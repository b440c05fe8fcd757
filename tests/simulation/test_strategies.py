"""Strategies on hand-made series, and the registry (built-ins and entry points)."""

from __future__ import annotations

from datetime import date
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs.simulation import strategies
from jobs.simulation.strategies import (
    BUILTIN_STRATEGIES,
    ENTRY_POINT_GROUP,
    HOLD,
    BuyAndHold,
    History,
    MaCrossover,
    MomentumRotation,
    Point,
    Strategy,
    StrategyError,
    UnknownStrategyError,
    build_registry,
    get_strategy,
    history_upto,
    load_strategies,
    priced_on,
    sma,
    strategy_names,
    trailing_return,
)
from tests.simulation.series import DAYS, series


def upto(history: dict[str, list[Point]], i: int) -> History:
    return {s: history_upto(points, DAYS[i]) for s, points in history.items()}


# -- helpers ---------------------------------------------------------------------------------------

def test_helpers() -> None:
    points = series(10, 11, 12, 14)
    assert sma(points, 2) == 13.0
    assert sma(points, 4) == pytest.approx(11.75)
    assert sma(points, 5) is None
    assert trailing_return(points, 3) == pytest.approx(0.4)
    assert trailing_return(points, 1) == pytest.approx(14 / 12 - 1)
    assert trailing_return(points, 4) is None
    assert history_upto(points, DAYS[1]) == points[:2]
    assert history_upto(points, DAYS[10]) is points
    assert history_upto(points, date(2000, 1, 1)) == []
    assert priced_on(points, DAYS[3]) and not priced_on(points, DAYS[2]) and not priced_on([], DAYS[0])


# -- buy and hold ----------------------------------------------------------------------------------

def test_buy_and_hold_buys_equal_weights_once() -> None:
    s = BuyAndHold()
    params = s.parse_params({})
    history = {"A": series(10, 11, 12), "B": series(20, 19, 18), "C": []}
    state: dict[str, Any] = {}
    assert s.warmup_days(params) == 0
    assert s.target_weights(params, upto(history, 0), DAYS[0], state) == {"A": 0.5, "B": 0.5}
    assert state == {"bought": True}
    for i in (1, 2):
        assert s.target_weights(params, upto(history, i), DAYS[i], state) is HOLD


def test_buy_and_hold_waits_for_a_price() -> None:
    s = BuyAndHold()
    state: dict[str, Any] = {}
    history = {"A": series(10, start=1)}
    assert s.target_weights(s.parse_params(None), upto(history, 0), DAYS[0], state) is HOLD
    assert state == {}
    assert s.target_weights(s.parse_params(None), upto(history, 1), DAYS[1], state) == {"A": 1.0}
    with pytest.raises(ValidationError):
        s.parse_params({"unexpected": 1})


# -- moving-average crossover ----------------------------------------------------------------------

def test_ma_crossover_enters_and_leaves_on_hand_computed_smas() -> None:
    s = MaCrossover()
    params = s.parse_params({"fast": 2, "slow": 3})
    assert s.warmup_days(params) == 2
    # A:   day 2: fast 10    slow 10      -> flat, stay out
    #      day 3: fast 11    slow 10.667  -> cross up: enter
    #      day 4: fast 12.5  slow 11.667  -> still up: hold
    #      day 5: fast 11    slow 11.333  -> cross down: leave
    #      day 6: fast 8.5   slow 10      -> still out
    history = {"A": series(10, 10, 10, 12, 13, 9, 8), "B": series(5, 5, 5, 5, 5, 5, 5)}
    state: dict[str, Any] = {}
    got = [s.target_weights(params, upto(history, i), DAYS[i], state) for i in range(7)]
    assert got == [HOLD, HOLD, HOLD, {"A": 0.5}, HOLD, {"A": 0.0}, HOLD]
    assert state == {"long": []}


def test_ma_crossover_signals_per_symbol_and_skips_unpriced_days() -> None:
    s = MaCrossover()
    params = s.parse_params({"fast": 1, "slow": 2})
    history = {"A": series(10, 11, 12), "B": series(10, 9, 10), "C": series(10, 11), "D": series(1)}
    state: dict[str, Any] = {}
    # day 1: A up (11 > 10.5), B down, C up; D has too little history
    assert s.target_weights(params, upto(history, 1), DAYS[1], state) == {"A": 0.25, "C": 0.25}
    # day 2: B crosses up; C has no close, so no signal (it stays long)
    assert s.target_weights(params, upto(history, 2), DAYS[2], state) == {"B": 0.25}
    assert state == {"long": ["A", "B", "C"]}


def test_ma_crossover_params_are_validated() -> None:
    s = MaCrossover()
    assert s.parse_params({}).model_dump() == {"fast": 10, "slow": 50}
    with pytest.raises(ValidationError, match=r"fast \(50\) must be less than slow \(20\)"):
        s.parse_params({"fast": 50, "slow": 20})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        s.parse_params({"fast": 0})
    with pytest.raises(ValidationError, match="Extra inputs"):
        s.parse_params({"fats": 3})


# -- momentum rotation -----------------------------------------------------------------------------

def test_momentum_picks_top_n_and_rebalances_every_n_days() -> None:
    s = MomentumRotation()
    params = s.parse_params({"lookback": 2, "top_n": 2, "rebalance_days": 3})
    assert s.warmup_days(params) == 2
    history = {
        #          0   1   2     3     4     5   6
        "A": series(10, 10, 12, 12, 12, 12, 12),  # day 2: +20%   day 5: 0%
        "B": series(10, 10, 11, 11, 11, 11, 11),  # day 2: +10%   day 5: 0%
        "C": series(10, 10, 10.5, 10.5, 10.5, 15, 15),  # day 2: +5%    day 5: 15/10.5 - 1 = +42.9%
        "D": series(10, 10, 9, 10, 10, 14, 14),  # day 2: -10%   day 5: +40%
        "E": series(50, start=2),  # too little history to rank
    }
    state: dict[str, Any] = {}
    got = [s.target_weights(params, upto(history, i), DAYS[i], state) for i in range(2, 7)]
    assert got[0] == {"A": 0.5, "B": 0.5, "C": 0.0, "D": 0.0, "E": 0.0}
    assert got[1] is HOLD and got[2] is HOLD  # days 3 and 4: between rebalances
    assert got[3] == {"A": 0.0, "B": 0.0, "C": 0.5, "D": 0.5, "E": 0.0}
    assert got[4] is HOLD
    assert state == {"days": 5, "holding": ["C", "D"]}


def test_momentum_ties_break_by_symbol_and_few_candidates_share_everything() -> None:
    s = MomentumRotation()
    params = s.parse_params({"lookback": 1, "top_n": 3, "rebalance_days": 1})
    history = {"B": series(10, 11), "A": series(20, 22), "C": series(10, 9), "D": series(10)}
    state: dict[str, Any] = {}
    assert s.target_weights(params, upto(history, 1), DAYS[1], state) == {
        "A": pytest.approx(1 / 3), "B": pytest.approx(1 / 3), "C": pytest.approx(1 / 3), "D": 0.0}
    params = s.parse_params({"lookback": 1, "top_n": 1, "rebalance_days": 1})
    assert s.target_weights(params, upto(history, 1), DAYS[1], {}) == {
        "A": 1.0, "B": 0.0, "C": 0.0, "D": 0.0}
    history = {"A": series(10, 11), "B": series(10)}
    assert s.target_weights(s.parse_params({"top_n": 5, "lookback": 1}), upto(history, 1),
                            DAYS[1], {}) == {"A": 1.0, "B": 0.0}


# -- registry --------------------------------------------------------------------------------------

class HalfInParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.5, ge=0, le=1, description="Weight of the first symbol.")


class HalfIn(Strategy[HalfInParams]):
    """A desk's own strategy, loaded through an entry point (as a class)."""

    name = "half_in"
    title = "Half in"
    description = "Puts `weight` in the first symbol every day."
    params_model = HalfInParams

    def target_weights(self, params: HalfInParams, history: History, day: date,
                       state: dict[str, Any]) -> dict[str, float]:
        return {sorted(history)[0]: params.weight}


class Idle(Strategy[Any]):
    name = "idle"
    title = "Idle"
    description = "Never trades."

    def target_weights(self, params: Any, history: History, day: date,
                       state: dict[str, Any]) -> None:
        return HOLD


IDLE = Idle()  # loaded through an entry point as an instance
NOT_A_STRATEGY = object()


class Impostor(Idle):
    name = "buy_and_hold"


def ep(name: str, attr: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{__name__}:{attr}", group=ENTRY_POINT_GROUP)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[EntryPoint]:
    """Entry points the registry will find: fill the list, then call load_strategies(reload=True)."""
    found: list[EntryPoint] = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return list(found)

    monkeypatch.setattr(strategies, "entry_points", fake_entry_points)
    monkeypatch.setattr(strategies, "_registry", None)
    return found


def test_builtins_are_registered() -> None:
    names = strategy_names()
    assert {"buy_and_hold", "ma_crossover", "momentum_rotation"} <= set(names)
    assert isinstance(get_strategy("ma_crossover"), MaCrossover)
    assert strategies.STRATEGIES is load_strategies()
    assert load_strategies(reload=True).keys() >= {"buy_and_hold"}  # real entry_points() scan


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(UnknownStrategyError) as info:
        get_strategy("nope")
    assert str(info.value) == ("Unknown strategy 'nope'; known strategies: "
                               "buy_and_hold, ma_crossover, momentum_rotation")
    assert isinstance(info.value, ValueError)


def test_entry_points_add_strategies(plugins: list[EntryPoint]) -> None:
    plugins += [ep("half_in", "HalfIn"), ep("idle", "IDLE"),
                ep("buy_and_hold", "BuyAndHold")]  # built-ins declared as entry points too
    registry = load_strategies(reload=True)
    assert list(registry) == ["buy_and_hold", "half_in", "idle", "ma_crossover", "momentum_rotation"]
    assert registry["idle"] is IDLE
    assert isinstance(get_strategy("half_in"), HalfIn)
    described = get_strategy("half_in").describe()
    assert described["default_params"] == {"weight": 0.5}
    assert described["params_schema"]["properties"]["weight"]["description"] == "Weight of the first symbol."


@pytest.mark.parametrize(("attr", "message"), [
    ("Missing", r"entry point 'bad' = 'tests\.simulation\.test_strategies:Missing' .* failed to load"),
    ("NOT_A_STRATEGY", "is not a Strategy subclass or instance"),
    ("Impostor", r"strategy name 'buy_and_hold' from entry point .* is already taken by built-in"),
])
def test_bad_entry_points_fail_loudly(plugins: list[EntryPoint], attr: str, message: str) -> None:
    plugins.append(ep("bad", attr))
    with pytest.raises(StrategyError, match=message):
        load_strategies(reload=True)


def test_a_strategy_needs_defaults_for_every_param() -> None:
    class Required(BaseModel):
        n: int

    class NeedsN(Idle):
        name = "needs_n"
        params_model = Required

    with pytest.raises(StrategyError, match=r"params_model needs a default for every field"):
        build_registry([*BUILTIN_STRATEGIES, NeedsN])


def test_ma_crossover_decides_from_what_is_held() -> None:
    s = MaCrossover()
    params = s.parse_params({"fast": 1, "slow": 2})
    history = {"A": series(10, 11, 12), "B": series(10, 9, 8)}
    state: dict[str, Any] = {"long": ["A"]}  # it asked for A before, but the buy was dropped
    assert s.target_weights(params, upto(history, 2), DAYS[2], state, held={}) == {"A": 0.5}
    # held but its signal is down: sold, whatever the state says
    assert s.target_weights(params, upto(history, 2), DAYS[2], {}, held={"A": 3.0, "B": 2.0}) \
        == {"B": 0.0}
    assert s.uses_holdings


def test_buy_and_hold_buys_until_it_holds_something() -> None:
    s = BuyAndHold()
    history = {"A": series(10, 11)}
    state: dict[str, Any] = {"bought": True}  # asked before, but nothing was bought
    assert s.target_weights(s.parse_params({}), upto(history, 1), DAYS[1], state, held={}) == {"A": 1.0}
    assert s.target_weights(s.parse_params({}), upto(history, 1), DAYS[1], state, held={"A": 2.0}) is HOLD
