"""Portfolio arithmetic: cash, positions, and the trades that move a portfolio to its targets.

Conventions:

* Shares are floats (fractional shares), so a target weight is met exactly, not to a lot size.
* Every trade fills at the price given (the day's close) and pays
  ``cost_per_trade + cost_bps / 10_000 * |trade value|``, taken from cash.
* Long only, no borrowing: cash never goes below zero. When the buys plus their costs need more
  than the cash there is (after the sells), every buy is scaled down by the same factor so that
  they fit exactly; a buy that would end up smaller than ``min_trade_value`` is dropped and the
  rest rescaled.
* A trade worth less than ``min_trade_value`` is skipped, except selling a whole position
  (target weight 0), which always goes through so no dust is left behind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Portfolio", "Trade", "rebalance", "trade_cost"]

# Amounts (shares, currency) below this are float noise, not positions or trades.
_EPS = 1e-9


@dataclass(frozen=True)
class Trade:
    symbol: str
    shares: float  # signed: > 0 buy, < 0 sell
    price: float
    cost: float  # what the trade paid in fees, >= 0

    @property
    def value(self) -> float:
        """Signed value of the shares traded (before costs)."""
        return self.shares * self.price

    @property
    def side(self) -> str:
        return "buy" if self.shares > 0 else "sell"

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "side": self.side, "shares": self.shares,
                "price": self.price, "value": self.value, "cost": self.cost}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trade:
        return cls(symbol=str(data["symbol"]), shares=float(data["shares"]),
                   price=float(data["price"]), cost=float(data["cost"]))


@dataclass
class Portfolio:
    cash: float
    positions: dict[str, float] = field(default_factory=dict)  # symbol -> shares (> 0)

    def value(self, prices: Mapping[str, float]) -> float:
        """Cash plus every position at ``prices``; each held symbol needs a price."""
        missing = sorted(s for s in self.positions if s not in prices)
        if missing:
            raise ValueError(f"no price to value held symbol(s) {', '.join(missing)}")
        return self.cash + math.fsum(shares * prices[s] for s, shares in self.positions.items())

    def to_dict(self) -> dict[str, Any]:
        return {"cash": self.cash, "positions": dict(sorted(self.positions.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Portfolio:
        try:
            cash = float(data["cash"])
            positions = {str(s): float(n) for s, n in (data.get("positions") or {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a portfolio (cash, positions): {exc}") from None
        return cls(cash=cash, positions={s: n for s, n in positions.items() if abs(n) > _EPS})


def trade_cost(value: float, cost_per_trade: float = 0.0, cost_bps: float = 0.0) -> float:
    """Fees for one trade of ``|value|``: a flat amount plus basis points of the value."""
    return cost_per_trade + cost_bps / 10_000 * abs(value)


def rebalance(portfolio: Portfolio, targets: Mapping[str, float] | None,
              prices: Mapping[str, float], *, cost_per_trade: float = 0.0, cost_bps: float = 0.0,
              min_trade_value: float = 0.0) -> list[Trade]:
    """Trade ``portfolio`` (in place) towards ``targets`` at ``prices``; return the trades.

    ``targets`` maps symbol -> weight of the portfolio's value at ``prices`` (before costs);
    symbols not named keep their shares, and ``None`` or ``{}`` trades nothing. ``prices`` must
    price every held and every targeted symbol. Sells go first, so their proceeds fund the buys.
    """
    if not targets:
        return []
    if cost_per_trade < 0 or cost_bps < 0 or min_trade_value < 0:
        raise ValueError("cost_per_trade, cost_bps and min_trade_value must be >= 0")
    for symbol, weight in targets.items():
        if not (math.isfinite(weight) and 0 <= weight <= 1):
            raise ValueError(f"target weight for {symbol} must be within [0, 1], got {weight!r}")
        price = prices.get(symbol)
        if price is None or not (math.isfinite(price) and price > 0):
            raise ValueError(f"no usable price for {symbol}: {price!r}")
    total = portfolio.value(prices)
    threshold = max(min_trade_value, _EPS)

    sells: list[tuple[str, float]] = []  # (symbol, shares > 0 to sell)
    buys: list[tuple[str, float]] = []  # (symbol, value > 0 to buy)
    for symbol in sorted(targets):
        price, held = prices[symbol], portfolio.positions.get(symbol, 0.0)
        delta_value = targets[symbol] * total - held * price
        if targets[symbol] == 0 and held > 0:
            sells.append((symbol, held))
        elif delta_value <= -threshold:
            sells.append((symbol, -delta_value / price))
        elif delta_value >= threshold:
            buys.append((symbol, delta_value))

    trades: list[Trade] = []
    for symbol, shares in sells:
        price = prices[symbol]
        cost = trade_cost(shares * price, cost_per_trade, cost_bps)
        if portfolio.cash + shares * price - cost < 0:
            continue  # the fee would exceed the cash after the sale: not worth selling
        portfolio.cash += shares * price - cost
        _add_shares(portfolio, symbol, -shares)
        trades.append(Trade(symbol, -shares, price, cost))

    scale = 1.0
    while buys:
        gross = math.fsum(v for _, v in buys) * (1 + cost_bps / 10_000)
        fixed = cost_per_trade * len(buys)
        scale = 1.0 if gross + fixed <= portfolio.cash else (portfolio.cash - fixed) / gross
        if scale > 0 and all(v * scale >= threshold for _, v in buys):
            break
        buys.remove(min(buys, key=lambda b: (b[1], b[0])))  # cannot afford all: drop the smallest
    for symbol, value in buys:
        price, value = prices[symbol], value * scale
        cost = trade_cost(value, cost_per_trade, cost_bps)
        portfolio.cash -= value + cost
        _add_shares(portfolio, symbol, value / price)
        trades.append(Trade(symbol, value / price, price, cost))
    if portfolio.cash < 0:
        # only float rounding of the exact fit can get here
        assert portfolio.cash > -1e-6 * max(total, 1.0), portfolio.cash
        portfolio.cash = 0.0
    return trades


def _add_shares(portfolio: Portfolio, symbol: str, shares: float) -> None:
    held = portfolio.positions.get(symbol, 0.0) + shares
    if abs(held) <= _EPS:
        portfolio.positions.pop(symbol, None)
    else:
        portfolio.positions[symbol] = held
