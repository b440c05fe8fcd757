"""A fake Alpha Vantage server on a real loopback HTTP port, for tests.

It answers ``GET /query?function=TIME_SERIES_DAILY&symbol=...&outputsize=...&apikey=...`` in the
real service's JSON format, including its habit of reporting every error as an HTTP 200 body.

Basic use::

    from tests.fakes.alphavantage import FakeAlphaVantage, NOTE, PREMIUM_FULL

    with FakeAlphaVantage(symbols=("IBM", "AAPL")) as fake:
        settings = Settings(alphavantage_url=fake.url, alphavantage_api_key=fake.api_key,
                            alphavantage_min_interval_seconds=0)
        # or: monkeypatch.setenv("MARKETDESK_ALPHAVANTAGE_URL", fake.url)
        fake.script(503, 503, symbol="IBM")   # IBM's next two requests get HTTP 503, then data
        fake.script(NOTE)                     # the next request for any symbol gets the Note
        ...
        fake.requests                         # what it received, oldest first

(Import it as ``tests.fakes.alphavantage`` or ``fakes.alphavantage``, whichever your test
package layout puts on ``sys.path``.)

Constructor ``FakeAlphaVantage(symbols=("IBM", "AAPL", "MSFT"), *, api_key="demo-key",
start=date(2020, 1, 1), end=None, full_is_premium=False, compact_size=100)``:

* ``symbols`` - tickers it knows; others get the real "Invalid API call" ``Error Message``.
* ``api_key`` - requests without this key get the real invalid-key ``Error Message``;
  ``None`` accepts any key.
* ``start``/``end`` - the days of the served series: every NYSE trading day in between
  (``end`` defaults to today in UTC). Bars are deterministic per (symbol, day).
* ``full_is_premium`` - answer every ``outputsize=full`` request with :data:`PREMIUM_FULL`
  (like a free key does today); ``compact`` requests get the last ``compact_size`` days.

Attributes and methods:

* ``url`` - the endpoint, ``http://127.0.0.1:<port>/query``.
* ``requests`` - a copy of the list of :class:`FakeRequest` received (``params``, ``symbol``,
  ``outputsize``, ``monotonic`` = ``time.monotonic()`` on arrival, ``at`` = UTC datetime).
* ``script(*responses, symbol=None)`` - queue responses for the next requests, one each, for
  ``symbol`` only or for any symbol (``symbol=None``); symbol queues are used before the
  shared one; when the queues are empty the normal behaviour resumes.
* ``always(response, symbol=None)`` - answer every request (for ``symbol``, or all) with
  ``response`` until ``always(None, symbol)`` or ``reset()``. Scripted responses come first.
* ``add_symbol(symbol, series=None)`` - learn a ticker; ``series`` maps ``date`` to a dict with
  the keys "1. open" ... "5. volume" (values are turned into strings) and replaces the default.
* ``series(symbol)`` - the full ``{"YYYY-MM-DD": {"1. open": "...", ...}}`` mapping served for
  ``symbol``, newest first (compute expected values from it).
* ``reset()`` - clear scripts, ``always`` rules and recorded requests.

A response (for ``script``/``always``) is one of:

* :data:`OK` - serve the normal answer (useful in the middle of a script);
* a ``dict`` - returned as an HTTP 200 JSON body (e.g. :data:`NOTE`, :data:`DAILY_CAP`,
  :data:`BURST`, :data:`PREMIUM_FULL`, :data:`INVALID_CALL`, :data:`INVALID_KEY`);
* an ``int`` - that HTTP status with a small HTML body (e.g. ``503``);
* a :class:`FakeResponse` - full control: status, body (dict -> JSON, str/bytes as is),
  content type, and ``delay_seconds`` to sleep before answering (timeouts, cancellation).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from hashlib import blake2b
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jobs.prices.calendar import trading_days

__all__ = [
    "BURST",
    "DAILY_CAP",
    "INVALID_CALL",
    "INVALID_KEY",
    "NOTE",
    "OK",
    "PREMIUM_FULL",
    "FakeAlphaVantage",
    "FakeRequest",
    "FakeResponse",
]

#: Old per-minute rate-limit wording.
NOTE: dict[str, str] = {
    "Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per "
    "minute and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you "
    "would like to target a higher API call frequency."
}
#: The free key's daily cap.
DAILY_CAP: dict[str, str] = {
    "Information": "We have detected your API key as XXXX and our standard API rate limit is "
    "25 requests per day. Please subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."
}
#: More than one request per second.
BURST: dict[str, str] = {
    "Information": "Please consider spreading out your free API requests more sparingly "
    "(1 request per second). You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per "
    "day) and instantly remove all daily rate limits."
}
#: outputsize=full on a free key.
PREMIUM_FULL: dict[str, str] = {
    "Information": "Thank you for using Alpha Vantage! The outputsize=full parameter value is a "
    "premium feature for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the "
    "premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium "
    "features of this endpoint."
}
#: Unknown symbol or bad parameters.
INVALID_CALL: dict[str, str] = {
    "Error Message": "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."
}
#: Missing or wrong API key.
INVALID_KEY: dict[str, str] = {
    "Error Message": "the parameter apikey is invalid or missing. Please claim your free API "
    "key on (https://www.alphavantage.co/support/#api-key). It should take less than 20 "
    "seconds."
}


class _Ok:
    def __repr__(self) -> str:
        return "OK"


#: Scripted "answer normally".
OK: Any = _Ok()


@dataclass(frozen=True)
class FakeResponse:
    status: int = 200
    body: dict[str, Any] | str | bytes = b""
    content_type: str = "application/json"
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class FakeRequest:
    params: dict[str, str]
    monotonic: float
    at: datetime
    path: str = "/query"

    @property
    def symbol(self) -> str | None:
        return self.params.get("symbol")

    @property
    def outputsize(self) -> str:
        return self.params.get("outputsize", "compact")


@dataclass
class _State:
    series: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    scripts: dict[str | None, deque[Any]] = field(default_factory=dict)
    always: dict[str | None, Any] = field(default_factory=dict)
    requests: list[FakeRequest] = field(default_factory=list)


def _default_series(symbol: str, days: list[date]) -> dict[str, dict[str, str]]:
    seed = int.from_bytes(blake2b(symbol.encode(), digest_size=4).digest(), "big")
    base = 20 + seed % 400
    out: dict[str, dict[str, str]] = {}
    for i, day in enumerate(days):
        close = base + ((i * 7 + seed) % 23) - 11 + i * 0.01
        open_ = close - 0.5 + ((i + seed) % 3) * 0.5
        out[day.isoformat()] = {
            "1. open": f"{open_:.4f}",
            "2. high": f"{max(open_, close) + 1:.4f}",
            "3. low": f"{min(open_, close) - 1:.4f}",
            "4. close": f"{close:.4f}",
            "5. volume": str(1_000_000 + (seed + i * 7919) % 500_000),
        }
    return dict(sorted(out.items(), reverse=True))  # newest first, like the real service


class FakeAlphaVantage:
    """See the module docstring."""

    def __init__(
        self,
        symbols: tuple[str, ...] | list[str] = ("IBM", "AAPL", "MSFT"),
        *,
        api_key: str | None = "demo-key",
        start: date = date(2020, 1, 1),
        end: date | None = None,
        full_is_premium: bool = False,
        compact_size: int = 100,
    ) -> None:
        self.api_key = api_key
        self.full_is_premium = full_is_premium
        self.compact_size = compact_size
        self._days = trading_days(start, end or datetime.now(UTC).date())
        self._lock = threading.Lock()
        self._state = _State()
        for symbol in symbols:
            self.add_symbol(symbol)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeAlphaVantage:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-alphavantage",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAlphaVantage:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeAlphaVantage is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/query"

    # -- scripting --------------------------------------------------------------------------

    def script(self, *responses: Any, symbol: str | None = None) -> None:
        with self._lock:
            self._state.scripts.setdefault(symbol, deque()).extend(responses)

    def always(self, response: Any, symbol: str | None = None) -> None:
        with self._lock:
            if response is None:
                self._state.always.pop(symbol, None)
            else:
                self._state.always[symbol] = response

    def add_symbol(self, symbol: str, series: dict[date, dict[str, Any]] | None = None) -> None:
        if series is None:
            served = _default_series(symbol, self._days)
        else:
            served = {
                day.isoformat(): {key: str(value) for key, value in row.items()}
                for day, row in sorted(series.items(), reverse=True)
            }
        with self._lock:
            self._state.series[symbol] = served

    def series(self, symbol: str) -> dict[str, dict[str, str]]:
        with self._lock:
            return dict(self._state.series[symbol])

    def reset(self) -> None:
        with self._lock:
            self._state.scripts.clear()
            self._state.always.clear()
            self._state.requests.clear()

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._state.requests)

    # -- serving ------------------------------------------------------------------------------

    def _record_and_pick(self, path: str, params: dict[str, str]) -> Any:
        with self._lock:
            self._state.requests.append(
                FakeRequest(
                    params=params, monotonic=time.monotonic(), at=datetime.now(UTC), path=path
                )
            )
            symbol = params.get("symbol")
            for key in (symbol, None):
                queue = self._state.scripts.get(key)
                if queue:
                    return queue.popleft()
            for key in (symbol, None):
                if key in self._state.always:
                    return self._state.always[key]
            return OK

    def _normal(self, params: dict[str, str]) -> FakeResponse:
        if self.api_key is not None and params.get("apikey") != self.api_key:
            return FakeResponse(body=INVALID_KEY)
        symbol = params.get("symbol", "")
        outputsize = params.get("outputsize", "compact")
        if params.get("function") != "TIME_SERIES_DAILY" or outputsize not in ("full", "compact"):
            return FakeResponse(body=INVALID_CALL)
        with self._lock:
            series = self._state.series.get(symbol)
        if series is None:
            return FakeResponse(body=INVALID_CALL)
        if outputsize == "full" and self.full_is_premium:
            return FakeResponse(body=PREMIUM_FULL)
        if outputsize == "compact":
            series = dict(list(series.items())[: self.compact_size])
        last = next(iter(series), "")
        body = {
            "Meta Data": {
                "1. Information": "Daily Prices (open, high, low, close) and Volumes",
                "2. Symbol": symbol,
                "3. Last Refreshed": last,
                "4. Output Size": "Full size" if outputsize == "full" else "Compact",
                "5. Time Zone": "US/Eastern",
            },
            "Time Series (Daily)": series,
        }
        return FakeResponse(body=body)

    def _respond(self, path: str, params: dict[str, str]) -> FakeResponse:
        picked = self._record_and_pick(path, params)
        if picked is OK:
            return self._normal(params)
        if isinstance(picked, FakeResponse):
            return picked
        if isinstance(picked, dict):
            return FakeResponse(body=picked)
        if isinstance(picked, int):
            html = f"<html><body><h1>{picked}</h1>Scripted error.</body></html>"
            return FakeResponse(status=picked, body=html, content_type="text/html")
        raise TypeError(f"Unsupported scripted response: {picked!r}")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAlphaVantage
    server_version = "FakeAlphaVantage/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        split = urlsplit(self.path)
        params = {key: values[-1] for key, values in parse_qs(split.query).items()}
        try:
            response = self.fake._respond(split.path, params)
        except Exception as exc:  # a broken script should show up, not hang the client
            response = FakeResponse(
                status=500, body=f"fake error: {exc!r}", content_type="text/plain"
            )
        if response.delay_seconds > 0:
            time.sleep(response.delay_seconds)
        body = response.body
        if isinstance(body, dict):
            payload = json.dumps(body, indent=4).encode()
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = body
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout, cancellation)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        return None
