"""What runs in a dask worker: `run_branch`, the function each branch is submitted as.

`future.cancel()` does not stop a running Python function, and a thread cannot be killed,
so the branch does not run in the dask worker: `run_branch` hands it to a child process
(child.py), the leader of a process group of its own, and watches it. It kills the group
when the branch's own deadline passes (measured from its start on this worker: a backstop
for the client's timeout), or when the worker drops the task: the client cancels it (a
timeout, `fail_fast`, a cancelled run), or went away (a `tead run` killed mid-fan-out
leaves nothing running), or when the worker closes (cleanly: the scheduler runs its
tasks again elsewhere at once, while its executor would wait for them): the task is then
rescheduled, if the worker still tells the scheduler anything. The branch and whatever
it started stop within about `POLL_S`.

Children are kept warm between branches (one per worker thread at most), each with the
last `KEPT_BUNDLES` workflow bundles it was sent; a killed or dead one is replaced at once
by a fresh one, which starts (imports tead) while nothing waits for it, as do the ones
`warm` starts when a client connects: a branch's clock does not pay for a child's
start-up. A child whose dask worker dies kills its group at once.

Whether the task is still wanted is asked of this worker's own state, which the scheduler
keeps (a cancel reaches it as a message): nothing is asked of the scheduler while a branch
runs. (A `distributed.Event` per branch, asked every `POLL_S`, cost the scheduler and the
workers about 3% of a CPU-bound branch's time, by their CPU time in bench/dask_strategy.py.)

The workflow's bundle is not an argument of the task: a task that depends on scattered
data costs the scheduler and the workers about as much again as a no-op task
(bench/dask_strategy.py). A task names its bundle by digest; a child that was sent it
before needs nothing; else this worker process sends the bytes it keeps, or fetches them
once from the cluster (where the client scattered them under `bundle_key(digest)`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from distributed import Future as DaskFuture
from distributed import Reschedule, Worker, get_client, get_worker
from distributed.core import Status

from tead.version import __version__

POLL_S = 0.1  # how often a running branch's task and deadline are checked
FETCH_TIMEOUT_S = 60.0  # how long fetching a workflow's bundle from the cluster may take
#: how long a bundle not on the cluster is looked for again (lost with the worker that held
#: it, its client scatters it again)
MISSING_WAIT_S = 5.0
#: bundles a worker process keeps, bundles each of its children is told to keep (the
#: child's loader keeps up to 32 workflows), and bundles a client keeps on the cluster
#: (cluster.py): the most recently used
KEPT_BUNDLES = 16

#: what `run_branch` returns: ("done", the child's answer) | ("stopped", why) |
#: ("timed_out", why) | ("crashed", why)
Answer = tuple[str, Any]


@dataclass(eq=False, slots=True)
class _Child:
    process: subprocess.Popen[bytes]
    requests: Connection
    answers: Connection
    # digests of the bundles it keeps, most recently used last
    bundles: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def keeps(self, digest: str) -> tuple[str, ...]:
        """Note that the child is sent a task of bundle `digest` (and the bundle, if it did
        not have it): the bundles it must drop now, to keep `KEPT_BUNDLES`."""
        self.bundles[digest] = None
        self.bundles.move_to_end(digest)
        dropped = []
        while len(self.bundles) > KEPT_BUNDLES:
            dropped.append(self.bundles.popitem(last=False)[0])
        return tuple(dropped)


_idle: list[_Child] = []  # warm children of this dask worker, waiting for a branch
_idle_lock = threading.Lock()
_bundles: dict[str, bytes] = {}  # digest -> bundle, most recently used last
_bundles_lock = threading.Lock()


def bundle_key(digest: str) -> str:
    """The key a client scatters a workflow's bundle under."""
    return f"tead-bundle-{digest}"


def run_branch(job: bytes) -> Answer:
    """Run one branch attempt in a child process group; stop it when its task is dropped
    (cancelled), or at its deadline. `job`: pickled (the child's payload, the timeout in
    seconds or None, the client's tead version, the bundle's digest)."""
    payload, timeout_s, version, digest = pickle.loads(job)
    if version != __version__:
        return ("crashed", f"this dask worker has tead {__version__}, the run has tead {version}")
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    child = _take()
    try:
        data = None if digest in child.bundles else _bundle(digest)
    except Exception as exc:
        _give_back(child)
        return ("crashed", f"dask worker: cannot fetch the workflow's files: {exc}")
    try:
        child.requests.send_bytes(pickle.dumps((digest, data, payload, child.keeps(digest))))
    except OSError:
        return _died(child)
    worker = _this_worker()
    key = worker.get_current_task() if worker is not None else None
    while True:
        wait = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.monotonic()))
        if child.answers.poll(wait):
            try:
                answer = child.answers.recv_bytes()
            except (EOFError, OSError):
                return _died(child)
            _give_back(child)
            return ("done", answer)
        if deadline is not None and time.monotonic() >= deadline:
            _replace(child)
            return ("timed_out", f"branch timed out after {timeout_s:g} s on the dask worker")
        if worker is not None and worker.status in _CLOSING:
            _kill(child)
            raise Reschedule()  # if this worker still tells the scheduler anything
        if worker is not None and not _wanted(worker, key):
            _replace(child)
            return ("stopped", "its task was cancelled (or its client went away)")


