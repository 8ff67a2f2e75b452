"""The unit of parallel work: a BranchTask ("run this workflow from node A up to node B on
this state"), plain data that pickles small, and how a failed branch is recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# failure_result lives in tead.parallel.task now; re-exported from here
from tead.parallel.task import failure_result as failure_result  # noqa: PLC0414

if TYPE_CHECKING:
    from tead.graph.compiled import WorkflowGraph


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
        """Pickle as a plain tuple (faster than the dataclass default)."""
        return (_task_from_values, (tuple(getattr(self, name) for name in _TASK_FIELDS),))


_TASK_FIELDS = ("workflow", "entry", "exit", "state", "branch", "path", "include_traceback")


def _task_from_values(values: tuple[Any, ...]) -> BranchTask:
    return BranchTask(**dict(zip(_TASK_FIELDS, values, strict=True)))
