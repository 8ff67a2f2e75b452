"""The dask strategy's client side: branches submitted to a Dask cluster as
`worker.run_branch` tasks, supervised like every strategy's.

What is sent is the process strategy's payload: the `BranchTask` pickled (every task up
front: the check that all can be sent), with the breaker states to start from. The
workflow travels as its bundle (the file and the Python source beside it), scattered once
per cluster and digest (cluster.py) and fetched once by each worker process (worker.py),
so `uses:` modules reach the workers without being installed there. Results, events and
breaker changes come back as a `BranchReport`, as from a process worker.

The executor keeps one `DaskCluster` (a client) per address for its life: in `tead run` as
long as the command, in the Python API as long as your `Executors`, in the daemon as long
as the run worker that runs the run, which serves up to 100 runs of one workflow version:
it is kept across them (`KeptAcrossRuns`), so that a run after the first skips the
connect and the checks (a client found closed, its scheduler gone for too long, is made
again). A LocalCluster (`address: local`) is the run's alone: shut down at its end.
Dask's own retries are 0: tead's retries and breakers apply. Stopping an attempt (timeout,
`fail_fast`, a cancelled run) cancels its task: the worker running it drops it and kills
the branch's process group (worker.py).

Branches are submitted as the supervisor's gate lets them start, at most `max_workers` at
once when it is set; else all at once (the cluster schedules them), or, with a timeout,
at most as many as the cluster has worker threads, so that no branch's clock runs while
it waits in the cluster's queue.
"""

from __future__ import annotations

import itertools
import pickle
import queue
import threading
import uuid
from collections import deque
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from distributed import Future as DaskFuture

from tead.engine.seam import BranchReport, FanOutJob, Kept
from tead.engine.task import BranchTask
from tead.errors import DaskClusterError
from tead.executors.dask.cluster import DaskCluster
from tead.executors.dask.watch import Fetched, LoopWatch
from tead.executors.dask.worker import Answer, run_branch
from tead.executors.kept import ClientThreads
from tead.parallel.breaker import BreakerRegistry
from tead.parallel.config import DaskConfig, ParallelConfig, ParallelFlowResult
from tead.parallel.launcher import Attempt, Gate, Settle
from tead.parallel.outcomes import Crashed, Finished, Lost, Outcome, TimedOut
from tead.parallel.supervisor import supervise
from tead.version import __version__

KEY_PREFIX = "tead-branch-"


