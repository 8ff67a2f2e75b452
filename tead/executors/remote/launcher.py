"""How one fan-out's branch attempts reach hosts: placement, failover and stopping.

The launcher queues attempts and, whenever a host has a free slot, gives the next one to
the least-loaded live host (running / slots), calling the supervisor's gate at that moment
(so a branch's clock starts when it is sent, not while it waits). A task is sent with its
workflow's bundle first if that host's worker has not had it (once per host and digest),
and, for branches over a shared base state (base.py), with that base first (once per host
and fan-out): each task then carries only its own part, and its report what it changed.

How an attempt ends: the host's report (Finished, its events replayed here first), the
worker's own deadline (TimedOut), the branch's process dying (Crashed), or its host going
away: then the attempt ends Lost, so the supervisor sends it again, to another host, without
counting it as one of the branch's retries (a lost branch may have run twice). When no host
is left, waiting attempts end Crashed, naming why each host is down.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from tead.engine.bundle import WorkflowBundle, bundle_of
from tead.engine.seam import BranchReport
from tead.engine.state import BranchState
from tead.engine.task import BranchTask
from tead.errors import RemoteHostError
from tead.executors.remote.base import Entries, SharedBase
from tead.executors.remote.hosts import HostLink
from tead.executors.remote.protocol import ProtocolError, report_from_json
from tead.parallel.breaker import BreakerRegistry, BreakerSnapshot, CircuitBreaker
from tead.parallel.config import ParallelConfig, ParallelFlowResult
from tead.parallel.launcher import Attempt, Gate, Settle
from tead.parallel.outcomes import Crashed, Finished, Lost, Outcome, TimedOut

STOP_WAIT_S = 5.0  # how long stop() waits for hosts to confirm their process groups died
DEADLINE_GRACE_S = 1.0  # the worker's own deadline, after the supervisor's


@dataclass(eq=False, slots=True, kw_only=True)
class Slot:
    """A live host as one fan-out uses it: its link, its branch slots, its breaker."""

    link: HostLink
    capacity: int
    breaker: CircuitBreaker
    running: int = 0


@dataclass(eq=False, slots=True, kw_only=True)
class _Attempt:
    task: BranchTask
    future: Attempt
    gate: Gate | None
    settle: Settle | None
    slot: Slot | None = None
    id: int | None = None
    stopped: Future[None] = field(default_factory=Future)


class Router(Protocol):
    """The executor's task-id routing: a new id for a launcher, or forget one."""

    def __call__(self, launcher: RemoteLauncher | None, task_id: int | None = None) -> int: ...


