"""Values of the parallel layer: ParallelConfig, RetryPolicy, CircuitBreakerConfig and
ParallelFlowResult (CONTRACT §1)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tead.spec.clusters import DaskSpec, RemoteHostSpec, RemoteSpec
from tead.spec.models import CircuitBreakerSpec, ParallelSpec, RetrySpec


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how late a failed branch is tried again."""

    max_retries: int = 0
    base_delay: float = 0.5
    max_delay: float = 10.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.1
    retry_on: tuple[str, ...] | None = None  # exception class names; None: any exception

    @classmethod
    def from_spec(cls, spec: RetrySpec) -> RetryPolicy:
        values = spec.model_dump()
        if spec.retry_on is not None:
            values["retry_on"] = tuple(spec.retry_on)
        return cls(**values)

    def delay_s(self, attempt: int, rand: float) -> float:
        """The wait before retry number `attempt` (1-based); `rand` is uniform in [0, 1).

        base_delay * backoff_multiplier ** (attempt - 1), capped at max_delay, then spread
        by ±jitter (a fraction). tenacity has the same maths, but its retry loop sleeps in
        the calling thread; here retries are scheduled by the fan-out's coordinator so that
        a wait never holds a worker, which leaves only this one line of maths to share.
        """
        delay = min(self.base_delay * self.backoff_multiplier ** (attempt - 1), self.max_delay)
        return max(0.0, delay * (1 + self.jitter * (2 * rand - 1)))

    def retries(self, attempts_made: int, error_mro: tuple[str, ...]) -> bool:
        """Whether a branch that failed `attempts_made` times with this error runs again."""
        if attempts_made > self.max_retries:
            return False
        return self.retry_on is None or any(name in self.retry_on for name in error_mro)


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerConfig:
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    half_open_max_calls: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteConfig:
    """`settings.parallel.remote`: SSH hosts (`[user@]host[:port]`) and how to reach them;
    `slots[i]` is host i's branch slots (None: its CPU count, as its worker reports)."""

    hosts: tuple[str, ...]
    known_hosts: str = ""
    slots: tuple[int | None, ...] = ()
    identity: str | None = None
    python: str = "python3"
    workdir: str = "/tmp/tead-jobs"
    cleanup: bool = True
    connect_timeout_s: float = 10.0
    keepalive_s: float = 5.0
    env_include: tuple[str, ...] = ()
    env_exclude_patterns: tuple[str, ...] = ()
    host_failure_threshold: int = 1  # failures in a row that open a host's breaker

    @classmethod
    def from_spec(cls, remote: RemoteSpec) -> RemoteConfig:
        hosts = [
            h if isinstance(h, RemoteHostSpec) else RemoteHostSpec(host=h) for h in remote.hosts
        ]
        return cls(
            hosts=tuple(h.host for h in hosts),
            slots=tuple(h.slots for h in hosts),
            known_hosts=remote.known_hosts,
            identity=remote.identity,
            python=remote.python,
            workdir=remote.workdir,
            cleanup=remote.cleanup,
            connect_timeout_s=remote.connect_timeout,
            keepalive_s=remote.keepalive,
            env_include=tuple(remote.env_vars.include),
            env_exclude_patterns=tuple(remote.env_vars.exclude_patterns),
            host_failure_threshold=remote.host_failure_threshold,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DaskConfig:
    """Where the dask strategy sends branches: a scheduler's address, or `local`."""

    address: str
    connect_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelConfig:
    """How one fan-out runs. Defaults: threads, one per CPU, no timeout, retry or breaker."""

    strategy: str = "thread"
    max_workers: int | None = None
    timeout_seconds: float | None = None
    fail_fast: bool = False
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreakerConfig | None = None
    include_traceback: bool = False
    remote: RemoteConfig | None = None
    dask: DaskConfig | None = None
    callbacks: tuple[object, ...] = ()  # objects with on_flow_* hooks (see tead.parallel.callbacks)
    callback_timeout_s: float = 5.0

    @property
    def workers(self) -> int:
        """The worker count to use: `max_workers`, else the number of CPUs."""
        return self.max_workers or os.cpu_count() or 1

    def merged(self, overrides: Mapping[str, Any]) -> ParallelConfig:
        """A copy with some keys replaced (spec-shaped values are converted)."""
        return dataclasses.replace(self, **_convert(overrides))

    @classmethod
    def from_spec(cls, spec: ParallelSpec) -> ParallelConfig:
        return cls().merged({key: getattr(spec, key) for key in spec.model_fields_set})


def _convert(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if isinstance(out.get("retry"), RetrySpec):
        out["retry"] = RetryPolicy.from_spec(out["retry"])
    if isinstance(out.get("circuit_breaker"), CircuitBreakerSpec):
        out["circuit_breaker"] = CircuitBreakerConfig(**out["circuit_breaker"].model_dump())
    if isinstance(remote := out.get("remote"), RemoteSpec):
        out["remote"] = RemoteConfig.from_spec(remote)
    if isinstance(dask := out.get("dask"), DaskSpec):
        out["dask"] = DaskConfig(address=dask.address, connect_timeout_s=dask.connect_timeout)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelFlowResult(Mapping[str, Any]):
    """The outcome of one fan-out branch; reads as an object or as a dict."""

    branch: str
    success: bool
    state: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    timeout: bool = False
    timing_ms: float = 0.0
    retry_count: int = 0
    attempt_errors: tuple[str, ...] = field(default_factory=tuple)
    circuit_state: str | None = None
    #: what a `tead.parallel` group member returned (None for fan-out branches)
    value: Any = None
    # The names of the error's classes, most derived first, so that `retry_on` can match
    # a base class by name even when the error came from another process.
    error_mro: tuple[str, ...] = field(default=(), repr=False, compare=False)

    # Dict access falls through to the branch's state, as in TEA: `r["x"]`, `r.get("x")` and
    # `"x" in r` read the key `x` of `r.state` unless `x` is a result field (`branch`,
    # `success`, `state`, `error`, ...), which takes precedence: a state key named like a
    # field is read as `r.state["error"]`. Iteration gives the fields, then the state's keys.

    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_SET:
            return getattr(self, key)
        if self.state is not None and isinstance(key, str) and key in self.state:
            return self.state[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if key in _FIELD_SET:
            return True
        return self.state is not None and isinstance(key, str) and key in self.state

    def __iter__(self) -> Iterator[str]:
        yield from _RESULT_FIELDS
        if self.state is not None:
            yield from (k for k in self.state if isinstance(k, str) and k not in _FIELD_SET)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def evolve(self, **changes: Any) -> ParallelFlowResult:
        """A copy with some fields changed (dataclasses.replace, without its overhead)."""
        values = {name: getattr(self, name) for name in _ALL_FIELDS}
        values.update(changes)
        return ParallelFlowResult(**values)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as a plain tuple: results cross process boundaries by the thousand."""
        return (_result_from_values, tuple(getattr(self, f) for f in _ALL_FIELDS))

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _RESULT_FIELDS}
        data["attempt_errors"] = list(self.attempt_errors)
        return data


_ALL_FIELDS = tuple(f.name for f in dataclasses.fields(ParallelFlowResult))
_RESULT_FIELDS = tuple(name for name in _ALL_FIELDS if name != "error_mro")
_FIELD_SET = frozenset(_RESULT_FIELDS)


def _result_from_values(*values: Any) -> ParallelFlowResult:
    return ParallelFlowResult(**dict(zip(_ALL_FIELDS, values, strict=True)))
