"""What the supervisor knows of a branch task (the engine's BranchTask is one), and how a
failed branch is recorded."""

from __future__ import annotations

import traceback
from typing import Any, ClassVar, Protocol

from tead.parallel.config import ParallelFlowResult


class SupervisedTask(Protocol):
    """A branch task as the supervisor sees it: a frozen dataclass (a retry runs a copy
    made with `dataclasses.replace(task, state=...)`)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def branch(self) -> str: ...

    @property
    def state(self) -> dict[str, Any]: ...

    @property
    def include_traceback(self) -> bool: ...

    @property
    def breaker_name(self) -> str:
        """The name of the circuit breaker guarding this branch."""
        ...


def failure_result(
    task: SupervisedTask, error: BaseException, *, timing_ms: float, **extra: Any
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
