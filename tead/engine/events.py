"""A run's events: one frozen dataclass per kind, with one JSON encoding.

Sinks inside tead (`invoke(on_event=...)`, progress, metrics) receive these typed values.
Everything that leaves the process (`tead run --stream`, `Workflow.stream()`, branch events
sent back by a worker process or host) uses `event.to_json()`, a dict of JSON values:

    {"event": "node_started", "ts": "2026-01-02T03:04:05.678Z", "node": "a", "path": ""}

`event_from_json` is its inverse, so an event that crossed a process boundary is re-emitted
exactly as it was sent. `ts` is an aware UTC datetime at millisecond precision (the
encoding's precision); `path` is `""` on the main path and `branch/subbranch` inside
fan-outs.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeAlias

from tead.parallel.breaker import CircuitState

Status = Literal["succeeded", "failed"]


def utc_now() -> datetime:
    """Now, in UTC, at the events' precision (milliseconds)."""
    return _to_millis(datetime.now(UTC))


def _to_millis(ts: datetime) -> datetime:
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def format_ts(ts: datetime) -> str:
    """`ts` as the events' JSON has it: ISO 8601 in UTC with milliseconds and a `Z`."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    """The inverse of `format_ts`; ValueError if `text` is no such time."""
    if not isinstance(text, str):
        raise ValueError(f"event time {text!r} is not a string")
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError(f"event time {text!r} has no time zone")
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    """What every event has: its kind (`event` in JSON) and when it happened."""

    kind: ClassVar[str]
    # JSON leaves these fields out when they are None (they exist for one status only).
    omitted_if_none: ClassVar[frozenset[str]] = frozenset()
    # How `event_from_json` turns a JSON value back into the field's type, where they differ.
    decoders: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    ts: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError(f"{type(self).__name__}: ts must be time-zone aware")
        object.__setattr__(self, "ts", _to_millis(self.ts.astimezone(UTC)))

    def to_json(self) -> dict[str, Any]:
        """This event as JSON: `event`, `ts`, then the fields in order.

        Values are left as they are (a final `state` may hold sets or dates); the JSON
        writer (`tead.jsonable.dumps`) converts what the json module does not know.
        """
        data: dict[str, Any] = {"event": self.kind, "ts": format_ts(self.ts)}
        for item in dataclasses.fields(self):
            if item.name == "ts":
                continue
            value = getattr(self, item.name)
            if value is None and item.name in self.omitted_if_none:
                continue
            data[item.name] = _json_value(value)
        return data


def _json_value(value: Any) -> Any:
    if isinstance(value, CircuitState):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(_Event):
    """The run began at `entry` and will stop before `exit`."""

    kind: ClassVar[str] = "run_started"
    workflow: str
    entry: str
    exit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(_Event):
    """The run ended: `state` is the final state if it succeeded; else `error`, and `state`
    the state as it was when the run failed."""

    kind: ClassVar[str] = "run_finished"
    omitted_if_none: ClassVar[frozenset[str]] = frozenset({"error", "state"})
    status: Status
    error: str | None = None
    duration_ms: float
    state: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStarted(_Event):
    """Node `node` is about to run (also for nodes without code)."""

    kind: ClassVar[str] = "node_started"
    node: str
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFinished(_Event):
    """Node `node` returned (`succeeded`) or raised (`failed`, with `error`)."""

    kind: ClassVar[str] = "node_finished"
    omitted_if_none: ClassVar[frozenset[str]] = frozenset({"error"})
    node: str
    path: str
    status: Status
    error: str | None = None
    duration_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FanOutStarted(_Event):
    """A fan-out from `node` to `fan_in` starts `branches` (their names, in order)."""

    kind: ClassVar[str] = "fanout_started"
    decoders: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"branches": tuple}
    node: str
    fan_in: str
    path: str
    strategy: str
    branches: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchStarted(_Event):
    """An attempt of a branch (at `path`) of the fan-out from `node` started."""

    kind: ClassVar[str] = "branch_started"
    node: str
    fan_in: str
    path: str
    branch: str
    strategy: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchRetry(_Event):
    """A branch's attempt failed with `error`; attempt `attempt` follows in `delay_s`."""

    kind: ClassVar[str] = "branch_retry"
    path: str
    branch: str
    attempt: int
    delay_s: float
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchFinished(_Event):
    """A branch's outcome, after its retries (the fields of its `ParallelFlowResult`)."""

    kind: ClassVar[str] = "branch_finished"
    node: str
    fan_in: str
    path: str
    branch: str
    strategy: str
    success: bool
    error: str | None
    error_type: str | None
    timeout: bool
    retry_count: int
    timing_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FanIn(_Event):
    """The fan-in node `node` gets `branches` results, `failed` of them failed."""

    kind: ClassVar[str] = "fan_in"
    node: str
    path: str
    branches: int
    failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitChanged(_Event):
    """The circuit breaker `name` (`<workflow>:<branch>`) moved from `old` to `new`."""

    kind: ClassVar[str] = "circuit_changed"
    decoders: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "old": CircuitState,
        "new": CircuitState,
    }
    name: str
    old: CircuitState
    new: CircuitState


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteHost(_Event):
    """At the end of a remote fan-out, for each of its hosts: whether it is `up` and how
    many branch `commands` this fan-out sent it."""

    kind: ClassVar[str] = "remote_host"
    host: str
    up: bool
    commands: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DaskRerun(_Event):
    """The dask worker that held the branch at `path` was lost: the scheduler runs it
    again on another worker (so it may run twice)."""

    kind: ClassVar[str] = "dask_rerun"
    path: str
    worker: str