class DaskExecutor:
    """Runs fan-outs on Dask clusters, one client per address (made on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connecting: dict[str, threading.Lock] = {}
        self._clusters: dict[str, DaskCluster] = {}
        self._threads = ClientThreads("distributed")

    def cluster(self, config: DaskConfig, local_workers: int) -> DaskCluster:
        """The connected cluster of `config.address` (`local`: one of `local_workers`)."""
        key = config.address if config.address != "local" else f"local:{local_workers}"
        with self._lock:
            found = self._clusters.get(key)
            if found is not None and found.usable():
                return found
            connecting = self._connecting.setdefault(key, threading.Lock())
        with connecting:
            with self._lock:
                found = self._clusters.get(key)
            if found is not None and not found.usable():  # its scheduler was gone too long
                with self._lock:
                    del self._clusters[key]
                found.close()
                found = None
            if found is None:
                with self._threads.watch():
                    found = DaskCluster(config, local_workers)
                with self._lock:
                    self._clusters[key] = found
            return found

    @property
    def reruns(self) -> int:
        """Branches Dask ran again by itself after losing the worker that held them."""
        with self._lock:
            return sum(c.reruns for c in self._clusters.values())

    def execute(self, job: FanOutJob) -> list[ParallelFlowResult]:
        tasks = job.tasks
        if not tasks:
            return []
        config = job.config
        if config.dask is None:
            raise DaskClusterError(
                "strategy 'dask' needs `dask: {address: ...}` in its parallel settings"
            )
        cluster = self.cluster(config.dask, config.workers)
        with self._threads.watch():
            launcher = DaskLauncher(cluster, tasks, job, limit=_limit(config, cluster))
            return supervise(tasks, config, launcher, job.hooks)

    def run_ended(self) -> Kept:
        """A run ended (in a process that keeps this executor for its next runs): its
        LocalClusters are shut down; clients of other addresses stay connected."""
        with self._lock:
            local = [k for k, c in self._clusters.items() if c.local is not None]
            ended = [self._clusters.pop(key) for key in local]
        for cluster in ended:
            cluster.close()
        return self._threads.kept()

    def close(self) -> None:
        with self._lock:
            clusters, self._clusters = list(self._clusters.values()), {}
        for cluster in clusters:
            cluster.close()


def _limit(config: ParallelConfig, cluster: DaskCluster) -> int | None:
    """How many branches may be submitted at once (None: all)."""
    if config.max_workers is not None:
        return config.max_workers
    if config.timeout_seconds is not None:
        threads: dict[str, int] = cluster.client.nthreads()
        return max(1, sum(threads.values()))
    return None


@dataclass(eq=False, slots=True)
class _Pending:
    attempt: Attempt
    task: BranchTask
    gate: Gate | None
    settle: Settle | None


@dataclass(eq=False, slots=True)
class _Submitted:
    pending: _Pending
    future: DaskFuture[Any]


class DaskLauncher:
    """Submits one fan-out's pre-pickled tasks to a cluster; stops attempts one by one.

    One thread per fan-out does the talking: it gates and submits the branches launched
    since it last looked in one batch (one message to the scheduler, as `client.map`, each
    task with one argument, naming its bundle). The client's event loop watches each
    batch and fetches results as they finish, all that finished meanwhile in one `gather`
    (watch.py); a thread of the fan-out then replays each branch's events and reports its
    outcome. Per-task submits and per-task result fetches cost about three times a
    `client.map` of no-op functions; batched, a no-op branch costs 1.21-1.41 times a task of
    it on a quiet machine (bench/dask_strategy.py).
    """

    copies_state = True
    runs_gate = True  # the gate runs as a branch is submitted

    def __init__(
        self,
        cluster: DaskCluster,
        tasks: Sequence[BranchTask],
        job: FanOutJob,
        *,
        limit: int | None,
    ) -> None:
        self._cluster = cluster
        self._client = cluster.client
        self._payloads = {id(task): task.to_pickle() for task in tasks}  # all, up front
        self._digest = cluster.bundle(tasks[0])
        self._replay = job.replay
        self._emit = job.emit
        self._listening = job.listening
        self._breakers: BreakerRegistry | None = job.hooks.breakers
        self._seed_prefix = f"{tasks[0].workflow.name}:" if self._breakers is not None else None
        self._timeout_s = job.config.timeout_seconds
        self._limit = limit
        self._prefix = f"{KEY_PREFIX}{uuid.uuid4().hex}-"
        self._count = itertools.count()
        self._lock = threading.Lock()
        self._waiting: deque[_Pending] = deque()  # launched, not submitted (over the limit)
        self._submitted: dict[Attempt, _Submitted] = {}
        self._inbox: queue.SimpleQueue[_Pending | _Submitted | Fetched[_Submitted] | None] = (
            queue.SimpleQueue()
        )
        # ended tasks and their results come from the client's event loop (watch.py)
        self._watch = LoopWatch(self._client, self._inbox.put, self._inbox.put)
        # outcomes are reported (events replayed, breakers told) on a thread of their own
        self._reporter = ThreadPoolExecutor(1, thread_name_prefix="tead-dask-report")
        self._thread = threading.Thread(target=self._serve, name="tead-dask-fanout", daemon=True)
        self._thread.start()

    def prepare(self) -> None:
        """Nothing to prepare: the gate runs as a branch is submitted."""

    def launch(
        self, task: BranchTask, *, gate: Gate | None = None, settle: Settle | None = None
    ) -> Attempt:
        attempt: Attempt = Future()
        self._inbox.put(_Pending(attempt, task, gate, settle))
        return attempt

    def _serve(self) -> None:
        """Submit what was launched and report what finished, in batches, until closed."""
        while True:
            items = [self._inbox.get()]
            while not self._inbox.empty():
                items.append(self._inbox.get())
            launched = [i for i in items if isinstance(i, _Pending)]
            ended = [i for i in items if isinstance(i, _Submitted)]
            fetched = [i for i in items if isinstance(i, Fetched)]
            if ended:
                self._forget(ended)
            if fetched:
                self._reporter.submit(self._report, fetched)
            with self._lock:
                self._waiting.extend(launched)
            self._submit_waiting()
            if None in items:
                self._reporter.shutdown(wait=True)
                return

    def _submit_waiting(self) -> None:
        """Gate and submit, in one batch, the waiting branches there is room for."""
        batch: list[tuple[_Pending, bytes, str]] = []
        while True:
            with self._lock:
                room = self._limit is None or len(self._submitted) + len(batch) < self._limit
                if not room or not self._waiting:
                    break
                pending = self._waiting.popleft()
            payload = self._gate(pending)
            if payload is not None:
                batch.append((pending, payload, f"{self._prefix}{next(self._count)}"))
        if not batch:
            return
        keys = [key for _, _, key in batch]
        try:
            with self._cluster.lock:
                self._cluster.running.update((k, (p.task, self._emit)) for p, _, k in batch)
            # one argument of bytes: Dask parses each task's arguments
            jobs = [
                pickle.dumps((payload, self._timeout_s, __version__, self._digest))
                for _, payload, _ in batch
            ]
            futures: list[DaskFuture[Any]] = self._client.map(
                run_branch,
                jobs,
                key=keys,
                pure=False,
                retries=0,
            )
        except BaseException as exc:  # the cluster went away
            with self._cluster.lock:
                for key in keys:
                    self._cluster.running.pop(key, None)
            for pending, _, _ in batch:
                if not pending.attempt.done():
                    pending.attempt.set_exception(exc)
            return
        entries = [
            _Submitted(pending, future)
            for (pending, _, _), future in zip(batch, futures, strict=True)
        ]
        with self._lock:
            self._submitted.update((entry.pending.attempt, entry) for entry in entries)
        if not self._watch.watch(entries):  # closed meanwhile: each fails on its own
            for entry in entries:
                self._inbox.put(Fetched(entry, None))

    def _gate(self, pending: _Pending) -> bytes | None:
        """Run the gate as the branch is submitted; its payload, or None if it is not to
        run (turned away at the gate, cancelled, or its breaker states cannot be sent)."""
        attempt = pending.attempt
        if not attempt.set_running_or_notify_cancel():
            return None
        try:
            denied = pending.gate() if pending.gate is not None else None
            if denied is not None:
                if pending.settle is not None:
                    pending.settle(denied)
                attempt.set_result(denied)
                return None
            registry, prefix = self._breakers, self._seed_prefix
            seed = registry.seed_for(prefix) if registry is not None and prefix else ()
            task = self._payloads[id(pending.task)]
            return pickle.dumps((seed, task, self._listening), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:
            if not attempt.done():
                attempt.set_exception(exc)
            return None

    def _forget(self, finished: list[_Submitted]) -> None:
        """Finished tasks leave room for more (before their results are fetched)."""
        with self._lock:
            for done in finished:
                self._submitted.pop(done.pending.attempt, None)

    def _report(self, fetched: list[Fetched[_Submitted]]) -> None:
        """Report each ended task's outcome. The results fetched are let go of first: held
        while the ones before them are reported, one lost with its worker would be run
        again by Dask, uncounted (its branch has left the cluster's `running`)."""
        ended = [(f.entry, f.answer, f.entry.future.cancelled()) for f in fetched]
        with self._cluster.lock:
            for entry, _, _ in ended:
                self._cluster.running.pop(str(entry.future.key), None)
        for entry, answer, _ in ended:
            if answer is not None:
                entry.future.release()
        for done, answer, cancelled in ended:
            attempt, settle = done.pending.attempt, done.pending.settle
            try:
                if not attempt.done():
                    outcome = self._outcome(done.future, answer, cancelled=cancelled)
                    if settle is not None:
                        settle(outcome)
                    attempt.set_result(outcome)
            except BaseException as exc:  # an event sink raised: the branch fails, as in a thread
                if not attempt.done():
                    attempt.set_exception(exc)
            finally:
                done.future.release()

    def _outcome(
        self, future: DaskFuture[Any], answer: Answer | None, *, cancelled: bool
    ) -> Outcome:
        if cancelled:
            return Lost(detail="its dask task was cancelled")
        if answer is None:  # e.g. KilledWorker: the workers running it kept dying
            error = future.exception()
            return Crashed(detail=f"dask: {type(error).__name__}: {error}")
        kind, value = answer
        if kind == "done":
            reply, body = pickle.loads(value)
            if reply == "error":
                return Crashed(detail=f"dask worker: {body}")
            report: BranchReport = pickle.loads(body)
            if self._breakers is not None and report.breakers:
                self._breakers.adopt(report.breakers)
            self._replay(report)
            return Finished(result=report.result)
        if kind == "timed_out":
            return TimedOut()
        if kind == "stopped":
            return Lost(detail=str(value))
        return Crashed(detail=str(value))

    def stop(self, attempts: Collection[Attempt]) -> None:
        """Stop each attempt: a waiting one never starts; a submitted one is cancelled,
        which kills its process group on the worker."""
        with self._lock:
            waiting = [p for p in self._waiting if p.attempt in attempts]
            for pending in waiting:
                self._waiting.remove(pending)
            submitted = [s for a, s in self._submitted.items() if a in attempts]
        for pending in waiting:
            pending.attempt.cancel()
        for entry in submitted:
            entry.future.cancel()

    def close(self) -> None:
        """Stop the serving thread (the client belongs to the executor); forget this
        fan-out's branches (a stopped one's result may still be on its way) and bundle."""
        self._inbox.put(None)
        self._thread.join()
        with self._cluster.lock:
            for key in [k for k in self._cluster.running if k.startswith(self._prefix)]:
                del self._cluster.running[key]
        self._cluster.done_with(self._digest)
