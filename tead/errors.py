"""tead's errors. Each carries data and builds its message from it.

    TeadError                      exit code 1 unless said otherwise
    ├── UsageError                 exit 2: a bad flag, argument or input value
    │   ├── InputError             --input that is not JSON/YAML or not an object
    │   └── ScopeError             --entry-point / --exit-point that cannot work
    ├── WorkflowError              exit 2: a workflow file that does not load
    ├── UnknownStrategyError       exit 2: no executor registered under that name
    ├── PluginError                exit 2: a strategy plug-in that cannot be loaded
    ├── NodeError                  exit 1: a node raised outside a fan-out
    ├── RunCancelled               exit 1: the run was cancelled (or timed out) from outside
    ├── StorageFullError           the state folder's file system is full (the API: 503)
    ├── NotFound                   the daemon has no such run (the API: 404)
    ├── Conflict                   the run cannot do that in its state (the API: 409)
    ├── GroupError                 a member of a `tead.parallel` group failed under `fail_fast`
    └── RunError                   exit 1: the run could not go on (no edge matched, ...)
        ├── FanOutError            a branch failed under `fail_fast`
        ├── PickleValidationError  process strategy: a state value cannot be sent
        ├── StateCopyError         a value a branch takes out cannot be deep-copied for it
        ├── StateJsonError         to a host: a state value that JSON cannot carry exactly
        ├── BundleError            a workflow that cannot be shipped or received as a bundle
        ├── RemoteHostError        remote strategy: a host that cannot serve (unreachable,
        │                          host key refused, no or another tead there)
        └── DaskClusterError       dask strategy: the cluster cannot be reached or used

The CLI maps these to one line on stderr and an exit code; the engine turns errors inside
fan-out branches into recorded results instead of raising them.

Outcomes of branches (never raised to the caller; their names are a result's error_type):
CircuitOpenError, WorkerCrashedError, FanOutCancelledError, and TimeoutError.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class TeadError(Exception):
    """Base of every error tead raises on purpose."""

    exit_code = 1


class UsageError(TeadError):
    """Bad usage: a wrong flag, argument or input."""

    exit_code = 2


class InputError(UsageError):
    """The run's input could not be read."""


class ScopeError(UsageError):
    """An entry or exit point that does not fit the graph."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is in a workflow file (1-based line and column)."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a workflow file."""

    message: str
    where: Location | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class WorkflowError(TeadError):
    """A workflow that does not load; holds one or more problems with locations."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownStrategyError(TeadError):
    """A parallel strategy with no executor registered for it."""

    exit_code = 2

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = tuple(available)
        super().__init__(
            f"unknown parallel strategy {name!r} (available: {', '.join(self.available)})"
        )


class PluginError(TeadError):
    """A strategy plug-in (entry point of the `tead.executors` group, or a registered
    factory) that cannot be loaded, or whose factory cannot make an executor."""

    exit_code = 2

    def __init__(
        self, name: str, target: str, error: BaseException, *, failed: str = "cannot be loaded"
    ) -> None:
        self.name = name
        self.target = target
        self.error = error
        super().__init__(
            f"strategy {name!r}: its plug-in {target} {failed}: {type(error).__name__}: {error}"
        )


class NodeError(TeadError):
    """A node raised an exception outside any fan-out, which fails the run."""

    def __init__(self, node: str, error: BaseException, *, path: str = "") -> None:
        self.node = node
        self.error = error
        self.path = path  # the branch the node ran in ("" for the run's main path)
        detail = f": {error}" if str(error) else ""
        super().__init__(f"node {node!r} failed: {type(error).__name__}{detail}")


class RunError(TeadError):
    """The run could not go on for a reason other than a node's exception."""


class FanOutError(RunError):
    """A fan-out with `fail_fast` lost a branch: the others were cancelled, the run fails."""

    def __init__(self, source: str, result: Any) -> None:
        self.source = source
        self.result = result
        super().__init__(
            f"fan-out at {source!r} failed fast: branch {result.branch!r} failed: "
            f"{result.error_type}: {result.error}"
        )


