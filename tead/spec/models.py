"""The workflow file format (CONTRACT §1) as pydantic models, and its JSON Schema.

These models only check the shape of a file. Whether its nodes and edges make a graph
that can run is checked by `tead.graph.builder`, which the loader (`tead.graph.loader`) calls next.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    field_validator,
    model_validator,
)

from tead.spec.base import NAME_PATTERN, Model
from tead.spec.clusters import DaskSpec, RemoteSpec
from tead.spec.cron import check_cron
from tead.spec.globs import check_glob
from tead.spec.teamodels import ExpressionCondition, StateType, StepSpec, TeaConfig, VarName
from tead.spec.units import Duration, DurationOrZero, Size

# --- triggers (used by the daemon; parsed and checked here) -------------------------------


def _check_cron(expr: str) -> str:
    check_cron(expr)
    return expr


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return name


class CronSchedule(Model):
    cron: Annotated[str, AfterValidator(_check_cron)]
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"


class IntervalSchedule(Model):
    every: Duration


def _check_glob(pattern: str) -> str:
    return check_glob(pattern)


class WatchTrigger(Model):
    paths: list[Annotated[str, AfterValidator(_check_glob)]] = Field(min_length=1)
    events: list[Literal["added", "modified", "deleted"]] = ["added", "modified"]


InputType = Literal["string", "integer", "number", "boolean", "object", "array"]
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def input_matches(kind: str, value: object) -> bool:
    """Whether `value` is of the dispatch input type `kind` (bool is not a number)."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _PY_TYPES[kind])


class DispatchInput(Model):
    type: InputType = "string"
    default: Any = None
    required: bool = False
    description: str | None = None

    @model_validator(mode="after")
    def _default_fits(self) -> DispatchInput:
        if self.default is not None and not input_matches(self.type, self.default):
            raise ValueError(f"default {self.default!r} is not of type {self.type}")
        return self


class DispatchTrigger(Model):
    inputs: dict[str, DispatchInput] = {}


RunEnding = Literal["succeeded", "failed", "cancelled", "timed_out", "interrupted"]


class WorkflowRunTrigger(Model):
    """Runs of other workflows that end with one of these statuses (default: any)."""

    workflows: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)]] = Field(
        min_length=1
    )
    status: list[RunEnding] = Field(
        default=["succeeded", "failed", "cancelled", "timed_out", "interrupted"], min_length=1
    )


# Tags show up in error locations; they must not look like keys of the data.
_CRON_TAG, _EVERY_TAG = "<cron schedule>", "<interval schedule>"


def _schedule_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return _CRON_TAG if "cron" in value else _EVERY_TAG if "every" in value else None
    return _CRON_TAG if isinstance(value, CronSchedule) else _EVERY_TAG


Schedule = Annotated[
    Annotated[CronSchedule, Tag(_CRON_TAG)] | Annotated[IntervalSchedule, Tag(_EVERY_TAG)],
    Discriminator(
        _schedule_kind,
        custom_error_type="schedule",
        custom_error_message="a schedule entry needs `cron:` or `every:`",
    ),
]


class Triggers(Model):
    schedule: list[Schedule] = []
    watch: WatchTrigger | None = None
    dispatch: DispatchTrigger | None = None
    workflow_run: WorkflowRunTrigger | None = None
    catchup: Literal["skip", "latest", "all"] = "latest"


class Concurrency(Model):
    group: str | None = None
    cancel_in_progress: bool = False


# --- parallel settings ---------------------------------------------------------------------


class RetrySpec(Model):
    max_retries: int = Field(default=0, ge=0, le=100)
    base_delay: DurationOrZero = 0.5
    max_delay: Duration = 10.0
    backoff_multiplier: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    retry_on: list[str] | None = None


class CircuitBreakerSpec(Model):
    failure_threshold: PositiveInt = 5
    reset_timeout: Duration = 30.0
    half_open_max_calls: PositiveInt = 1


class ParallelSpec(Model):
    """`settings.parallel`; every key may also be set on a fan-out edge."""

    strategy: str = "thread"
    max_workers: PositiveInt | None = None
    timeout_seconds: Duration | None = None
    fail_fast: bool = False
    retry: RetrySpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None
    include_traceback: bool = False
    remote: RemoteSpec | None = None
    dask: DaskSpec | None = None


class Settings(Model):
    parallel: ParallelSpec = ParallelSpec()


# --- nodes and edges -------------------------------------------------------------------------

NodeName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)]
EdgeEnd = Annotated[str, Field(min_length=1, max_length=200)]


