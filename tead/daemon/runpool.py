"""The warm pool of run workers (the daemon side): started ahead of time, one run each.

Workers are forked from a fork server that has tead's engine imported (a few
milliseconds each; the server itself starts once, with the daemon's first worker).
`take()` hands out a ready worker and starts its replacement in the background. A worker
whose run ended cleanly may be kept (`keep`) for the next run of the same workflow
version (`take_ready(key)`), one per version and at most `size` in all; the others, and
kept ones dropped to make room, after their last run, or at `close`, are retired (told
to end, so that they close what they kept across runs) or, after a run that did not end
cleanly, killed and reaped.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tead.daemon.runprocess import kill_tree
from tead.daemon.runworker import (
    CLOSE_S,
    PRELOAD,
    MalformedMessage,
    receive,
    run_worker_main,
)
from tead.executors.worker import context

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a worker that is not ready by then is given up
RETIRE_S = CLOSE_S + 1.0  # a retired worker that has not exited by then is killed


class WorkerStartError(Exception):
    """A run worker could not start."""


@dataclass(eq=False, slots=True, weakref_slot=True)
class RunWorker:
    """One worker process and its pipes; `kill` and `reap` are safe from any thread."""

    process: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    outputs: list[tuple[str, Connection]]  # ("stdout" | "stderr", read end)
    pid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    reaped: bool = False
    runs: int = 0  # runs it has served

    def kill(self) -> None:
        """SIGKILL what the worker started (processes that left its group too: it is their
        subreaper) and its process group (its own, from its first instruction on: nothing
        runs there before it is ready), unless it was reaped already."""
        with self.lock:
            if self.reaped or not self.pid:
                return
            if self.process.exitcode is None:  # alive: freeze it, then what it started
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGSTOP)
                kill_tree(self.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)  # not in its group yet (starting)

    def usable(self) -> bool:
        """Whether a ready worker is still alive and has said nothing more."""
        try:
            return self.process.exitcode is None and not self.conn.poll()
        except (OSError, ValueError):
            return False

    def retire(self) -> None:
        """End a worker that ended its runs cleanly: told by its pipe's end, it closes the
        executors it kept across runs (a dask client says goodbye to its scheduler, which
        else logs a dropped client as a critical error) and exits; what is left is
        reaped, the worker too if it did not exit within `RETIRE_S`."""
        self.conn.close()
        self.process.join(RETIRE_S)
        self.reap()

    def reap(self) -> int | None:
        """Kill the group, wait for the worker to end; its exit code (negative: signal)."""
        self.kill()
        self.process.join()
        with self.lock:
            self.reaped = True
        self.conn.close()
        return int(self.process.exitcode) if self.process.exitcode is not None else None


_live_pools: weakref.WeakSet[RunWorkerPool] = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    """Kill ready workers of pools left open at exit, before multiprocessing joins them
    (atexit runs this first: it is registered after multiprocessing's own hook)."""
    for pool in list(_live_pools):
        pool.close()
        pool.kill_all()


class RunWorkerPool:
    """`size` ready workers kept ahead of time; `take()` hands one out (starting one if
    none is ready) and starts its replacement in the background."""

    def __init__(self, size: int) -> None:
        self._size = size
        # and `__main__` (the `tead` command): else each worker would run it again
        self._ctx = context((*PRELOAD, "__main__"))
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a worker became ready
        self._ready: deque[RunWorker] = deque()
        self._kept: dict[object, RunWorker] = {}  # by workflow version, oldest first
        self._starting = 0
        self._closed = False
        self._workers: weakref.WeakSet[RunWorker] = weakref.WeakSet()  # every one started
        self._retiring: set[threading.Thread] = set()  # `close` waits for them
        _live_pools.add(self)

    def take_ready(self, key: object = None) -> RunWorker | None:
        """A worker kept after a clean run of the same workflow version `key`, else a
        ready one, if there is one (never blocks long: one found dead is reaped)."""
        while True:
            with self._lock:
                kept = self._kept.pop(key, None) if key is not None else None
                worker = kept or (self._ready.popleft() if self._ready else None)
            if worker is None or worker.usable():
                break
            log.warning("a ready run worker (pid %d) died; it is replaced", worker.pid)
            worker.reap()
        if kept is None:
            self.refill()
        return worker

    def keep(self, worker: RunWorker, key: object) -> None:
        """Keep a worker that ended a run cleanly for the next run of `key` (one per key,
        at most `size` in all; the oldest goes first)."""
        with self._lock:
            closed = self._closed
            if not closed:
                dropped = [w for w in [self._kept.pop(key, None)] if w is not None]
                self._kept[key] = worker
                self._retire([*dropped, *self._trim_kept()])
        if closed:  # `close` may be done: retired here, before the caller goes on
            worker.retire()

    def _trim_kept(self) -> list[RunWorker]:
        """The oldest kept workers beyond `size` (at least one is kept), taken out (under
        the lock)."""
        return [
            self._kept.pop(next(iter(self._kept)))
            for _ in range(len(self._kept) - max(self._size, 1))
        ]

    def take(self, timeout_s: float = START_TIMEOUT_S) -> RunWorker:
        """A ready worker, waiting at most `timeout_s` for one to start (WorkerStartError
        then: the fork server does not answer)."""
        deadline = time.monotonic() + timeout_s
        while True:
            worker = self.take_ready()
            if worker is not None:
                return worker
            with self._changed:
                if not self._ready:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise WorkerStartError(f"none was ready within {timeout_s:g} s")
                    self._changed.wait(min(left, 1.0))

    def resize(self, size: int) -> None:
        """Keep `size` workers ready, and as many kept, from now on (extra ready ones are
        stopped, the oldest extra kept ones retired)."""
        with self._lock:
            self._size = size
            extra = [self._ready.pop() for _ in range(max(0, len(self._ready) - size))]
            self._retire(self._trim_kept())
        for worker in extra:
            worker.reap()
        self.refill()

    def _retire(self, workers: list[RunWorker]) -> None:
        """Retire these workers, each on a thread of its own, which `close` waits for
        (under `self._lock`, where they were taken out: a `close` meanwhile would miss
        them)."""
        for worker in workers:
            thread = threading.Thread(
                target=self._retire_one, args=(worker,), name="tead-run-worker-retire", daemon=True
            )
            self._retiring.add(thread)
            thread.start()

    def _retire_one(self, worker: RunWorker) -> None:
        try:
            worker.retire()
        finally:
            with self._lock:
                self._retiring.discard(threading.current_thread())

    def refill(self) -> None:
        """Start workers in the background until `size` are ready or starting."""
        with self._lock:
            missing = self._size - len(self._ready) - self._starting
            if self._closed or missing <= 0:
                return
            self._starting += missing
        for _ in range(missing):
            threading.Thread(
                target=self._add_one, name="tead-run-worker-start", daemon=True
            ).start()

    def close(self) -> None:
        """Kill the ready workers, retire the kept ones (at once) and wait for every
        worker being retired (those dropped before too); no more are started."""
        with self._lock:
            self._closed = True
            ready, self._ready = list(self._ready), deque()
            kept, self._kept = list(self._kept.values()), {}
            self._retire(kept)
        for worker in ready:
            worker.reap()
        with self._lock:
            retiring = list(self._retiring)
        for thread in retiring:
            thread.join()

    def kill_all(self) -> None:
        """Kill every worker of this pool, ready or running (at exit)."""
        for worker in list(self._workers):
            worker.kill()

    def _add_one(self) -> None:
        try:
            worker = self._start()
        except Exception as exc:  # the fork server died or refused: the next take tries again
            log.error("a run worker did not start: %s", exc)
            with self._lock:
                self._starting -= 1
            return
        with self._lock:
            self._starting -= 1
            if not self._closed:
                self._ready.append(worker)
                self._changed.notify_all()
                return
        worker.reap()

    def _start(self) -> RunWorker:
        ctx = self._ctx
        conn, child_conn = ctx.Pipe()
        out_r, out_w = ctx.Pipe(duplex=False)
        err_r, err_w = ctx.Pipe(duplex=False)
        process = ctx.Process(  # type: ignore[attr-defined]
            target=run_worker_main,
            args=(child_conn, out_w, err_w, os.getpid()),
            name="tead-run-worker",
            daemon=False,  # it starts process branches; the pool (or atexit) kills it
        )
        worker = RunWorker(process, conn, [("stdout", out_r), ("stderr", err_r)])
        self._workers.add(worker)
        try:
            process.start()
        except (OSError, EOFError, ValueError) as exc:  # the fork server died meanwhile
            raise WorkerStartError(f"{type(exc).__name__}: {exc}") from None
        finally:
            for end in (child_conn, out_w, err_w):
                end.close()  # the worker has its own copies: EOF comes when it is gone
        worker.pid = process.pid or 0
        try:
            if not conn.poll(START_TIMEOUT_S):
                raise WorkerStartError(f"not ready after {START_TIMEOUT_S:g} s")
            kind, pid = receive(conn, 1024)
            if kind != "ready" or pid != worker.pid:
                raise WorkerStartError(f"unexpected first message {kind!r}")
        except (EOFError, OSError, MalformedMessage, WorkerStartError) as exc:
            code = worker.reap()
            for _, end in worker.outputs:
                end.close()
            reason = exc if isinstance(exc, WorkerStartError) else f"it ended ({exit_text(code)})"
            raise WorkerStartError(str(reason)) from None
        return worker


def exit_text(code: int | None) -> str:
    if code is None:
        return "its exit status is unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
            description = signal.strsignal(-code)
        except ValueError:
            return f"killed by signal {-code}"
        return f"killed by {name} ({description})"
    return f"it exited with code {code}"
