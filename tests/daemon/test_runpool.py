"""The daemon's pool of run workers (tead.daemon.runpool), with real worker processes
forked from its fork server: what `close` waits for."""

from __future__ import annotations

import os
import signal
import time

from tead.daemon.runpool import RETIRE_S, RunWorkerPool


def test_close_waits_for_a_kept_worker_dropped_before() -> None:
    """A kept worker dropped to make room for another (retired on a thread of its own) is
    waited for by `close`: here it does not exit when told (stopped), so it is killed
    `RETIRE_S` later, before `close` returns; the one still kept exits by itself."""
    pool = RunWorkerPool(1)
    try:
        dropped = pool.take()
        os.kill(dropped.pid, signal.SIGSTOP)  # told to exit, it will not
        pool.keep(dropped, "a")
        kept = pool.take()
        pool.keep(kept, "b")  # at most 1 kept: `dropped` is retired
        closing = time.monotonic()
    finally:
        pool.close()
    waited = time.monotonic() - closing
    assert dropped.reaped
    assert dropped.process.exitcode == -signal.SIGKILL
    assert kept.process.exitcode == 0
    assert RETIRE_S - 0.5 <= waited < RETIRE_S + 10