class RemoteLauncher:
    """Places one fan-out's attempts on hosts; see the module docstring."""

    copies_state = True  # every attempt is sent as JSON
    runs_gate = True  # attempts wait here for a slot; the gate runs as one is sent

    def __init__(
        self,
        tasks: Sequence[BranchTask],
        slots: list[Slot],
        *,
        env: Mapping[str, str],
        config: ParallelConfig,
        replay: Callable[[BranchReport], None],
        breakers: BreakerRegistry | None,
        listening: bool,
        register: Router,
        host_failed: Callable[[Slot, str], None],
        down: Mapping[str, str] | None = None,
        share_base: bool = True,
    ) -> None:
        self._bundle: WorkflowBundle = bundle_of(tasks[0].workflow)
        # the fan-out's base state, checked and encoded once (None: each task sends all)
        self._base = SharedBase.of(tasks) if share_base else None
        self._owns: dict[int, dict[str, Any]] = {}  # each task's own part, by id(task)
        self._holding: set[HostLink] = set()  # hosts holding the base for this fan-out
        # every task encoded before the first one is sent: the check that all can be
        self._encoded = {id(task): self._encode(task) for task in tasks}
        self._slots = slots
        self._env = dict(env)
        self._limit = config.max_workers or sum(s.capacity for s in slots) or 1
        deadline = config.timeout_seconds
        self._deadline_s = deadline + DEADLINE_GRACE_S if deadline is not None else None
        self._replay = replay
        self._breakers = breakers
        self._listening = listening
        self._seed_prefix = (
            f"{tasks[0].workflow.name}:"
            if breakers is not None
            and any(f.config.circuit_breaker for g in tasks[0].workflow.fanouts.values() for f in g)
            else None
        )
        self._register = register
        self._host_failed = host_failed
        self._lock = threading.Lock()
        self._waiting: deque[_Attempt] = deque()
        self._running: dict[int, _Attempt] = {}
        self._by_future: dict[Attempt, _Attempt] = {}
        self._down = dict(down or {})  # host label -> why it is out of this fan-out
        self.sent: Counter[str] = Counter()  # tasks sent, by host label

    # --- the supervisor's side -----------------------------------------------------------

    def prepare(self) -> None:
        """Nothing: hosts were connected before the fan-out started."""

    def launch(
        self, task: BranchTask, *, gate: Gate | None = None, settle: Settle | None = None
    ) -> Attempt:
        attempt = _Attempt(task=task, future=Future(), gate=gate, settle=settle)
        with self._lock:
            self._waiting.append(attempt)
            self._by_future[attempt.future] = attempt
        self._pump()
        return attempt.future

    def stop(self, attempts: Collection[Attempt]) -> None:
        """Waiting attempts never start; running ones are cancelled on their hosts (their
        process groups killed) and end Lost; waits (bounded) for the hosts to confirm."""
        confirm: list[Future[None]] = []
        for future in attempts:
            with self._lock:
                attempt = self._by_future.get(future)
                if attempt is None:
                    continue
                if attempt in self._waiting:
                    self._waiting.remove(attempt)
                    self._by_future.pop(future, None)
                    future.cancel()
                    continue
                running = attempt.id is not None and attempt.id in self._running
                if running and attempt.id is not None:
                    del self._running[attempt.id]
                if running and attempt.slot is not None:
                    attempt.slot.running -= 1
            if running and attempt.slot is not None and attempt.slot.link.alive:
                attempt.slot.link.send({"kind": "cancel", "id": attempt.id})
                confirm.append(attempt.stopped)
            _set(future, Lost(detail="stopped: its process group on the host was killed"))
        if confirm:
            wait(confirm, timeout=STOP_WAIT_S)
        self._pump()

    def close(self) -> None:
        with self._lock:
            ids = [a.id for a in self._running.values() if a.id is not None]
            holding, self._holding = list(self._holding), set()
        for task_id in ids:
            self._register(None, task_id)
        if self._base is not None:
            for link in holding:
                link.release_base(self._base.digest)

    def _encode(self, task: BranchTask) -> tuple[dict[str, Any], Entries | None]:
        """The task as JSON: over the base, its own part (and the base entries in it)."""
        own = self._base.own_part(task) if self._base is not None else None
        if own is None:
            return task.to_json(), None
        values, entries = own
        self._owns[id(task)] = values  # its item too (merged back with what it changed)
        sent = {k: v for k, v in values.items() if k not in entries}
        return task.to_json(sent), entries

    # --- placement -----------------------------------------------------------------------

    def _pump(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    return
                live = [s for s in self._slots if s.link.alive and s.link.label not in self._down]
                if not live:
                    waiting, self._waiting = list(self._waiting), deque()
                    why = "; ".join(self._down.values()) or "no host could be reached"
                else:
                    waiting = []
                    free = [s for s in live if s.running < s.capacity]
                    if not free or len(self._running) >= self._limit:
                        return
                    slot = min(free, key=lambda s: s.running / s.capacity)
                    attempt = self._waiting.popleft()
                    slot.running += 1
                    attempt.slot = slot
            if waiting:
                for attempt in waiting:
                    _set(attempt.future, Crashed(detail=f"no remote host is reachable: {why}"))
                return
            self._send(attempt, slot)

    def _send(self, attempt: _Attempt, slot: Slot) -> None:
        try:
            started = attempt.future.set_running_or_notify_cancel()
        except RuntimeError:  # stopped (finished Lost) while it was being placed
            started = False
        if not started:
            self._free(attempt)
            return
        denied = attempt.gate() if attempt.gate is not None else None
        if denied is not None:
            self._free(attempt)
            _set(attempt.future, denied)
            return
        task = attempt.task
        try:
            data, entries = self._encoded.get(id(task)) or self._encode(task)
        except Exception as exc:  # a retry's fresh state that JSON cannot carry
            self._free(attempt)
            attempt.future.set_exception(exc)
            return
        link = slot.link
        task_id = self._register(self)
        with self._lock:
            if attempt.future.done():  # stopped meanwhile: not sent
                stopped = True
            else:
                stopped = False
                attempt.id = task_id
                self._running[task_id] = attempt
        if stopped:
            self._register(None, task_id)
            self._free(attempt)
            return
        if self._bundle.digest not in link.shipped:
            link.shipped.add(self._bundle.digest)
            link.send({"kind": "bundle", "bundle": self._bundle.to_json()})
        registry, prefix = self._breakers, self._seed_prefix
        seed = registry.seed_for(prefix) if registry is not None and prefix is not None else ()
        link.commands += 1
        self.sent[link.label] += 1
        message = {
            "kind": "task",
            "id": task_id,
            "task": data,
            "env": self._env,
            "timeout": self._deadline_s,
            "listening": self._listening,
            "breakers": [_snapshot_json(s) for s in seed],
        }
        if entries is not None and self._base is not None:
            with self._lock:
                first = link not in self._holding
                self._holding.add(link)
            if first:
                link.hold_base(self._base.digest, self._base.frame)
            message |= {"base": self._base.digest, "entries": entries}
        link.send(message)

    def _free(self, attempt: _Attempt) -> None:
        with self._lock:
            if attempt.slot is not None:
                attempt.slot.running -= 1
            self._by_future.pop(attempt.future, None)
        self._pump()

    # --- the hosts' side (on the executor's loop thread) ------------------------------------

    def answer(self, link: HostLink, message: dict[str, Any]) -> None:
        """A host's answer about one of this launcher's tasks."""
        task_id = message["id"]
        kind = message["kind"]
        with self._lock:
            attempt = self._running.pop(task_id, None)
            if attempt is None:  # stopped before: the host confirms the kill
                stopped = next((a for a in self._by_future.values() if a.id == task_id), None)
            elif attempt.slot is not None:
                attempt.slot.running -= 1
        self._register(None, task_id)
        if attempt is None:
            if stopped is not None:
                self._by_future.pop(stopped.future, None)
                _set(stopped.stopped, None)
            return
        self._by_future.pop(attempt.future, None)
        try:
            self._settle(attempt, kind, message)
        finally:
            self._pump()

    def _settle(self, attempt: _Attempt, kind: str, message: dict[str, Any]) -> None:
        outcome: Outcome
        try:
            if kind == "result":
                report = report_from_json(message["report"])
                if self._breakers is not None and report.breakers:
                    self._breakers.adopt(report.breakers)
                self._replay(report)
                outcome = Finished(result=self._full(attempt.task, report))
            elif kind == "timeout":
                outcome = TimedOut()
            elif kind == "crashed":
                outcome = Crashed(detail=str(message.get("detail")))
            else:
                label = attempt.slot.link.label if attempt.slot else "?"
                raise RemoteHostError(label, f"the task was refused: {message.get('error')}")
            if attempt.settle is not None:
                attempt.settle(outcome)
        except (ProtocolError, RemoteHostError) as exc:
            attempt.future.set_exception(exc)
            return
        except BaseException as exc:  # an event sink raised: the branch fails
            attempt.future.set_exception(exc)
            return
        _set(attempt.future, outcome)

    def _full(self, task: BranchTask, report: BranchReport) -> ParallelFlowResult:
        """The branch's result with its full final state: what it changed, merged over the
        base it was sent (shared with its siblings, copied on access)."""
        if report.delta is None or self._base is None:
            return report.result
        own = self._owns.get(id(task))
        if own is None:
            own = task.state.own_part() if isinstance(task.state, BranchState) else {}
        result = report.result  # a success (a failure has no delta): branch, timing_ms
        state = BranchState.merged(self._base.values, report.delta, own=own)
        return ParallelFlowResult(
            branch=result.branch, success=True, state=state, timing_ms=result.timing_ms
        )

    def lost(self, link: HostLink, reason: str) -> None:
        """`link`'s host went away: its attempts end Lost (and go elsewhere)."""
        with self._lock:
            gone = [a for a in self._running.values() if a.slot is not None and a.slot.link is link]
            for attempt in gone:
                if attempt.id is not None:
                    self._running.pop(attempt.id, None)
                self._by_future.pop(attempt.future, None)
            slot = next((s for s in self._slots if s.link is link), None)
            first = slot is not None and link.label not in self._down
            self._down[link.label] = f"remote host {link.label}: {reason}"
        if slot is not None and first:
            self._host_failed(slot, reason)
        for attempt in gone:
            if attempt.id is not None:
                self._register(None, attempt.id)
            _set(attempt.stopped, None)
            _set(attempt.future, Lost(detail=f"its host {link.label} went away: {reason}"))
        self._pump()


def _snapshot_json(s: BreakerSnapshot) -> list[Any]:
    return [s.name, str(s.state), s.failure_count, s.opened_at]


def _set(future: Future[Any], value: Any) -> None:
    if future.done():
        return
    try:
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
    except Exception:  # finished by another thread meanwhile
        pass
