"""The workflow file format (CONTRACT §1) as pydantic models, and its JSON Schema.

These models only check the shape of a file. Whether its nodes and edges make a graph
that can run is checked by `tead.graph.builder`, which the loader (`tead.graph.loader`) calls next.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tead.spec.cron import check_cron
from tead.spec.globs import check_glob

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """`500ms`, `30s`, `10m`, `2h` or a number of seconds → float seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 500ms, 10m or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or 500ms, 30s, 10m, 2h"
            ) from None
    else:
        raise ValueError("expected a duration such as 30s, 500ms, 10m or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"a duration must be positive and finite, got {value!r}")
    return seconds


def _duration_schema(minimum: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "number", minimum: 0},
            {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$"},
        ],
        "description": "seconds, or a string such as 500ms, 30s, 10m, 2h",
    }


def _duration_or_zero(value: object) -> float:
    return parse_duration(value, allow_zero=True)


Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_duration_schema("exclusiveMinimum"))
]
DurationOrZero = Annotated[
    float, BeforeValidator(_duration_or_zero), WithJsonSchema(_duration_schema("minimum"))
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: object) -> int:
    """`512M`, `2G`, `1.5G` (powers of 1024; `MB`, `MiB` read the same) or bytes → int."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a size such as 512M, 2G or a number of bytes")
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"invalid size {value!r}: use a number of bytes or 512M, 2G")
        size = float(match.group(1)) * _SIZE_UNIT[match.group(2).lower()]
    else:
        size = float(value)
    if not math.isfinite(size) or size < 1:
        raise ValueError(f"a size must be positive, got {value!r}")
    return int(size)


Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d+(\.\d+)?[KMGTkmgt]?(i?B)?$"},
            ],
            "description": "bytes, or a string such as 512M, 2G",
        }
    ),
]


class Model(BaseModel):
    """Strict base: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


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


_HOST = re.compile(r"^(?:[A-Za-z0-9_.\-]+@)?[A-Za-z0-9_.\-]+(?::\d{1,5})?$")


def _check_host(host: str) -> str:
    if not _HOST.match(host):
        raise ValueError(f"invalid host {host!r}: use host, user@host or user@host:port")
    return host


class EnvVarsSpec(Model):
    include: list[str] = []
    exclude_patterns: list[str] = []


class RemoteSpec(Model):
    hosts: list[Annotated[str, AfterValidator(_check_host)]] = Field(min_length=1)
    workdir: str = "/tmp/tead-jobs"
    cleanup: bool = True
    env_vars: EnvVarsSpec = EnvVarsSpec()


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

    @model_validator(mode="after")
    def _one_body(self) -> NodeSpec:
        if self.run is not None and self.uses is not None:
            raise ValueError("a node has either `run:` or `uses:`, not both")
        if self.with_ is not None and self.uses is None:
            raise ValueError("`with:` needs `uses:`")
        return self


class EdgeSpec(Model):
    """An edge; fan-out edges may override any key of `settings.parallel`."""

    from_: EdgeEnd = Field(alias="from")
    to: EdgeEnd | list[EdgeEnd]
    when: str | None = None
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
    env: dict[str, str] = {}
    initial_state: dict[str, Any] = {}
    settings: Settings = Settings()
    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = []

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        if any(not _ENV_NAME.match(name) for name in env):
            raise ValueError(
                "an environment variable's name is letters, digits and _, not starting with a digit"
            )
        if any("\0" in value for value in env.values()):
            raise ValueError("an environment variable's value cannot hold a NUL character")
        return env


def json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files, for editors."""
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
