"""`marketdesk simulate`: submit a simulation to the running server, follow it with a progress
bar, then print each model's metrics (this run and since inception)."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

from jobs.follow import add_url_options, exit_for, follow, submit


def _pct(value: float | None, sign: bool = False) -> str:
    return "—" if value is None else (f"{value:+.2%}" if sign else f"{value:.2%}")


def _num(value: float | None, fmt: str = "{:,.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def metrics_table(metrics: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Results", title_justify="left",
                  caption="run: this run, from the model's value the day before its first day · "
                          "all: since inception, from its starting cash", caption_justify="left")
    for column in ("model", "first day", "value", "run return", "run max dd", "run sharpe",
                   "run trades", "all return", "all max dd", "all sharpe", "all trades"):
        table.add_column(column, justify="left" if column in ("model", "first day") else "right")
    for model, m in metrics.items():
        run, inc = m["run"], m["inception"]
        table.add_row(model, m["first_day"], _num(run["end_value"]), _pct(run["total_return"], True),
                      _pct(run["max_drawdown"]), _num(run["sharpe"]), str(run["trades"]),
                      _pct(inc["total_return"], True), _pct(inc["max_drawdown"]),
                      _num(inc["sharpe"]), str(inc["trades"]))
    return table


def simulate(args: argparse.Namespace) -> None:
    import httpx
    from rich.console import Console

    base = args.url.rstrip("/")
    body: dict[str, Any] = {"end_date": args.end}
    if args.start:
        body["start_date"] = args.start
    if args.models:
        body["models"] = args.models
    if args.replace_existing:
        body["replace_existing"] = True
    answer = submit(base, "/simulate/trigger", body, accepted=(200,))
    job_id = answer["job_id"]
    print(f"job {job_id} is pending — {base}/jobs/{job_id}")
    print(answer["message"])
    for warning in answer.get("warnings") or ():
        print(f"warning: {warning}")
    if args.no_follow:
        return
    final = follow(base, job_id)
    try:
        status = httpx.get(f"{base}/simulate/status/{job_id}", timeout=30).json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"cannot read the job's results: {exc}", file=sys.stderr)
    else:
        if status.get("metrics"):
            width = max(shutil.get_terminal_size((160, 24)).columns, 160)  # a table to read whole
            Console(width=width).print(metrics_table(status["metrics"]))
    exit_for(final)


def add(sub: Any) -> None:
    p = sub.add_parser("simulate", help="run a trading simulation and follow it to its results")
    p.add_argument("--start", default=None,
                   help="YYYY-MM-DD; leave out to resume each model after its last completed day")
    p.add_argument("--end", required=True, help="YYYY-MM-DD")
    p.add_argument("--models", default=None,
                   help="comma-separated model names (default: every enabled model)")
    p.add_argument("--replace-existing", action="store_true",
                   help="run again model-days completed before")
    add_url_options(p)
    p.set_defaults(func=simulate)
