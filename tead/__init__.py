"""tead: a workflow daemon for YAML pipelines, with parallel fan-outs on pluggable executors."""

from tead.engine import run_branch
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
from tead.graph import Graph
from tead.loader import load_workflow, load_workflow_text
from tead.reliability import CircuitBreakerConfig, ParallelConfig, ParallelFlowResult, RetryPolicy
from tead.task import BranchTask
from tead.workflow import END, START, Workflow

__version__ = "0.1.0"

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
