"""The run-session threads (tead.daemon.runworkers.SessionThreads), real threads: one per
session in flight, kept idle for the next ones, at most `keep` of them once the sessions
are done; a session then finds an idle thread instead of starting one. A lower `keep`
(the daemon's config reloaded) ends the threads above it as their sessions end."""

from __future__ import annotations

import threading
import time

from tead.daemon.runworkers import SessionThreads
from tests.helpers import wait_until

NAME = "tead-run-session"


def session_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == NAME}


def test_a_peak_of_sessions_leaves_at_most_keep_threads() -> None:
    before = session_threads()
    pool = SessionThreads(keep=2)
    release = threading.Event()
    running: list[str] = []
    lock = threading.Lock()

    def serve(tag: str) -> None:
        with lock:
            running.append(tag)
        release.wait(30)

    for i in range(5):  # 5 sessions at once: 5 threads
        pool.submit(serve, f"peak{i}")
    wait_until(lambda: len(running) == 5, "5 sessions to run")
    peak = session_threads() - before
    assert len(peak) == 5
    release.set()
    wait_until(lambda: len(session_threads() - before) == 2, "the 3 extra threads to end")
    kept = session_threads() - before
    assert kept <= peak

    release.clear()
    for i in range(2):  # as many as were kept: no thread is started
        pool.submit(serve, f"later{i}")
    wait_until(lambda: len(running) == 7, "2 later sessions to run")
    assert session_threads() - before == kept
    release.set()
    time.sleep(0.2)  # they go idle again: none ends, as none is above the 2 kept
    assert session_threads() - before == kept

    pool.keep = 0
    for i in range(2):
        pool.submit(serve, f"last{i}")
    wait_until(lambda: not session_threads() - before, "the kept threads to end")
    assert len(running) == 9
