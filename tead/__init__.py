"""tead: a workflow daemon for YAML pipelines, with parallel fan-outs on pluggable executors.

The Python API: load or build a workflow, run it (`invoke`, `stream`), share executors
across runs (`Executors`), add a strategy (`Executors.register`, or a package in the
`tead.executors` entry-point group), run async work in parallel groups (`parallel`).
"""

from typing import Any

from tead.engine.events import (
    BranchFinished,
    BranchRetry,
    BranchStarted,
    CircuitChanged,
    DaskRerun,
    Event,
    EventSink,
    FanIn,
    FanOutStarted,
    NodeFinished,
    NodeStarted,
    RemoteHost,
    RunFinished,
    RunStarted,
    event_from_json,
)
from tead.engine.seam import FanOutJob, ParallelExecutor
from tead.engine.task import BranchTask
from tead.errors import (
    GroupError,
    InputError,
    NodeError,
    PluginError,
    RunCancelled,
    RunError,
    ScopeError,
    TeadError,
    UnknownStrategyError,
    UsageError,
    WorkflowError,
)
from tead.executors.registry import ExecutorDeps, Executors
from tead.graph.compiled import END, START
from tead.groups import ParallelEntry
from tead.parallel.config import (
    CircuitBreakerConfig,
    ParallelConfig,
    ParallelFlowResult,
    RetryPolicy,
)
from tead.parallel.group import ParallelGroup
from tead.parallel.journal import Journal, SqliteJournal
from tead.parallel.members import GroupListener, GroupMetrics
from tead.parallel.scope import current_key
from tead.parallel.strategies import known_strategies
from tead.version import __version__
from tead.workflow import Graph, Workflow, load_workflow, load_workflow_text

__all__ = [
    "END",
    "START",
    "BranchFinished",
    "BranchRetry",
    "BranchStarted",
    "BranchTask",
    "CircuitBreakerConfig",
    "CircuitChanged",
    "DaskRerun",
    "Event",
    "EventSink",
    "ExecutorDeps",
    "Executors",
    "FanIn",
    "FanOutJob",
    "FanOutStarted",
    "Graph",
    "GroupError",
    "GroupListener",
    "GroupMetrics",
    "InputError",
    "Journal",
    "NodeError",
    "NodeFinished",
    "NodeStarted",
    "ParallelConfig",
    "ParallelExecutor",
    "ParallelFlowResult",
    "ParallelGroup",
    "PluginError",
    "RemoteHost",
    "RetryPolicy",
    "RunCancelled",
    "RunError",
    "RunFinished",
    "RunStarted",
    "ScopeError",
    "SqliteJournal",
    "TeadError",
    "UnknownStrategyError",
    "UsageError",
    "Workflow",
    "WorkflowError",
    "__version__",
    "current_key",
    "event_from_json",
    "known_strategies",
    "load_workflow",
    "load_workflow_text",
    "parallel",
    "progress_display",
]


#: `tead.parallel(...)` makes a parallel group (CONTRACT §5); `tead.parallel.<module>` are
#: still the modules of the package tead.parallel
parallel = ParallelEntry()


def __getattr__(name: str) -> Any:
    """`progress_display` (tead.cli.progress), imported on first use: rich takes tens of
    milliseconds to import, which programs that never show progress should not pay."""
    if name == "progress_display":
        from tead.cli.progress import progress_display  # deferred: rich costs ~40 ms

        return progress_display
    raise AttributeError(f"module 'tead' has no attribute {name!r}")