class NodeSpec(Model):
    name: NodeName
    description: str | None = None
    run: str | None = None
    uses: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    with_: dict[str, Any] | None = Field(default=None, alias="with")
    # --- TEA compatibility (see tead.spec.tea and the README's migration table) ---
    language: Literal["python"] | None = None
    fan_in: bool | EdgeEnd | None = None  # `true` marks a fan-in; a node name on dynamic_parallel
    type: Literal["dynamic_parallel"] | None = None
    items: str | None = None
    item_var: VarName | None = None
    index_var: VarName | None = None
    max_concurrency: PositiveInt | None = None
    fail_fast: bool | None = None
    steps: list[StepSpec] | None = None
    output: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_body(self) -> NodeSpec:
        if self.run is not None and self.uses is not None:
            raise ValueError("a node has either `run:` or `uses:`, not both")
        if self.with_ is not None and self.uses is None:
            raise ValueError("`with:` needs `uses:`")
        if self.type == "dynamic_parallel":
            return self._dynamic_parallel()
        if isinstance(self.fan_in, str):
            raise ValueError("`fan_in:` on a node is `true` (or a node name on dynamic_parallel)")
        extra = [k for k in _DYNAMIC_KEYS if getattr(self, k) is not None]
        if extra:
            raise ValueError(f"{', '.join(extra)} only apply to `type: dynamic_parallel` nodes")
        return self

    def _dynamic_parallel(self) -> NodeSpec:
        if self.items is None:
            raise ValueError("a dynamic_parallel node needs `items:`")
        if not isinstance(self.fan_in, str):
            raise ValueError("a dynamic_parallel node needs `fan_in:` naming its fan-in node")
        if not self.steps:
            raise ValueError("a dynamic_parallel node needs `steps:` (Python `run:` steps)")
        if self.run is not None or self.uses is not None:
            raise ValueError("a dynamic_parallel node runs its `steps:`, not `run:` or `uses:`")
        return self


_DYNAMIC_KEYS = (
    "items",
    "item_var",
    "index_var",
    "max_concurrency",
    "fail_fast",
    "steps",
    "output",
)


class EdgeSpec(Model):
    """An edge; fan-out edges may override any key of `settings.parallel`."""

    from_: EdgeEnd = Field(alias="from")
    to: EdgeEnd | list[EdgeEnd]
    when: str | bool | None = None  # a YAML boolean: TEA's constant condition
    condition: str | ExpressionCondition | None = None  # TEA: a Jinja expression
    parallel: bool = False
    type: Literal["parallel", "normal"] | None = None
    fan_in: EdgeEnd | None = None
    for_each: str | None = None
    item_var: Annotated[str, Field(pattern=r"^[A-Za-z_]\w*$")] | None = None
    parallel_strategy: str | None = None
    max_workers: PositiveInt | None = None
    timeout_seconds: Duration | None = None
    fail_fast: bool | None = None
    retry: RetrySpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None
    include_traceback: bool | None = None
    remote: RemoteSpec | None = None
    dask: DaskSpec | None = None

    @property
    def is_parallel(self) -> bool:
        return self.parallel or self.type == "parallel"

    @property
    def targets(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)

    def overrides(self) -> dict[str, Any]:
        """The `settings.parallel` keys this edge sets."""
        keys = ParallelSpec.model_fields.keys() - {"strategy"}
        found = {k: getattr(self, k) for k in keys if k in self.model_fields_set}
        if self.parallel_strategy is not None:
            found["strategy"] = self.parallel_strategy
        return found


class Limits(Model):
    """Resource limits of a run's process (rlimits; in the daemon, each run is a process)."""

    # address space (RLIMIT_AS), per process: from 16M (less cannot run Python) to 1 EiB
    memory: Annotated[Size, Field(ge=16 * 1024**2, le=1024**6)] | None = None
    # CPU seconds (RLIMIT_CPU), per process: at most about 68 years
    cpu_time: Annotated[Duration, Field(le=2**31 - 1)] | None = None
    open_files: Annotated[int, Field(ge=16, le=2**20)] | None = None  # RLIMIT_NOFILE


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
SECRET_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$"


class SecretRef(Model):
    """`{secret: name}` as an `env:` value: a secret kept by the daemon."""

    secret: Annotated[str, Field(pattern=SECRET_NAME_PATTERN)]


EnvValue = Annotated[
    Annotated[str, Tag("<string>")] | Annotated[SecretRef, Tag("<secret>")],
    Discriminator(lambda v: "<secret>" if isinstance(v, dict | SecretRef) else "<string>"),
]


class WorkflowSpec(Model):
    """A workflow file."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
        json_schema_extra={"title": "tead workflow"},
    )

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)] | None = None
    description: str | None = None
    on: Triggers | None = None
    concurrency: Concurrency | None = None
    timeout: Duration | None = None
    limits: Limits | None = None
    env: dict[str, EnvValue] = {}
    initial_state: dict[str, Any] = {}
    settings: Settings = Settings()
    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = []
    # --- TEA compatibility (see tead.spec.tea) ---
    version: str | int | float | None = None  # TEA's file version: informational
    state_schema: dict[str, StateType] | None = None
    config: TeaConfig | None = None

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        if any(not _ENV_NAME.match(name) for name in env):
            raise ValueError(
                "an environment variable's name is letters, digits and _, not starting with a digit"
            )
        if any(isinstance(value, str) and "\0" in value for value in env.values()):
            raise ValueError("an environment variable's value cannot hold a NUL character")
        return env


def json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files, for editors."""
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