def _bundle(digest: str) -> bytes:
    """The bundle of `digest`: kept by this process, or fetched from the cluster (once)."""
    with _bundles_lock:
        found = _bundles.pop(digest, None)
        if found is None:
            found = _fetch(bundle_key(digest))
        _bundles[digest] = found
        while len(_bundles) > KEPT_BUNDLES:
            del _bundles[next(iter(_bundles))]
    return found


def _fetch(key: str) -> bytes:
    """Scattered data, fetched with this worker's own client (made on first use; the
    future is made as of a key in memory: a client is told only of keys it submitted).
    Data not on the cluster is looked for again for `MISSING_WAIT_S`."""
    given_up = time.monotonic() + MISSING_WAIT_S
    while True:
        # distributed types `state` as a FutureState, but looks it up by its name
        future: DaskFuture[bytes] = DaskFuture(key, get_client(), state="memory")  # type: ignore[arg-type]
        try:
            return future.result(timeout=FETCH_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"{key} not received within {FETCH_TIMEOUT_S:g} s") from None
        except CancelledError:  # not on the cluster (any more): lost with the workers holding it
            if time.monotonic() >= given_up:
                raise RuntimeError(f"{key} is not on the cluster (lost with a worker?)") from None
        finally:
            future.release()
        time.sleep(POLL_S)


def warm() -> int:
    """Start children until this worker has one idle per thread (they start meanwhile);
    how many it has. A client calls this on every worker when it connects."""
    wanted = _threads()
    with _idle_lock:
        missing = wanted - len(_idle)
    for _ in range(missing):
        _give_back(_start())
    return wanted


def _this_worker() -> Worker | None:
    try:
        return get_worker()
    except ValueError:  # not in a dask worker (called directly)
        return None


def _threads() -> int:
    worker = _this_worker()
    return int(worker.state.nthreads) if worker is not None else 1


#: a worker closing (cleanly: `dask worker` told to stop, or the worker retired)
#: has told the scheduler, which runs its tasks again elsewhere, while its own executor
#: waits for them (seconds): the branch would run twice at once. (A `Reschedule` that
#: reaches the scheduler before the worker's goodbye, when its nanny closes it, takes the
#: task off the worker: that re-run is then not counted by the client.)
_CLOSING = (Status.closing, Status.closed, Status.failed)


def _wanted(worker: Worker, key: Any) -> bool:
    """Whether this worker still wants the task `key` run (it is cancelled when its client
    cancels it or goes away: a client killed mid-run leaves nothing running)."""
    task = worker.state.tasks.get(key)
    return task is not None and task.state not in ("cancelled", "released", "forgotten")


def _take() -> _Child:
    with _idle_lock:
        while _idle:
            child = _idle.pop()
            if child.process.poll() is None:
                return child
            _close(child)
    return _start()


def _give_back(child: _Child) -> None:
    """Keep a child for the next branch (at most one per worker thread)."""
    with _idle_lock:
        if len(_idle) < _threads():
            _idle.append(child)
            return
    _kill(child)


def _start() -> _Child:
    """A new child, leader of a new session (so of its own process group)."""
    to_child, requests = os.pipe()
    answers, from_child = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "tead.executors.dask.child"],
            stdin=to_child,
            stdout=from_child,
            start_new_session=True,
        )
    finally:
        os.close(to_child)
        os.close(from_child)
    return _Child(
        process, Connection(requests, readable=False), Connection(answers, writable=False)
    )


def _kill(child: _Child) -> None:
    """Kill the child's process group (the branch and all it started), and reap it."""
    with contextlib.suppress(OSError):
        os.killpg(child.process.pid, signal.SIGKILL)
    child.process.wait()
    _close(child)


def _replace(child: _Child) -> None:
    """Kill a child running a branch that must stop; start its successor now."""
    _kill(child)
    _give_back(_start())


def _died(child: _Child) -> Answer:
    code = child.process.wait()
    _replace(child)  # what it started goes with it
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return ("crashed", f"the process running this branch on the dask worker died ({how})")


def _close(child: _Child) -> None:
    for conn in (child.requests, child.answers):
        with contextlib.suppress(OSError):
            conn.close()
