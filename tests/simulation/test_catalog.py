"""Configured models (defaults, models file, API listing, resolving names) and the model-day step."""

from __future__ import annotations

import json
from datetime import date
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from jobs.prices.calendar import trading_days
from jobs.prices.providers import Bar
from jobs.prices.universe import WELL_KNOWN_TICKERS as DEMO_TICKERS
from jobs.simulation import strategies
from jobs.simulation.catalog import (
    MODELS_FILE_ENV,
    ModelsFileError,
    ModelSpec,
    UnknownModelError,
    default_models,
    enabled_models,
    history_from_bars,
    history_start,
    load_models,
    model_results,
    models_api,
    resolve_models,
    run_model,
    step,
    strategies_api,
)
from jobs.simulation.strategies import ENTRY_POINT_GROUP, History, Strategy, StrategyError
from tests.simulation.series import DAYS, series


@pytest.fixture(autouse=True)
def no_models_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODELS_FILE_ENV, raising=False)


class Scripted(Strategy[Any]):
    """Answers whatever the test put in ``answers`` (by day index) and notes what it saw."""

    name = "scripted"
    title = "Scripted"
    description = "Test strategy."

    def __init__(self) -> None:
        self.answers: dict[date, Any] = {}
        self.seen: list[tuple[date, dict[str, date | None]]] = []
        self.state_out: dict[str, Any] = {}

    def target_weights(self, params: Any, history: History, day: date, state: dict[str, Any]) -> Any:
        self.seen.append((day, {s: (p[-1][0] if p else None) for s, p in history.items()}))
        state.update(self.state_out)
        return self.answers.get(day)


SCRIPTED = Scripted()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Scripted:
    """Scripted, registered the way a desk's strategy is: through an entry point."""
    found = [EntryPoint(name="scripted", value=f"{__name__}:SCRIPTED", group=ENTRY_POINT_GROUP)]
    monkeypatch.setattr(strategies, "entry_points", lambda *, group: found)
    monkeypatch.setattr(strategies, "_registry", None)
    SCRIPTED.__init__()  # type: ignore[misc]
    return SCRIPTED


# -- models ----------------------------------------------------------------------------------------

def test_default_models() -> None:
    models = load_models()
    assert models == default_models()
    assert list(models) == ["buy-and-hold", "ma-crossover", "momentum"]
    assert [m.strategy for m in enabled_models()] == ["buy_and_hold", "ma_crossover", "momentum_rotation"]
    for spec in models.values():
        assert spec.universe == list(DEMO_TICKERS) and len(spec.universe) == 20
        assert spec.enabled and spec.initial_cash == 100_000 and spec.cost_per_trade == 1.0
    assert models["momentum"].params == {"lookback": 60, "top_n": 3, "rebalance_days": 5}
    assert [m.warmup_days for m in models.values()] == [0, 49, 60]


def test_model_spec_validation() -> None:
    spec = ModelSpec(name="ma", strategy="ma_crossover", universe="aapl, msft;AAPL")  # type: ignore[arg-type]
    assert spec.params == {"fast": 10, "slow": 50}  # defaults filled in
    assert spec.universe == ["AAPL", "MSFT"]
    with pytest.raises(ValueError, match="Unknown strategy 'nope'; known strategies: buy_and_hold, "
                                         "ma_crossover, momentum_rotation"):
        ModelSpec(name="x", strategy="nope")
    with pytest.raises(ValueError, match=r"params\n.*fast \(9\) must be less than slow \(5\)"):
        ModelSpec(name="x", strategy="ma_crossover", params={"fast": 9, "slow": 5})
    with pytest.raises(ValueError, match="top_n: Input should be greater than or equal to 1"):
        ModelSpec(name="x", strategy="momentum_rotation", params={"top_n": 0})
    with pytest.raises(ValueError, match="'\\$\\$' is not a ticker"):
        ModelSpec(name="x", strategy="buy_and_hold", universe=["AAPL", "$$"])
    with pytest.raises(ValueError, match="'Big Model' is not a model name"):
        ModelSpec(name="Big Model", strategy="buy_and_hold")
    with pytest.raises(ValueError, match="initial_cash"):
        ModelSpec(name="x", strategy="buy_and_hold", initial_cash=0)