class PickleValidationError(RunError):
    """A branch's state cannot be deep-copied (every strategy) or pickled (process):
    names the key and the branch."""

    def __init__(
        self,
        branch: str,
        key: str | None,
        error: BaseException,
        *,
        copying: bool = False,
        returning: bool = False,
    ) -> None:
        self.branch = branch
        self.key = key
        self.error = error
        what = f"state key {key!r}" if key is not None else "the branch's work"
        cause = f"{type(error).__name__}: {error}"
        if copying:  # every strategy gives each branch a deep copy of the state
            message = (
                f"{what} cannot be copied for the branch ({cause}); keep such "
                "values (locks, open files, connections) out of the state"
            )
        else:
            where = "back from its worker process" if returning else "to a worker process"
            message = (
                f"{what} cannot be sent {where} ({cause}); keep such "
                "values out of the state or use the thread strategy"
            )
        super().__init__(f"branch {branch!r}: {message}")


class StateCopyError(RunError):
    """A state value a branch takes out cannot be deep-copied for it (a lock, an open
    file): names the key. The branch fails; the others go on."""

    def __init__(self, key: str, error: BaseException) -> None:
        self.key = key
        self.error = error
        super().__init__(
            f"state key {key!r} cannot be copied for the branch ({type(error).__name__}: "
            f"{error}); keep such values (locks, open files, connections) out of the state"
        )


class StateJsonError(RunError):
    """A branch's state cannot be sent to a host as JSON without changing it: names the
    branch, the key and where inside its value."""

    def __init__(self, branch: str, key: str, at: str, reason: str) -> None:
        self.branch = branch
        self.key = key
        self.at = at
        self.reason = reason
        inside = f" (at {at})" if at else ""
        super().__init__(
            f"branch {branch!r}: state key {key!r} cannot be sent to a host as JSON: "
            f"{reason}{inside}; keep plain JSON values (dicts with string keys, lists, "
            "strings, finite numbers, booleans, None) in the state or use the thread or "
            "process strategy"
        )


class BundleError(RunError):
    """A workflow that cannot be made into a bundle (built in code, too big) or a bundle
    that cannot be received (malformed, altered, unknown)."""


class RemoteHostError(RunError):
    """A remote host cannot run branches: names the host and the problem (never a secret:
    the message holds the host, a file name and the SSH or worker error)."""

    def __init__(self, host: str, problem: str) -> None:
        self.host = host
        self.problem = problem
        super().__init__(f"remote host {host}: {problem}")


class DaskClusterError(RunError):
    """The dask strategy cannot use its cluster: the scheduler is not reachable in time, its
    workers run another version of tead (or none), or the dask extra is not installed."""


class RunCancelled(TeadError):
    """A run stopped because its CancelToken was set; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"run {reason.replace('_', ' ')}")


class StorageFullError(TeadError):
    """A write to the daemon's database failed for lack of space; nothing of it was stored."""

    def __init__(self, path: str, cause: str) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"the state folder's disk is full ({path}: {cause}); nothing was written")


class NotFound(TeadError):
    """The daemon has no run with that id."""


class Conflict(TeadError):
    """The run cannot do that in its state (cancel a finished run, ...)."""


class GroupError(TeadError):
    """A member of a parallel group (`tead.parallel`) failed under `fail_fast`: the others
    were cancelled. `result` is the failed member's result, `results` every member's, in
    add order."""

    def __init__(self, group: str, result: Any, results: Sequence[Any]) -> None:
        self.group = group
        self.result = result
        self.results = list(results)
        super().__init__(
            f"group {group!r} failed fast: member {result.branch!r} failed: "
            f"{result.error_type}: {result.error}"
        )


class CircuitOpenError(Exception):
    """A branch was not run because its circuit breaker is open."""


class WorkerCrashedError(Exception):
    """The process running a branch died (killed, segfault, os._exit, out of memory)."""


class FanOutCancelledError(Exception):
    """A branch cancelled because another branch failed under `fail_fast`, or its run was
    cancelled."""
