"""`marketdesk contracts build` (submit a snapshot build to the running server and follow it)
and `marketdesk demo lake` / `marketdesk contracts demo-lake` (write a demo lake locally)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobs.follow import add_url_options, exit_for, follow, submit


def build(args: argparse.Namespace) -> None:
    base = args.url.rstrip("/")
    body = {"exchange": args.exchange, "var": args.var, "refresh_catalog": args.refresh_catalog}
    answer = submit(base, "/api/contracts/build", body, accepted=(202,))
    job_id = answer["job_id"]
    joined = "" if answer.get("enqueued", True) else " (already under way: following it)"
    print(f"job {job_id} is {answer['status']}{joined} — {base}/jobs/{job_id}")
    if args.no_follow:
        return
    exit_for(follow(base, job_id))


def demo_lake(args: argparse.Namespace) -> None:
    from jobs.contracts.demo import write_demo_lake
    from jobs.contracts.lake import ticks_root
    from jobs.contracts.settings import contracts_settings

    settings = contracts_settings()
    root = ticks_root(settings) if args.lake_dir is None else (
        Path(args.lake_dir) / settings.lake_version / "ticks")
    counts = write_demo_lake(root, args.exchange, args.var, args.years)
    print(f"demo lake written to {root}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _demo_lake_options(parser: Any) -> None:
    parser.add_argument("--exchange", default="SHFE")
    parser.add_argument("--var", default="cu")
    parser.add_argument("--years", type=int, default=3, help="years of expired contracts")
    parser.add_argument("--lake-dir", default=None, help="default $MARKETDESK_LAKE_DIR")
    parser.set_defaults(func=demo_lake)


def _subparsers_of(parser: argparse.ArgumentParser) -> Any:
    for action in parser._actions:  # argparse keeps no public handle on them
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="action", required=True)


def add(sub: Any) -> None:
    contracts = sub.add_parser("contracts", help="futures contracts coverage").add_subparsers(
        dest="action", required=True)
    b = contracts.add_parser("build", help="rebuild the contracts snapshot and follow the job")
    b.add_argument("--exchange", required=True, help="e.g. SHFE")
    b.add_argument("--var", required=True, help="e.g. cu")
    b.add_argument("--refresh-catalog", action="store_true", help="fetch the catalog live first")
    add_url_options(b)
    b.set_defaults(func=build)
    _demo_lake_options(contracts.add_parser("demo-lake", help="write a demo tick-data lake"))
    # `marketdesk demo lake`: the demo verb may be shared with other domains
    demo = sub.choices.get("demo") or sub.add_parser("demo", help="demo data")
    _demo_lake_options(_subparsers_of(demo).add_parser("lake", help="write a demo tick-data lake"))