def test_resolve_models() -> None:
    models = {**default_models(),
              "off": ModelSpec(name="off", strategy="buy_and_hold", enabled=False)}
    assert [m.name for m in resolve_models(None, models)] == ["buy-and-hold", "ma-crossover", "momentum"]
    assert [m.name for m in resolve_models([], models)] == ["buy-and-hold", "ma-crossover", "momentum"]
    assert [m.name for m in resolve_models(["momentum", "off", "momentum"], models)] == ["momentum", "off"]
    with pytest.raises(UnknownModelError) as info:
        resolve_models(["momentum", "x"])
    assert str(info.value) == "Unknown model 'x'; known models: buy-and-hold, ma-crossover, momentum"
    assert info.value.unknown == ["x"] and isinstance(info.value, ValueError)
    with pytest.raises(UnknownModelError, match="Unknown models 'x', 'y'; known models: buy-and-hold"):
        resolve_models(["x", "y", "x"])
    with pytest.raises(ValueError, match="No model is enabled; known models: off"):
        resolve_models(None, {"off": models["off"]})


def test_models_file_toml_overrides_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models.toml"
    path.write_text('''
universe = ["AAPL", "msft"]

[models.hold]
strategy = "buy_and_hold"

[models.ma-fast]
strategy = "ma_crossover"
params = { fast = 5, slow = 20 }
universe = ["NVDA"]
cost_per_trade = 0.5
cost_bps = 2
enabled = false
''')
    monkeypatch.setenv(MODELS_FILE_ENV, str(path))
    models = load_models()
    assert list(models) == ["hold", "ma-fast"]
    assert models["hold"].universe == ["AAPL", "MSFT"]
    assert models["ma-fast"] == ModelSpec(name="ma-fast", strategy="ma_crossover",
                                          params={"fast": 5, "slow": 20}, universe=["NVDA"],
                                          enabled=False, cost_per_trade=0.5, cost_bps=2)
    assert [m.name for m in resolve_models(None)] == ["hold"]
    with pytest.raises(UnknownModelError, match="known models: hold, ma-fast"):
        resolve_models(["momentum"])


def test_models_file_json_list(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [
        {"name": "mom", "strategy": "momentum_rotation", "params": {"top_n": 1}, "universe": ["A", "B"]},
    ]}))
    (spec,) = load_models(path).values()
    assert spec.params == {"lookback": 60, "top_n": 1, "rebalance_days": 5}
    assert spec.universe == ["A", "B"]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("m.toml", "[models.x\nstrategy = 1", "not valid TOML"),
    ("m.json", "{", "not valid JSON"),
    ("m.yaml", "models: {}", "use a .toml or .json file"),
    ("m.toml", "[models.ma-fast]\nstrategy = 'ma_crossover'\nparams = { fast = 60, slow = 50 }",
     r"models\.ma-fast\.params: fast \(60\) must be less than slow \(50\)"),
    ("m.toml", "[models.x]\nstrategy = 'buy_and_hold'\ncolour = 'red'",
     r"models\.x\.colour: Extra inputs are not permitted"),
    ("m.toml", "[models.x]\nstrategy = 'nope'",
     r"models\.x\.strategy: Unknown strategy 'nope'; known strategies: buy_and_hold"),
    ("m.toml", "[models.x]\nstrategy = 'buy_and_hold'\ninitial_cash = -1",
     r"models\.x\.initial_cash: Input should be greater than 0"),
    ("m.toml", "universe = ['AAPL', 'not a ticker']\n[models.x]\nstrategy = 'buy_and_hold'",
     r"universe: 'not a ticker' is not a ticker"),
    ("m.toml", "models = {}", "the file defines no model"),
    ("m.toml", "model = {}", "unknown top-level key"),
    ("m.json", '{"models": [{"name": "a", "strategy": "buy_and_hold"}, {"name": "a", '
               '"strategy": "buy_and_hold"}]}', "model 'a' is defined twice"),
])
def test_bad_models_file_names_the_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    monkeypatch.setenv(MODELS_FILE_ENV, str(path))
    with pytest.raises(ModelsFileError, match=message) as info:
        load_models()
    assert str(path) in str(info.value)


