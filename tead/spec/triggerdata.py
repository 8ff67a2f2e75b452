"""What a trigger hands a run (`state["trigger"]`), checked: for `tead run --trigger`, which
fakes a trigger so that a workflow can be tried without the daemon, and the dispatch
inputs' defaults and types, which `tead run --input` and the daemon's dispatch share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from tead.errors import InputError
from tead.spec.base import Model
from tead.spec.models import RunEnding, WorkflowSpec, input_matches


def _aware(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO-8601 time (2026-01-02T03:04:05Z)") from None
    if moment.tzinfo is None:
        raise ValueError("an ISO-8601 time with its offset (Z or +01:00)")
    return value


class FileChange(Model):
    path: str
    event: Literal["added", "modified", "deleted"]


class WatchData(Model):
    kind: Literal["watch"]
    changes: list[FileChange] = Field(min_length=1)


class ScheduleData(Model):
    kind: Literal["schedule", "catchup"]
    scheduled_time: Annotated[str, AfterValidator(_aware)]


class DispatchData(Model):
    kind: Literal["dispatch"]


class EndedRun(Model):
    id: str
    workflow: str
    status: RunEnding
    error: str | None = None


class WorkflowRunData(Model):
    kind: Literal["workflow_run"]
    run: EndedRun
    chain: list[str] = Field(default_factory=list)


TriggerData = Annotated[
    WatchData | ScheduleData | DispatchData | WorkflowRunData, Field(discriminator="kind")
]
_TRIGGER = TypeAdapter(TriggerData)


def check_trigger(data: Any, origin: str = "--trigger") -> dict[str, Any]:
    """Trigger data as the daemon would give it; InputError naming the problem and key."""
    if not isinstance(data, dict):
        raise InputError(f"{origin} must be a JSON object, got {type(data).__name__}")
    try:
        checked = _TRIGGER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"] if p not in _KINDS)
        if first["type"] == "union_tag_invalid":
            message = f"kind must be one of {', '.join(sorted(_KINDS))}"
        elif first["type"] == "union_tag_not_found":
            message = "kind is missing"
        else:
            text = str(first["msg"]).removeprefix("Value error, ")
            message = f"{where}: {text}" if where else text
        raise InputError(f"{origin}: {message}") from None
    result: dict[str, Any] = checked.model_dump(mode="json")
    return result


_KINDS = {"watch", "schedule", "catchup", "dispatch", "workflow_run"}


def dispatch_inputs(
    spec: WorkflowSpec | None, inputs: dict[str, Any], *, others: bool = False
) -> dict[str, Any]:
    """Inputs checked against `on.dispatch.inputs`: types checked, required ones present,
    defaults filled in. An undeclared input is an InputError, unless `others` (the state
    given to `tead run`, which may hold any key, keeps them)."""
    declared = spec.on.dispatch.inputs if spec and spec.on and spec.on.dispatch else None
    if declared is None:
        return inputs
    unknown = sorted(set(inputs) - set(declared))
    if unknown and not others:
        raise InputError(f"unknown input {unknown[0]!r} (declared: {', '.join(declared)})")
    checked = {k: v for k, v in inputs.items() if k not in declared}
    for name, item in declared.items():
        if name in inputs:
            if not input_matches(item.type, inputs[name]):
                raise InputError(f"input {name!r} must be of type {item.type}")
            checked[name] = inputs[name]
        elif item.required and item.default is None:
            raise InputError(f"input {name!r} is required")
        elif item.default is not None:
            checked[name] = item.default
    return checked
