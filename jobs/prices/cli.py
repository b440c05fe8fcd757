"""`marketdesk prices download`: submit a download to the running server and follow it."""

from __future__ import annotations

import argparse
from typing import Any

from jobs.follow import add_url_options, exit_for, follow, submit


def download(args: argparse.Namespace) -> None:
    base = args.url.rstrip("/")
    body = {"symbols": args.symbols, "start_date": args.start, "end_date": args.end}
    if args.provider:
        body["provider"] = args.provider
    job_id = submit(base, "/api/prices/download", body, accepted=(202,))["job_id"]
    print(f"job {job_id} is pending — {base}/jobs/{job_id}")
    if args.no_follow:
        return
    exit_for(follow(base, job_id))


def add(sub: Any) -> None:
    prices = sub.add_parser("prices", help="price data").add_subparsers(dest="action", required=True)
    dl = prices.add_parser("download", help="download daily bars and follow the job")
    dl.add_argument("--symbols", required=True, help="comma-separated tickers, e.g. AAPL,MSFT")
    dl.add_argument("--start", required=True, help="YYYY-MM-DD")
    dl.add_argument("--end", required=True, help="YYYY-MM-DD")
    dl.add_argument("--provider", default=None)
    add_url_options(dl)
    dl.set_defaults(func=download)
