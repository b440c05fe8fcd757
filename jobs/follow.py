"""The client side of the API for command-line verbs: submit to a running marketdesk and follow
the job's events (SSE, ``format=json``) with a progress bar until it ends."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

DEFAULT_URL = os.environ.get("MARKETDESK_URL", "http://127.0.0.1:8000")
TERMINAL = ("completed", "partial", "failed", "cancelled")


def add_url_options(parser: Any) -> None:
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="the running marketdesk (default $MARKETDESK_URL or http://127.0.0.1:8000)")
    parser.add_argument("--no-follow", action="store_true", help="print the job id and return")


def sse_lines(response: Any) -> Iterator[dict[str, str]]:
    """Server-sent events of a streamed httpx response, as {field: value}."""
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        event[key] = event[key] + "\n" + value if key in event else value


def submit(base: str, path: str, body: dict[str, Any], accepted: tuple[int, ...] = (200, 202)
           ) -> dict[str, Any]:
    """POST ``body`` to ``path``; the answer, or exit with the server's reason."""
    import httpx

    try:
        resp = httpx.post(f"{base}{path}", json=body, timeout=10)
    except httpx.HTTPError as exc:
        sys.exit(f"cannot reach marketdesk at {base}: {exc} (is `marketdesk serve` running?)")
    if resp.status_code not in accepted:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        sys.exit(f"refused ({resp.status_code}): {detail}")
    return resp.json()  # type: ignore[no-any-return]


def follow(base: str, job_id: str) -> dict[str, Any]:
    """Show the job's progress until it ends; its final state."""
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn

    final: dict[str, Any] = {}
    with Progress(TextColumn("{task.fields[status]:<16}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TextColumn("{task.description}"),
                  transient=False) as bar:
        task = bar.add_task("", total=None, status="pending")
        url = f"{base}/events?topic=job:{job_id}&format=json"
        with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=60)) as stream:
            for event in sse_lines(stream):
                if event.get("event") != "job":
                    continue
                job = json.loads(event["data"])
                prog = job["progress"]
                bar.update(task, completed=prog["done"], total=prog["total"] or None,
                           description=prog["phase"], status=job["status"])
                if job["status"] in TERMINAL:
                    final = job
                    break
    for warning in final.get("warnings", []):
        print(f"warning: {warning}")
    if final.get("error"):
        print(f"error: {final['error']}")
    print(f"job {job_id} {final.get('status')}")
    return final


def exit_for(final: dict[str, Any]) -> None:
    """Exit 0 for completed or partial, 1 otherwise."""
    sys.exit(0 if final.get("status") in ("completed", "partial") else 1)
