"""Twenty well-known US tickers: the default universe of anything that needs one (the
simulation models, the demo's stored bars)."""

WELL_KNOWN_TICKERS: tuple[str, ...] = (
    "AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "BRK.B", "JPM", "V",
    "JNJ", "WMT", "PG", "XOM", "UNH", "HD", "MA", "KO", "PEP", "DIS",
)
