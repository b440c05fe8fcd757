"""Portfolio arithmetic: fills at the given prices, exact costs, cash never below zero."""

from __future__ import annotations

import json
import math
import random

import pytest

from jobs.simulation.portfolio import Portfolio, Trade, rebalance, trade_cost


def test_buy_from_cash_without_costs_is_exact() -> None:
    p = Portfolio(cash=100_000.0)
    trades = rebalance(p, {"A": 0.5, "B": 0.5}, {"A": 10.0, "B": 20.0})
    assert p.positions == {"A": 5000.0, "B": 2500.0}
    assert p.cash == 0.0
    assert trades == [Trade("A", 5000.0, 10.0, 0.0), Trade("B", 2500.0, 20.0, 0.0)]
    assert p.value({"A": 11.0, "B": 19.0}) == 5000 * 11 + 2500 * 19


def test_flat_costs_scale_the_buys_to_the_cash() -> None:
    # 100 000 of buys + 2 x 1.00 fees > 100 000 cash: both buys shrink to (100 000 - 2) / 2
    p = Portfolio(cash=100_000.0)
    trades = rebalance(p, {"A": 0.5, "B": 0.5}, {"A": 10.0, "B": 20.0}, cost_per_trade=1.0)
    assert p.positions["A"] == pytest.approx(4999.9, abs=1e-9)
    assert p.positions["B"] == pytest.approx(2499.95, abs=1e-9)
    assert p.cash == pytest.approx(0.0, abs=1e-9) and p.cash >= 0
    assert [t.cost for t in trades] == [1.0, 1.0]
    assert p.value({"A": 10.0, "B": 20.0}) == pytest.approx(99_998.0)


def test_costs_are_deducted_exactly_when_cash_suffices() -> None:
    p = Portfolio(cash=100_000.0)
    (trade,) = rebalance(p, {"A": 0.5}, {"A": 10.0}, cost_per_trade=1.0, cost_bps=10)
    assert trade == Trade("A", 5000.0, 10.0, 1.0 + 50.0)  # 10 bp of 50 000 = 50
    assert p.cash == 100_000 - 50_000 - 51
    assert trade_cost(-2_000.0, 2.0, 25) == 2.0 + 5.0


def test_sells_go_first_and_fund_the_buys() -> None:
    p = Portfolio(cash=0.0, positions={"A": 100.0})
    trades = rebalance(p, {"A": 0.0, "B": 1.0}, {"A": 10.0, "B": 20.0}, cost_per_trade=1.0)
    # sell A: +1000 - 1 -> cash 999; buy B wanted 1000 + 1 fee: scaled to 998 -> 49.9 shares
    assert [(t.symbol, t.side) for t in trades] == [("A", "sell"), ("B", "buy")]
    assert trades[0] == Trade("A", -100.0, 10.0, 1.0)
    assert trades[1].shares == pytest.approx(49.9)
    assert p.positions.keys() == {"B"}
    assert p.cash == pytest.approx(0.0, abs=1e-9) and p.cash >= 0


def test_partial_targets_leave_other_positions_alone() -> None:
    p = Portfolio(cash=1_000.0, positions={"A": 10.0, "B": 10.0})
    prices = {"A": 100.0, "B": 100.0, "C": 50.0}  # value 3000
    trades = rebalance(p, {"C": 0.2}, prices)
    assert trades == [Trade("C", 12.0, 50.0, 0.0)]
    assert p.positions == {"A": 10.0, "B": 10.0, "C": 12.0}
    assert p.cash == 400.0


def test_no_targets_no_trades() -> None:
    p = Portfolio(cash=10.0, positions={"A": 1.0})
    assert rebalance(p, None, {"A": 5.0}, cost_per_trade=1.0) == []
    assert rebalance(p, {}, {"A": 5.0}, cost_per_trade=1.0) == []
    assert p == Portfolio(cash=10.0, positions={"A": 1.0})