Event: TypeAlias = (
    RunStarted
    | RunFinished
    | NodeStarted
    | NodeFinished
    | FanOutStarted
    | BranchStarted
    | BranchRetry
    | BranchFinished
    | FanIn
    | CircuitChanged
    | RemoteHost
    | DaskRerun
)
EventSink: TypeAlias = Callable[[Event], None]

EVENT_TYPES: Mapping[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        RunFinished,
        NodeStarted,
        NodeFinished,
        FanOutStarted,
        BranchStarted,
        BranchRetry,
        BranchFinished,
        FanIn,
        CircuitChanged,
        RemoteHost,
        DaskRerun,
    )
}


def event_from_json(data: Mapping[str, Any]) -> Event:
    """The event whose `to_json()` (after a trip through JSON text) is `data`.

    Raises ValueError for an unknown kind, a missing field, an unknown one or one of the
    wrong type.
    """
    kind = data.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"not an event: unknown kind {kind!r}")
    names = {item.name for item in dataclasses.fields(cls)}
    unknown = set(data) - names - {"event"}
    if unknown:
        raise ValueError(f"{kind} event: unknown fields {sorted(unknown)}")
    required = {
        item.name
        for item in dataclasses.fields(cls)
        if item.name not in cls.omitted_if_none and item.name != "ts"
    } | {"ts"}
    missing = required - set(data)
    if missing:
        raise ValueError(f"{kind} event: missing fields {sorted(missing)}")
    hints = _FIELD_TYPES[cls.kind]
    wrong = sorted(name for name in names & set(data) if not _fits(data[name], hints[name]))
    if wrong:
        raise ValueError(f"{kind} event: fields of the wrong type {wrong}")
    values = {name: cls.decoders.get(name, _same)(data[name]) for name in names & set(data)}
    values["ts"] = parse_ts(data["ts"])
    return cls(**values)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value can be the field of type `hint` (as `to_json` writes it)."""
    if hint is datetime or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return isinstance(value, str)  # parsed by parse_ts or the field's decoder
    if hint is float:
        return type(value) in (int, float)
    if isinstance(hint, type):
        return type(value) is hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    if origin is types.UnionType:
        return any(_fits(value, arg) for arg in args)
    if origin is tuple:  # tuple[str, ...]: a list in JSON
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict)
    return hint is type(None) and value is None


def _same(value: Any) -> Any:
    return value


#: each event kind's field types, for `event_from_json` to check what it is given
_FIELD_TYPES: Mapping[str, dict[str, Any]] = {
    kind: typing.get_type_hints(cls) for kind, cls in EVENT_TYPES.items()
}
