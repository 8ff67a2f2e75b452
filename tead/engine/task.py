"""The unit of parallel work: a BranchTask ("run this workflow from node A up to node B on
this state"), its two encodings, and how a failed branch is recorded.

One definition of its fields drives both encodings: pickle for worker processes on this
machine (the hot path: a plain tuple, the workflow as its source text and path) and JSON
for hosts (the workflow named by its bundle's digest, the state checked to survive the
trip unchanged). A workflow built in code pickles its parts and cannot go to a host.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tead.engine.bundle import LoadedWorkflows, bundle_of
from tead.engine.state import plain
from tead.errors import PickleValidationError, StateJsonError
from tead.graph.compiled import WorkflowGraph
from tead.parallel.task import failure_result as failure_result  # noqa: PLC0414 (re-export)

MAX_JSON_DEPTH = 100  # nesting a state value may have on its way to a host

#: the workflows this process has loaded from pickled tasks (a worker loads each once)
THIS_PROCESS = LoadedWorkflows()


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchTask:
    """One branch of a fan-out, as plain data that can be shipped anywhere."""

    workflow: WorkflowGraph
    entry: str
    exit: str
    state: dict[str, Any]
    branch: str
    path: str = ""
    include_traceback: bool = False

    @property
    def breaker_name(self) -> str:
        """The circuit breaker guarding this branch: `<workflow>:<branch start node>`."""
        return f"{self.workflow.name}:{self.entry}"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as a plain tuple (faster than the dataclass default); a workflow loaded
        from a file as its text and path, loaded once per receiving process."""
        return self._reduced(self.state)

    def _reduced(self, state: dict[str, Any]) -> tuple[Any, ...]:
        values = [getattr(self, name) for name in _FIELDS[1:]]
        values[_STATE - 1] = state
        source = self.workflow.source
        if source is None:
            return (_task_from_values, (self.workflow, *values))
        return (_task_from_source, (source.text, source.path, *values))

    def with_state(self, state: dict[str, Any]) -> BranchTask:
        """This task on another state (dataclasses.replace, without its overhead)."""
        values = [getattr(self, name) for name in _FIELDS]
        values[_STATE] = state
        return _task_from_values(*values)

    def to_pickle(self, state: dict[str, Any] | None = None) -> bytes:
        """The task pickled (on `state` instead of its own, if given, without making a new
        task); PickleValidationError naming the state key that cannot be."""
        try:
            target = self if state is None else _TaskOn(self, state)
            return pickle.dumps(target, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            for key, value in (self.state if state is None else state).items():
                try:
                    pickle.dumps(value)
                except Exception as key_exc:
                    raise PickleValidationError(self.branch, key, key_exc) from None
            raise PickleValidationError(self.branch, None, exc) from None

    @staticmethod
    def from_pickle(payload: bytes) -> BranchTask:
        """The task `to_pickle` made (its workflow loaded once per process)."""
        task: BranchTask = pickle.loads(payload)
        return task

    def to_json(self, state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """JSON-safe data for a host: the workflow as its bundle's digest (the bundle is sent
        apart, once: `tead.engine.bundle`), the state (or `state` instead, e.g. its own part
        over a base sent apart) as is once checked to come back equal.

        BundleError for a workflow built in code; StateJsonError naming the key (and where
        inside it) of a state value JSON would lose or change.
        """
        state = plain(self.state if state is None else state)  # read only: nothing taken out
        check_json_state(self.branch, state)
        data = {name: getattr(self, name) for name in _FIELDS}
        data["workflow"] = bundle_of(self.workflow).digest
        data["state"] = state
        return data

    @classmethod
    def from_json(cls, data: Any, workflows: Callable[[str], WorkflowGraph]) -> BranchTask:
        """The task `to_json` made; `workflows` gives the workflow of a bundle digest (as
        `LoadedWorkflows.get` does). ValueError if `data` is not such a task."""
        if not isinstance(data, dict) or set(data) != set(_FIELDS):
            raise ValueError(f"a branch task is an object with the keys {', '.join(_FIELDS)}")
        for name, kind in _JSON_TYPES.items():
            if type(data[name]) is not kind:
                raise ValueError(f"a branch task's {name!r} must be of type {kind.__name__}")
        workflow = workflows(data["workflow"])
        # a branch runs from one of the workflow's nodes up to another (its fan-in): an
        # unknown exit would run it on to the end of the workflow
        for name in ("entry", "exit"):
            if data[name] not in workflow.nodes:
                raise ValueError(
                    f"a branch task's {name} {data[name]!r} is no node of the workflow"
                )
        if data["entry"] == data["exit"]:
            raise ValueError("a branch task's entry and exit are the same node")
        return cls(**{**data, "workflow": workflow})


_FIELDS = tuple(f.name for f in dataclasses.fields(BranchTask))
_STATE = _FIELDS.index("state")
# The type of each field in JSON (a new field of another type fails here, at import):
# the workflow travels as its bundle's digest.
_JSON_TYPES: dict[str, type] = {
    f.name: {"WorkflowGraph": str, "str": str, "bool": bool, "dict[str, Any]": dict}[str(f.type)]
    for f in dataclasses.fields(BranchTask)
}


class _TaskOn:
    """Pickles as `task` on another state."""

    __slots__ = ("state", "task")

    def __init__(self, task: BranchTask, state: dict[str, Any]) -> None:
        self.task = task
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return self.task._reduced(self.state)


def _task_from_values(*values: Any) -> BranchTask:
    return BranchTask(**dict(zip(_FIELDS, values, strict=True)))


def _task_from_source(text: str, path: str, *values: Any) -> BranchTask:
    return _task_from_values(THIS_PROCESS.from_source(text, path), *values)


def check_json_state(branch: str, state: Mapping[str, Any]) -> None:
    """StateJsonError naming the key (and where inside it) of the first value of `state`
    that JSON would lose or change (the state of branch `branch`)."""
    for key, value in state.items():
        if type(key) is not str:
            raise StateJsonError(branch, repr(key), "", "JSON keys are strings")
        _check_json(value, branch, key, key)


def _check_json(value: Any, branch: str, key: str, at: str, depth: int = 0) -> None:
    """StateJsonError unless JSON gives `value` back equal and of the same types."""

    def fail(reason: str) -> StateJsonError:
        return StateJsonError(branch, key, at if at != key else "", reason)

    kind = type(value)
    if value is None or kind is bool:
        return
    if kind is str:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise fail("a string with a lone surrogate is not valid UTF-8") from None
        return
    if kind is int:
        if value.bit_length() > 14_000:  # about the 4300 digits int() and str() allow
            raise fail("an integer too large for JSON")
        return
    if kind is float:
        if not math.isfinite(value):
            raise fail(f"{value} is not a JSON number")
        return
    if depth >= MAX_JSON_DEPTH:
        raise fail(f"nested more than {MAX_JSON_DEPTH} deep (or it contains itself)")
    if kind is list:
        for index, item in enumerate(value):
            _check_json(item, branch, key, f"{at}[{index}]", depth + 1)
        return
    if kind is dict:
        for name, item in value.items():
            if type(name) is not str:
                raise fail(f"a dict key {name!r} ({type(name).__name__}): JSON keys are strings")
            _check_json(item, branch, key, f"{at}[{name!r}]", depth + 1)
        return
    hint = " (JSON has lists only: use a list)" if kind is tuple else ""
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    raise fail(f"a {name} is not a JSON value{hint}")