def test_small_trades_are_skipped_but_a_full_exit_is_not() -> None:
    p = Portfolio(cash=0.0, positions={"A": 50.0, "B": 50.0, "C": 0.5})
    prices = {"A": 10.0, "B": 10.0, "C": 10.0}  # value 1005
    # A wants 0.5 * 1005 = 502.5, i.e. +2.5: below 10, skipped; C (worth 5) is sold entirely
    trades = rebalance(p, {"A": 0.5, "C": 0.0}, prices, min_trade_value=10.0)
    assert trades == [Trade("C", -0.5, 10.0, 0.0)]
    assert p.positions == {"A": 50.0, "B": 50.0}
    assert p.cash == 5.0


def test_unaffordable_small_buys_are_dropped_and_the_rest_refit() -> None:
    # 150 cash, fee 50 a trade: two buys of 75 scale to 25 each, below the 30 minimum, so the
    # smallest (a tie: A first by name) is dropped and B alone fits unscaled.
    p = Portfolio(cash=150.0)
    trades = rebalance(p, {"A": 0.5, "B": 0.5}, {"A": 1.0, "B": 1.0}, cost_per_trade=50.0,
                       min_trade_value=30.0)
    assert trades == [Trade("B", 75.0, 1.0, 50.0)]
    assert p.cash == 25.0


def test_a_sale_that_cannot_pay_its_fee_is_skipped() -> None:
    p = Portfolio(cash=0.0, positions={"A": 0.5})
    assert rebalance(p, {"A": 0.0}, {"A": 1.0}, cost_per_trade=1.0) == []
    assert p.positions == {"A": 0.5} and p.cash == 0.0


def test_cash_never_goes_negative_and_value_only_loses_the_costs() -> None:
    rng = random.Random(20250101)
    symbols = ["A", "B", "C", "D", "E"]
    p = Portfolio(cash=10_000.0)
    prices = dict.fromkeys(symbols, 50.0)
    for _ in range(500):
        prices = {s: price * rng.uniform(0.9, 1.1) for s, price in prices.items()}
        chosen = rng.sample(symbols, rng.randint(1, 5))
        raw = [rng.random() for _ in chosen]
        total = sum(raw) / rng.uniform(0.5, 1.0)
        targets = {s: w / total for s, w in zip(chosen, raw, strict=True)}
        before = p.value(prices)
        trades = rebalance(p, targets, prices, cost_per_trade=rng.choice([0.0, 1.0, 25.0]),
                           cost_bps=rng.choice([0.0, 5.0]), min_trade_value=rng.choice([0.0, 20.0]))
        assert p.cash >= 0
        assert all(n > 0 for n in p.positions.values())
        assert p.value(prices) == pytest.approx(before - sum(t.cost for t in trades), rel=1e-12, abs=1e-6)


def test_bad_input_is_refused() -> None:
    p = Portfolio(cash=100.0, positions={"A": 1.0})
    with pytest.raises(ValueError, match="no price to value held symbol"):
        p.value({})
    with pytest.raises(ValueError, match=r"target weight for B must be within \[0, 1\]"):
        rebalance(p, {"B": 1.5}, {"A": 1.0, "B": 1.0})
    with pytest.raises(ValueError, match="no usable price for B"):
        rebalance(p, {"B": 0.5}, {"A": 1.0})
    with pytest.raises(ValueError, match="no usable price for B"):
        rebalance(p, {"B": 0.5}, {"A": 1.0, "B": math.nan})


def test_json_round_trip() -> None:
    p = Portfolio(cash=12.5, positions={"B": 2.0, "A": 1.25, "Z": 0.0})
    data = json.loads(json.dumps(p.to_dict()))
    assert data == {"cash": 12.5, "positions": {"A": 1.25, "B": 2.0, "Z": 0.0}}
    assert Portfolio.from_dict(data) == Portfolio(cash=12.5, positions={"A": 1.25, "B": 2.0})
    with pytest.raises(ValueError, match="not a portfolio"):
        Portfolio.from_dict({"positions": {}})
    trade = Trade("A", -3.0, 10.0, 1.0)
    assert trade.to_dict() == {"symbol": "A", "side": "sell", "shares": -3.0, "price": 10.0,
                               "value": -30.0, "cost": 1.0}
    assert Trade.from_dict(json.loads(json.dumps(trade.to_dict()))) == trade
