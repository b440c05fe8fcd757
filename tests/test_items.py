"""jobs.items: a job of items ends failed past half failed, partial with some, completed with none;
skipped items (not tried) make it partial, or failed when nothing succeeded."""

from __future__ import annotations

from jobs.items import Items
from jobs.status import Status


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def log(self, message: str, level: str = "info") -> None:
        self.lines.append((level, message))


async def _items(ok: int, failed: int, ctx: Log | None = None) -> Items:
    items = Items()
    for i in range(ok):
        items.ok(f"OK{i}")
    for i in range(failed):
        await items.fail(ctx, f"BAD{i}", f"error {i}")
    return items


async def test_status_by_share_of_failures() -> None:
    assert (await _items(3, 0)).status == Status.COMPLETED
    assert (await _items(3, 1)).status == Status.PARTIAL
    assert (await _items(2, 2)).status == Status.PARTIAL  # exactly half is not more than half
    assert (await _items(2, 3)).status == Status.FAILED
    assert (await _items(0, 1)).status == Status.FAILED
    assert (await _items(0, 0)).status == Status.COMPLETED


async def test_failed_items_are_in_the_result_and_the_log() -> None:
    ctx = Log()
    items = await _items(1, 2, ctx)
    out = items.outcome(levels_extracted=5)
    assert out.status == Status.FAILED
    assert out.result == {"items": 3, "succeeded": ["OK0"], "levels_extracted": 5,
                          "failed": [{"item": "BAD0", "error": "error 0"},
                                     {"item": "BAD1", "error": "error 1"}]}
    assert out.error == "2 of 3 items failed: BAD0: error 0; BAD1: error 1"
    assert ctx.lines == [("error", "BAD0: error 0"), ("error", "BAD1: error 1")]


async def test_skipped_items_make_the_job_partial_or_failed_when_nothing_succeeded() -> None:
    items = await _items(2, 0)
    items.skip("LATE", "rate limit reached")
    assert items.status == Status.PARTIAL  # a rate limit keeps what was fetched
    assert items.to_result()["skipped"] == [{"item": "LATE", "reason": "rate limit reached"}]
    assert items.total == 2  # skipped items were not tried
    nothing = Items()
    nothing.skip("A", "rate limit reached")
    assert nothing.status == Status.FAILED
    mixed = await _items(1, 2)
    mixed.skip("C", "rate limit reached")
    assert mixed.status == Status.FAILED  # 2 of the 3 tried failed
    assert "skipped" not in (await _items(1, 0)).to_result()
