"""Job statuses and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    DOWNLOADING_DATA = "downloading_data"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


ALL_STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.PARTIAL, Status.FAILED, Status.CANCELLED})
ACTIVE_STATUSES = frozenset({Status.DOWNLOADING_DATA, Status.RUNNING})
UNFINISHED_STATUSES = frozenset({Status.PENDING, *ACTIVE_STATUSES})

# target status -> statuses a row may move from. "pending" as a target is the requeue of a job
# whose worker was lost.
ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset(ACTIVE_STATUSES),
    Status.DOWNLOADING_DATA: frozenset({Status.PENDING}),
    Status.RUNNING: frozenset({Status.PENDING, Status.DOWNLOADING_DATA}),
    Status.COMPLETED: frozenset(ACTIVE_STATUSES),
    Status.PARTIAL: frozenset(ACTIVE_STATUSES),
    Status.FAILED: frozenset(UNFINISHED_STATUSES),
    Status.CANCELLED: frozenset(UNFINISHED_STATUSES),
}
