"""Job kinds: a name, a params model, a function.

The engine runs any kind without knowing what it does. Kinds come from the declared domains
(``jobs.domain``), the engine's own diagnostics, and modules named in the
``marketdesk.job_kinds`` entry-point group that call ``register``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from jobs.status import Status

if TYPE_CHECKING:
    from jobs.context import JobContext

ENGINE_KIND_MODULES = ("jobs.diagnostics",)
ENTRY_POINT_GROUP = "marketdesk.job_kinds"


@dataclass
class Outcome:
    """What a job function may return to choose its final status (default: completed)."""

    status: Status = Status.COMPLETED
    result: dict[str, Any] | None = None
    error: str | None = None


JobFunc = Callable[["JobContext", Any], Awaitable[Outcome | dict[str, Any] | None]]


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    params_model: type[BaseModel]
    func: JobFunc
    first_status: Status = Status.RUNNING
    # when given, decides the first status per job (e.g. skip downloading_data when nothing is
    # missing): called with the engine and the parsed params just before the job is claimed
    choose_first_status: Callable[[Any, Any], Awaitable[Status]] | None = None
    # extra topics the kind's events concern (e.g. "prices" so coverage views refresh)
    topics: tuple[str, ...] = ()
    describe: Callable[[dict[str, Any]], str] = field(default=lambda params: "")
    # one at a time: while a job of this kind is pending or running, another is refused with
    # this message (None: any number at once)
    exclusive: str | None = None
    # one job per key: a key derived from the validated params (e.g. a symbol); while a job of
    # this kind with that key is pending or running, a submit returns that job instead of a
    # second one. The database enforces it, across every web process.
    key: Callable[[dict[str, Any]], str | None] | None = None
    # what a submission must pass beyond the params model's shape (names that must exist now,
    # limits from settings): called with the parsed params on every route that creates a job
    # of this kind, never on a stored job (which must stay readable when settings change);
    # raises ParamsError, or ValueError worded "<field>: <message>"
    check: Callable[[Any], None] | None = None

    def dedupe_key(self, params: dict[str, Any]) -> str | None:
        key = self.key(params) if self.key is not None else None
        return None if key is None else f"{self.name}:{key}"


class ParamsError(ValueError):
    """Job parameters failed validation; ``errors`` lists {field, message}."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        # bad input is echoed as an excerpt: a megabyte of it must not come back in the answer
        self.errors = [{"field": _cut(e["field"], 100), "message": _cut(e["message"], 300)}
                       for e in errors[:20]]
        errors = self.errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


_KINDS: dict[str, JobKind] = {}
_loaded = False


def register(kind: JobKind) -> JobKind:
    _KINDS[kind.name] = kind
    return kind


def load_kinds() -> dict[str, JobKind]:
    global _loaded
    if not _loaded:
        from jobs.domain import load_domains

        for module in ENGINE_KIND_MODULES:
            importlib.import_module(module)
        for domain in load_domains():
            for kind in domain.kinds:
                register(kind)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            importlib.import_module(ep.value)
        _loaded = True
    return _KINDS


def kind_names() -> list[str]:
    return sorted(load_kinds())


def get_kind(name: str) -> JobKind:
    kinds = load_kinds()
    if name not in kinds:
        raise ParamsError([{"field": "kind", "message":
                            f"unknown job kind {name!r}; known kinds: {', '.join(sorted(kinds))}"}])
    return kinds[name]


def pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append({"field": loc, "message": msg})
    return out


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


MAX_PARAMS_BYTES = 64_000  # a job's params as JSON; every job is read by every list and page
MAX_PARAMS_DEPTH = 32


def check_bounds(raw: Any) -> None:
    """Refuse params too big or too deeply nested before any other work on them."""
    stack = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_PARAMS_DEPTH:
            raise ParamsError([{"field": "params", "message":
                                f"nested deeper than {MAX_PARAMS_DEPTH} levels"}])
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)
    size = len(json.dumps(raw, default=str))
    if size > MAX_PARAMS_BYTES:
        raise ParamsError([{"field": "params", "message":
                            f"{size} bytes as JSON; at most {MAX_PARAMS_BYTES}"}])


def check_params(kind: JobKind, params: BaseModel) -> None:
    """The kind's own submission checks (``JobKind.check``), as a ParamsError."""
    if kind.check is None:
        return
    try:
        kind.check(params)
    except ParamsError:
        raise
    except ValueError as exc:
        field_name, sep, message = str(exc).partition(": ")
        raise ParamsError([{"field": field_name, "message": message} if sep else
                           {"field": "params", "message": str(exc)}]) from None


def validate_params(kind: JobKind, raw: dict[str, Any]) -> dict[str, Any]:
    """Validated, normalised params as JSON-ready data, having passed the kind's own checks;
    ParamsError names each bad field."""
    check_bounds(raw)
    try:
        model = kind.params_model.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(pydantic_errors(exc)) from None
    check_params(kind, model)
    return model.model_dump(mode="json")
