"""tead: a workflow daemon for YAML pipelines, with parallel fan-outs on pluggable executors.

The Python API: load or build a workflow, run it (`invoke`, `stream`), share executors
across runs (`Executors`), add a strategy (`Executors.register`, or a package in the
`tead.executors` entry-point group).
"""

from tead.engine.events import (
    BranchFinished,
    BranchRetry,
    BranchStarted,
    CircuitChanged,
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
from tead.parallel.config import (
    CircuitBreakerConfig,
    ParallelConfig,
    ParallelFlowResult,
    RetryPolicy,
)
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
    "Event",
    "EventSink",
    "ExecutorDeps",
    "Executors",
    "FanIn",
    "FanOutJob",
    "FanOutStarted",
    "Graph",
    "InputError",
    "NodeError",
    "NodeFinished",
    "NodeStarted",
    "ParallelConfig",
    "ParallelExecutor",
    "ParallelFlowResult",
    "PluginError",
    "RemoteHost",
    "RetryPolicy",
    "RunCancelled",
    "RunError",
    "RunFinished",
    "RunStarted",
    "ScopeError",
    "TeadError",
    "UnknownStrategyError",
    "UsageError",
    "Workflow",
    "WorkflowError",
    "__version__",
    "event_from_json",
    "known_strategies",
    "load_workflow",
    "load_workflow_text",
]
