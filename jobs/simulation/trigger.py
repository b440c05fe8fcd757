"""Starting a simulation: validate the request, resolve each model's first day, record the job.

Only validation and bookkeeping happen here (it runs on the request path): no price download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from jobs import queue, store
from jobs.db import today_utc
from jobs.engine import Engine
from jobs.models import Job
from jobs.prices.params import end_not_before_start, iso_date
from jobs.registry import ParamsError, check_params, pydantic_errors
from jobs.simulation import catalog
from jobs.simulation import store as sim_store
from jobs.simulation.job import BUSY, KIND, RUN, SimulationParams, model_days, resolve_trigger
from jobs.simulation.settings import simulation_settings


class SimulationBusy(Exception):
    def __init__(self) -> None:
        super().__init__(BUSY)


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_date: date | None = None
    end_date: date
    models: list[str] | None = None
    replace_existing: bool = False

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        return None if value in (None, "") else iso_date(value)

    @field_validator("end_date")
    @classmethod
    def _end(cls, value: date, info: ValidationInfo) -> date:
        return end_not_before_start(info.data.get("start_date"), value)

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value or None


@dataclass
class Triggered:
    job: Job
    total_model_days: int  # the model-days it will run (those completed before are not counted)
    models: list[str]
    warnings: list[str] = field(default_factory=list)
    # each model's first day, when resumed (no start_date); None: from start_date
    resumed: dict[str, tuple[date, bool]] | None = None  # model -> (first day, cold start)

    @property
    def message(self) -> str:
        text = (f"Simulation job {self.job.id} created: {self.total_model_days} model-days "
                f"across {len(self.models)} models")
        if self.resumed is not None:
            starts = ", ".join(f"{m} from {d.isoformat()}" + (" (cold start: end_date alone)"
                                                               if cold else "")
                               for m, (d, cold) in self.resumed.items())
            text += f" (resume mode: {starts})"
        return text


def _error(field_name: str, message: str) -> ParamsError:
    return ParamsError([{"field": field_name, "message": message}])


async def trigger(engine: Engine, raw: dict[str, Any]) -> Triggered:
    """Raises ParamsError (400), SimulationBusy (400), QueueFull (429), QueueUnavailable (503)."""
    try:
        req = TriggerRequest.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(pydantic_errors(exc)) from None
    try:
        specs = catalog.resolve_models(req.models)
    except ValueError as exc:
        raise _error("models", str(exc)) from None
    names = [spec.name for spec in specs]
    if await store.count_unfinished(engine.db, kinds=(KIND,)):
        raise SimulationBusy()
    last = {} if req.start_date else await sim_store.last_completed_days(engine.db, names)
    try:
        starts = resolve_trigger(req.start_date, req.end_date, names, last,
                                 simulation_settings().max_simulation_days)
    except ValueError as exc:
        field_name, _, message = str(exc).partition(": ")
        raise _error(field_name, message) from None
    params = SimulationParams(end_date=req.end_date, model_starts=starts,
                              replace_existing=req.replace_existing, start_date=req.start_date)
    check_params(RUN, params)  # the kind's own checks, the same on every route
    warnings = []
    if req.end_date > today_utc():
        warnings.append(f"end_date {req.end_date} is after today: days after {today_utc()} are not "
                        "simulated")
    per_model = model_days(params)
    total = sum(len(days) for days in per_model.values())
    if total == 0:
        first = min(starts.values())
        raise _error("end_date", f"no NYSE trading day from {first} to {req.end_date}")
    if not req.replace_existing:
        # known from the store at the cost of one query; price gaps are learnt by the worker
        done = await sim_store.completed_days(engine.db, names, params.first_day, req.end_date)
        for model, days in per_model.items():
            again = [d for d in days if d in done.get(model, ())]
            if again:
                total -= len(again)
                warnings.append(f"{model}: {len(again)} model-days already completed, skipped "
                                f"(replace_existing runs them again): "
                                f"{', '.join(d.isoformat() for d in again)}")
    try:
        job = await queue.submit(engine, KIND, params.model_dump(mode="json"), validated=True)
    except queue.JobBusy:  # another trigger won the race since the check above
        raise SimulationBusy() from None
    resumed = None if req.start_date else {
        m: (d, last.get(m) is None) for m, d in starts.items()}
    return Triggered(job, total, names, warnings, resumed)
