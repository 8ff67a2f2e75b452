"""tead: a workflow daemon for YAML pipelines, with parallel fan-outs on pluggable executors."""

from tead.engine.runner import run_branch
from tead.engine.task import BranchTask
from tead.errors import (
    InputError,
    NodeError,
    RunCancelled,
    RunError,
    ScopeError,
    TeadError,
    UnknownStrategyError,
    UsageError,
    WorkflowError,
)
from tead.executors import (
    Executors,
    ParallelExecutor,
    available_strategies,
    get_executor,
    register_executor,
)
from tead.graph.builder import Graph
from tead.graph.compiled import END, START, Workflow
from tead.graph.loader import load_workflow, load_workflow_text
from tead.parallel.config import (
    CircuitBreakerConfig,
    ParallelConfig,
    ParallelFlowResult,
    RetryPolicy,
)
from tead.version import __version__

__all__ = [
    "END",
    "START",
    "BranchTask",
    "CircuitBreakerConfig",
    "Executors",
    "Graph",
    "InputError",
    "NodeError",
    "ParallelConfig",
    "ParallelExecutor",
    "ParallelFlowResult",
    "RetryPolicy",
    "RunCancelled",
    "RunError",
    "ScopeError",
    "TeadError",
    "UnknownStrategyError",
    "UsageError",
    "Workflow",
    "WorkflowError",
    "__version__",
    "available_strategies",
    "get_executor",
    "load_workflow",
    "load_workflow_text",
    "register_executor",
    "run_branch",
]
