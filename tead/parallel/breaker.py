"""Circuit breakers: a thread-safe state machine with an injected clock, and a registry
with a storage seam so that states can outlive a process.

    closed --(failure_threshold failures in a row)--> open
    open --(reset_timeout elapsed, on the next request)--> half_open
    half_open --(a probe succeeds)--> closed
    half_open --(a probe fails)--> open

Breakers are named `<workflow>:<branch start node>` (CONTRACT §1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from tead.parallel.config import CircuitBreakerConfig

Clock = Callable[[], float]  # wall-clock seconds (time.time): opened_at must survive restarts


class CircuitState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSnapshot:
    """What a store keeps of one breaker."""

    name: str
    state: CircuitState
    failure_count: int
    opened_at: float | None


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    old: CircuitState
    new: CircuitState


class BreakerStore(Protocol):
    """Where breaker states live between runs (the daemon plugs SQLite in here)."""

    def load_all(self) -> list[BreakerSnapshot]: ...

    def save(self, snapshot: BreakerSnapshot) -> None: ...


class MemoryBreakerStore:
    """Keeps states in this process only (the default for `tead run` and the Python API)."""

    def __init__(self) -> None:
        self._items: dict[str, BreakerSnapshot] = {}

    def load_all(self) -> list[BreakerSnapshot]:
        return list(self._items.values())

    def save(self, snapshot: BreakerSnapshot) -> None:
        self._items[snapshot.name] = snapshot


class RecordingBreakerStore:
    """A store seeded with given states that keeps what is saved to it apart: a branch run
    away from its run (a worker process, a host) starts from its run's breakers, and sends
    back the states of those it changed."""

    def __init__(self, seed: Iterable[BreakerSnapshot] = ()) -> None:
        self._seed = list(seed)
        self.saved: dict[str, BreakerSnapshot] = {}

    def load_all(self) -> list[BreakerSnapshot]:
        return list(self._seed)

    def save(self, snapshot: BreakerSnapshot) -> None:
        self.saved[snapshot.name] = snapshot


class CircuitBreaker:
    """One breaker. `allow()` before a call, then `record_success()` or `record_failure()`."""

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig,
        *,
        clock: Clock = time.time,
        snapshot: BreakerSnapshot | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._state = snapshot.state if snapshot else CircuitState.CLOSED
        self._failures = snapshot.failure_count if snapshot else 0
        self._opened_at = snapshot.opened_at if snapshot else None
        self._probes = 0
        self.dirty = False  # changed since the registry last saved it

    @property
    def state(self) -> CircuitState:
        """The state now (an open breaker past its reset timeout reads as half-open).

        Read without the lock: one reference read, on every branch's hot path."""
        state = self._state
        if state is CircuitState.OPEN and self._reset_due():
            return CircuitState.HALF_OPEN
        return state

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            name=self.name,
            state=self._state,
            failure_count=self._failures,
            opened_at=self._opened_at,
        )

    def restore(self, snapshot: BreakerSnapshot) -> None:
        """Take the state a copy of this breaker reached elsewhere (its probes stay)."""
        with self._lock:
            self._state = snapshot.state
            self._failures = snapshot.failure_count
            self._opened_at = snapshot.opened_at

    def _reset_due(self) -> bool:
        opened = self._opened_at or 0.0
        return self._clock() - opened >= self.config.reset_timeout

    def _move(self, new: CircuitState) -> Transition | None:
        old, self._state = self._state, new
        return Transition(self.name, old, new) if old is not new else None

    def allow(self) -> tuple[bool, Transition | None]:
        """Whether a call may go ahead now, and the transition that deciding caused."""
        if self._state is CircuitState.CLOSED:  # the common case, without the lock
            return True, None
        with self._lock:
            return self._allow_locked()

    def _allow_locked(self) -> tuple[bool, Transition | None]:
        change = None
        if self._state is CircuitState.OPEN:
            if not self._reset_due():
                return False, None
            change = self._move(CircuitState.HALF_OPEN)
            self._probes = 0
        elif self._state is CircuitState.CLOSED:  # closed by another thread meanwhile
            return True, None
        if self._probes >= self.config.half_open_max_calls:
            return False, change
        self._probes += 1
        return True, change

    def release_probe(self) -> None:
        """An attempt let through while half-open ended without an outcome (cancelled):
        its probe slot is free again."""
        with self._lock:
            if self._state is CircuitState.HALF_OPEN and self._probes > 0:
                self._probes -= 1

    def record_success(self) -> Transition | None:
        if not self._failures and self._state is CircuitState.CLOSED:
            return None  # nothing to change: the common case, without the lock
        with self._lock:
            self.dirty = True
            self._failures = 0
            if self._state is CircuitState.HALF_OPEN:
                self._opened_at = None
                return self._move(CircuitState.CLOSED)
            return None

    def record_failure(self) -> Transition | None:
        with self._lock:
            self.dirty = True
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or (
                self._state is CircuitState.CLOSED
                and self._failures >= self.config.failure_threshold
            ):
                self._opened_at = self._clock()
                return self._move(CircuitState.OPEN)
            return None

    def reset(self) -> Transition | None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probes = 0
            return self._move(CircuitState.CLOSED)


