"""The unit of parallel work: a BranchTask ("run this workflow from node A up to node B on
this state"), plain data that pickles small, and how a failed branch is recorded."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tead.parallel.config import ParallelFlowResult

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

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as a plain tuple (faster than the dataclass default)."""
        return (_task_from_values, (tuple(getattr(self, name) for name in _TASK_FIELDS),))


_TASK_FIELDS = ("workflow", "entry", "exit", "state", "branch", "path", "include_traceback")


def _task_from_values(values: tuple[Any, ...]) -> BranchTask:
    return BranchTask(**dict(zip(_TASK_FIELDS, values, strict=True)))


def failure_result(
    task: BranchTask, error: BaseException, *, timing_ms: float, **extra: Any
) -> ParallelFlowResult:
    """The result of a branch that failed with `error` (its original type kept)."""
    return ParallelFlowResult(
        branch=task.branch,
        success=False,
        error=str(error) or type(error).__name__,
        error_type=type(error).__name__,
        error_mro=tuple(cls.__name__ for cls in type(error).__mro__),
        traceback="".join(traceback.format_exception(error)) if task.include_traceback else None,
        timing_ms=timing_ms,
        **extra,
    )
