"""Jobs made of items (one per symbol, per file, ...): each item's outcome is recorded, a failed
one with its error in the job's result and log, and the job's final status follows one rule:
more than half of the items failed → ``failed``, some → ``partial``, none → ``completed``.

An item can also be skipped: not tried, for a reason outside it (a provider's rate limit stops
a download and keeps what was fetched). A skipped item is not a failure: it makes the job
``partial``, or ``failed`` when no item succeeded at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.registry import Outcome
from jobs.status import Status


@dataclass
class Items:
    """The outcomes of a job's items, in the order they were recorded."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """The items tried (skipped ones are not)."""
        return len(self.succeeded) + len(self.failed)

    def ok(self, item: str) -> None:
        self.succeeded.append(item)

    async def fail(self, ctx: Any, item: str, error: str) -> None:
        """Record ``item`` as failed, in the result and (when a job context is given) the log."""
        self.failed[item] = error
        if ctx is not None:
            await ctx.log(f"{item}: {error}", level="error")

    def skip(self, item: str, reason: str) -> None:
        self.skipped[item] = reason

    @property
    def status(self) -> Status:
        if len(self.failed) * 2 > self.total or (self.skipped and not self.succeeded):
            return Status.FAILED
        return Status.PARTIAL if self.failed or self.skipped else Status.COMPLETED

    def to_result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "items": self.total, "succeeded": list(self.succeeded),
            "failed": [{"item": k, "error": v} for k, v in self.failed.items()]}
        if self.skipped:
            out["skipped"] = [{"item": k, "reason": v} for k, v in self.skipped.items()]
        return out

    def outcome(self, **extra: Any) -> Outcome:
        """The job's Outcome: its status by the rule, the items (and ``extra``) as its result."""
        status = self.status
        error = None
        if status == Status.FAILED:
            error = f"{len(self.failed)} of {self.total} items failed: " + "; ".join(
                f"{k}: {v}" for k, v in list(self.failed.items())[:5])
        return Outcome(status, {**self.to_result(), **extra}, error=error)