class BreakerRegistry:
    """All breakers of a process, created on first use and saved on every change."""

    def __init__(self, store: BreakerStore | None = None, *, clock: Clock = time.time) -> None:
        self._store = store or MemoryBreakerStore()
        self._clock = clock
        self._lock = threading.Lock()
        self._saved = {s.name: s for s in self._store.load_all()}
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, config: CircuitBreakerConfig) -> CircuitBreaker:
        """The breaker `name`, created with `config` (and its stored state) if new."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None or breaker.config != config:
                snapshot = breaker.snapshot() if breaker else self._saved.get(name)
                breaker = CircuitBreaker(name, config, clock=self._clock, snapshot=snapshot)
                self._breakers[name] = breaker
                breaker.dirty = snapshot is None  # a new breaker is stored at its first use
            return breaker

    def save(self, breaker: CircuitBreaker) -> None:
        """Persist a breaker's state if it changed (call after a recorded outcome)."""
        if breaker.dirty:
            breaker.dirty = False
            self._store.save(breaker.snapshot())

    def adopt(self, snapshots: Iterable[BreakerSnapshot]) -> None:
        """Take (and store) the states that breakers reached in a branch run elsewhere:
        the last branch to return decides, as if its outcomes had been recorded here."""
        for snapshot in snapshots:
            with self._lock:
                self._saved[snapshot.name] = snapshot
                breaker = self._breakers.get(snapshot.name)
            if breaker is not None:
                breaker.restore(snapshot)
            self._store.save(snapshot)

    def seed_for(self, prefix: str) -> tuple[BreakerSnapshot, ...]:
        """The states of the breakers whose names start with `prefix` (a workflow's
        `<name>:`), for a branch run elsewhere to start from."""
        return tuple(s for name, s in self.states().items() if name.startswith(prefix))

    def states(self) -> dict[str, BreakerSnapshot]:
        """Every known breaker's state, including stored ones not used yet in this process."""
        with self._lock:
            known = dict(self._saved)
            breakers = list(self._breakers.values())
        for breaker in breakers:
            snap = breaker.snapshot()
            known[snap.name] = BreakerSnapshot(
                name=snap.name,
                state=breaker.state,
                failure_count=snap.failure_count,
                opened_at=snap.opened_at,
            )
        return dict(sorted(known.items()))

    def reset(self, name: str) -> Transition | None:
        """Close the breaker `name`; KeyError if there is no such breaker."""
        with self._lock:
            breaker = self._breakers.get(name)
            live = breaker is not None
            if breaker is None:  # known from the store only: reset a copy, keep its state
                snapshot = self._saved[name]  # KeyError: unknown breaker
                breaker = CircuitBreaker(
                    name, CircuitBreakerConfig(), clock=self._clock, snapshot=snapshot
                )
        change = breaker.reset()
        snapshot = breaker.snapshot()
        if not live:  # not kept: its config is not the workflow's (its next use makes it)
            with self._lock:
                self._saved[name] = snapshot
        self._store.save(snapshot)
        return change