def test_missing_models_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_FILE_ENV, str(tmp_path / "absent.toml"))
    with pytest.raises(ModelsFileError, match=r"Cannot read models file .*absent\.toml.* "
                                              r"\(from MARKETDESK_MODELS_FILE\): No such file"):
        load_models()


def test_models_api_lists_models_with_their_parameters() -> None:
    listing = models_api()
    assert [m["name"] for m in listing] == ["buy-and-hold", "ma-crossover", "momentum"]
    ma = listing[1]
    assert ma["strategy"] == "ma_crossover" and ma["title"] == "Moving-average crossover"
    assert ma["params"] == {"fast": 10, "slow": 50}
    assert ma["params_schema"]["properties"]["slow"]["default"] == 50
    assert "description" in ma["params_schema"]["properties"]["fast"]
    assert ma["universe"] == list(DEMO_TICKERS) and ma["enabled"] is True and ma["warmup_days"] == 49
    json.dumps(listing)  # JSON-ready
    assert [s["name"] for s in strategies_api()] == ["buy_and_hold", "ma_crossover", "momentum_rotation"]


def test_an_entry_point_strategy_can_be_configured(scripted: Scripted, tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[models.mine]\nstrategy = 'scripted'\nuniverse = ['A']\n")
    (spec,) = load_models(path).values()
    scripted.answers = {DAYS[0]: {"A": 1.0}}
    record = step(spec, None, {"A": series(10)}, DAYS[0])
    assert record["positions"] == {"A": pytest.approx((100_000 - 1) / 10)}
    assert "scripted" in [s["name"] for s in strategies_api()]


# -- the model-day step ----------------------------------------------------------------------------

def test_buy_and_hold_model_days_are_exact() -> None:
    spec = ModelSpec(name="bh", strategy="buy_and_hold", universe=["A", "B"], cost_per_trade=1.0,
                     min_trade_value=0)
    history = {"A": series(10, 11, 12), "B": series(20, 19, 25)}
    day1 = step(spec, None, history, DAYS[0])
    # 100 000 split in two, less 1.00 per trade: 49 999 each -> 4999.9 A at 10, 2499.95 B at 20
    assert day1["positions"] == {"A": pytest.approx(4999.9), "B": pytest.approx(2499.95)}
    assert day1["cash"] == pytest.approx(0.0, abs=1e-9) and day1["cash"] >= 0
    assert day1["value"] == pytest.approx(99_998.0)
    assert [(t["symbol"], t["side"], t["cost"]) for t in day1["trades"]] == [
        ("A", "buy", 1.0), ("B", "buy", 1.0)]
    assert day1["prices"] == {"A": 10.0, "B": 20.0}
    assert day1["targets"] == {"A": 0.5, "B": 0.5} and day1["state"] == {"bought": True}

    day2 = step(spec, json.loads(json.dumps(day1)), history, DAYS[1])  # as stored and read back
    assert day2["trades"] == [] and day2["targets"] is None
    assert day2["positions"] == day1["positions"]
    assert day2["value"] == pytest.approx(4999.9 * 11 + 2499.95 * 19)  # 102 497.95
    day3 = step(spec, day2, history, DAYS[2])
    assert day3["trades"] == [] and day3["value"] == pytest.approx(4999.9 * 12 + 2499.95 * 25)
    assert day1["day"] == DAYS[0].isoformat()


def test_model_days_run_in_date_order() -> None:
    spec = ModelSpec(name="bh", strategy="buy_and_hold", universe=["A"])
    history = {"A": series(10, 11)}
    day2 = step(spec, None, history, DAYS[1])
    with pytest.raises(ValueError, match="model-days run in date order"):
        step(spec, day2, history, DAYS[0])
    with pytest.raises(ValueError, match="model-days run in date order"):
        step(spec, day2, history, DAYS[1])


def test_state_carries_from_day_to_day() -> None:
    spec = ModelSpec(name="mom", strategy="momentum_rotation", universe=["A", "B"],
                     params={"lookback": 1, "top_n": 1, "rebalance_days": 2}, cost_per_trade=0)
    history = {"A": series(10, 11, 12, 12, 12), "B": series(10, 10, 10, 12, 12)}
    records = run_model(spec, history, DAYS[1:5])
    assert [r["state"]["days"] for r in records] == [1, 2, 3, 4]
    assert [r["targets"] for r in records] == [{"A": 1.0, "B": 0.0}, None, {"A": 0.0, "B": 1.0}, None]
    assert [list(r["positions"]) for r in records] == [["A"], ["A"], ["B"], ["B"]]
    # day 1: A is up 10%, B flat: 100 000 buys 100 000 / 11 A; day 3: A flat, B up 20%: A is
    # sold at 12 for 100 000 * 12 / 11, which buys 100 000 / 11 B at 12
    assert records[0]["positions"] == {"A": pytest.approx(100_000 / 11)}
    assert records[2]["positions"] == {"B": pytest.approx(100_000 / 11)}
    results = model_results(spec, records)
    assert results["trades"] == 3
    assert results["start_value"] == 100_000 and results["end_value"] == pytest.approx(100_000 * 12 / 11)
    assert results["total_return"] == pytest.approx(1 / 11)
    assert results["equity_curve"][0] == {"day": DAYS[1].isoformat(), "value": pytest.approx(100_000)}


def test_the_strategy_never_sees_past_the_day(scripted: Scripted) -> None:
    spec = ModelSpec(name="s", strategy="scripted", universe=["A", "B", "C"])
    history = {"A": series(1, 2, 3, 4), "B": series(1, 2)}  # history runs past the day; C has none
    step(spec, None, history, DAYS[2])
    assert scripted.seen == [(DAYS[2], {"A": DAYS[2], "B": DAYS[1], "C": None})]


def test_an_unpriced_symbol_keeps_its_position_with_a_warning(scripted: Scripted) -> None:
    spec = ModelSpec(name="s", strategy="scripted", universe=["A", "B"], cost_per_trade=0,
                     min_trade_value=0, initial_cash=1_000)
    history = {"A": series(10, start=0), "B": series(20, 40)}  # no close for A on day 1
    scripted.answers = {DAYS[0]: {"A": 0.5, "B": 0.5}, DAYS[1]: {"A": 0.0, "B": 0.5}}
    day0 = step(spec, None, history, DAYS[0])
    day1 = step(spec, day0, history, DAYS[1])
    assert day1["warnings"] == [f"A: no close on {DAYS[1].isoformat()}, not traded (its position is kept)"]
    assert day1["positions"]["A"] == 50.0 and day1["prices"]["A"] == 10.0  # valued at its last close
    # value 500 + 25 * 40 = 1500: B's target of 750 means selling 6.25 of its 25 shares
    assert day1["trades"] == [{"symbol": "B", "side": "sell", "shares": -6.25, "price": 40.0,
                               "value": -250.0, "cost": 0.0}]
    assert day1["value"] == 1500.0


@pytest.mark.parametrize(("answer", "message"), [
    ({"Z": 0.5}, "targeted 'Z', which is not in the model's universe"),
    ({"A": 1.5}, r"gave A the weight 1\.5; weights lie in \[0, 1\]"),
    ({"A": -0.1}, r"gave A the weight -0\.1"),
    ({"A": 0.7, "B": 0.7}, "weights summing to 1.4; at most 1"),
    ([("A", 1.0)], "returned list, not a mapping of weights or None"),
])
def test_unusable_targets_are_refused(scripted: Scripted, answer: Any, message: str) -> None:
    spec = ModelSpec(name="s", strategy="scripted", universe=["A", "B"])
    scripted.answers = {DAYS[0]: answer}
    with pytest.raises(StrategyError, match=message):
        step(spec, None, {"A": series(10), "B": series(10)}, DAYS[0])


def test_state_must_stay_json(scripted: Scripted) -> None:
    spec = ModelSpec(name="s", strategy="scripted", universe=["A"])
    scripted.state_out = {"when": DAYS[0]}
    with pytest.raises(StrategyError, match="left a state that is not JSON"):
        step(spec, None, {"A": series(10)}, DAYS[0])


def test_history_helpers() -> None:
    bars = [Bar("B", DAYS[1], 1, 1, 1, 21.0, 5), Bar("A", DAYS[1], 1, 1, 1, 11.0, 5),
            Bar("A", DAYS[0], 1, 1, 1, 10.0, 5)]
    assert history_from_bars(bars) == {"A": [(DAYS[0], 10.0), (DAYS[1], 11.0)], "B": [(DAYS[1], 21.0)]}
    models = default_models()
    # 2025-01-06 is a Monday; 1 January is an NYSE holiday
    assert history_start([models["buy-and-hold"]], date(2025, 1, 6)) == date(2025, 1, 6)
    three = ModelSpec(name="m", strategy="momentum_rotation", params={"lookback": 3})
    assert history_start([three], date(2025, 1, 6)) == date(2024, 12, 31)
    assert history_start(models.values(), date(2025, 1, 6)) == trading_days(
        date(2024, 9, 1), date(2025, 1, 3))[-60]


def test_a_crossover_short_of_cash_buys_once_it_can_and_says_what_it_dropped() -> None:
    """The day A's signal turns up the model has 50 in cash: the buy is dropped (with a warning
    on that model-day); the next day C's exit frees cash and A, still up, is bought. Deciding
    from what was wished ("A is long") would never buy A while its signal stays up."""
    spec = ModelSpec(name="x", strategy="ma_crossover", params={"fast": 1, "slow": 2},
                     universe=["A", "C"], cost_per_trade=0, min_trade_value=100, initial_cash=1000)
    history = {"A": series(10, 10, 11, 12), "C": series(10, 10, 11, 10)}
    # as stored for day 1: all in C (its signal up), 50 in cash
    day1 = {"day": DAYS[1].isoformat(), "positions": {"C": 100.0}, "prices": {"C": 10.0},
            "trades": [], "cash": 50.0, "value": 1050.0, "state": {"long": ["C"]}}
    day2 = step(spec, day1, history, DAYS[2])
    assert day2["trades"] == [] and day2["positions"] == {"C": 100.0}
    assert day2["warnings"] == ["A: wanted buy of 575.00 (50.00% of the portfolio) dropped: "
                                "not enough cash"]
    day3 = step(spec, day2, history, DAYS[3])
    assert [(t["symbol"], t["side"]) for t in day3["trades"]] == [("C", "sell"), ("A", "buy")]
    assert day3["positions"] == {"A": pytest.approx(1050 * 0.5 / 12)}
    assert day3["warnings"] == []


def test_a_buy_under_min_trade_value_is_reported_on_its_model_day() -> None:
    spec = ModelSpec(name="x", strategy="ma_crossover", params={"fast": 1, "slow": 2},
                     universe=["A", "B"], cost_per_trade=0, min_trade_value=600, initial_cash=1000)
    history = {"A": series(10, 11), "B": series(10, 9)}
    day = step(spec, None, history, DAYS[1])
    assert day["trades"] == [] and day["cash"] == 1000
    assert day["warnings"] == ["A: wanted buy of 500.00 (50.00% of the portfolio) dropped: "
                               "under min_trade_value 600.00"]
