"""What a run leaves in its worker process: the processes below it (killed with it, even
those that left its process group: the worker is their subreaper) and the process-wide
state a run may change, put back before the worker serves the next run of the same
workflow version, whose workflow is built meanwhile (`prepare`)."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # getsignal without signal's enums: 20x faster
import contextlib
import ctypes
import functools
import importlib
import linecache
import logging
import os
import signal
import socket
import sys
import threading
import warnings
from typing import Any, cast

from tead.engine.seam import Kept
from tead.graph.compiled import WorkflowGraph
from tead.graph.loader import ParsedWorkflow, build_parsed, parse_workflow_text

PR_SET_CHILD_SUBREAPER = 36
NOTHING_KEPT = Kept()


def become_subreaper() -> None:
    """Orphans of this run are reparented to this process, not to init (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux: /proc/PID/task/*/children), parents first."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as f:
                    children = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found:
                    found.append(child)
                    todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL every process below `pid` (not `pid` itself): stopped first, so that none
    forks meanwhile, then killed; repeated until none is left (at most a few rounds)."""
    for _ in range(5):
        found = descendants(pid)
        if not found:
            return
        for child in found:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGSTOP)
        for child in descendants(pid):
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)


def prepare(text: str, path: str) -> WorkflowGraph | None:
    """A workflow built anew for the next run of its version, ahead of the run's order,
    if that runs no user code: `run:` code is only compiled, `uses:` modules are imported
    by each run itself (in its folder, environment and path), so none may be here."""
    try:
        parsed = _parsed(text, path)
        if any(node.uses is not None for node in parsed.spec.nodes):
            return None
        return build_parsed(parsed)
    except BaseException:  # the run loads it again and reports what is wrong
        return None


@functools.lru_cache(maxsize=1)  # a worker serves one workflow version
def _parsed(text: str, path: str) -> ParsedWorkflow:
    return parse_workflow_text(text, path)


PLAIN_ITEMS = 10_000  # a value with more items is not looked through (see `plain`)


def plain(value: Any) -> bool:
    """Whether `value` is made of JSON's own types only (dicts with string keys, lists,
    lists or tuples,
    strings, numbers, booleans, None; exactly those types, no subclass) and has at most
    `PLAIN_ITEMS` items: encoding it runs no code of the run's and takes no time."""
    todo, seen = [value], 0
    while todo:
        item = todo.pop()
        seen += 1
        if seen > PLAIN_ITEMS:
            return False
        kind = type(item)
        if kind is dict:
            if any(type(key) is not str for key in item):
                return False
            todo.extend(item.values())
        elif kind is list or kind is tuple:
            todo.extend(item)
        elif kind not in _SCALARS:
            return False
    return True


_SCALARS = (str, int, float, bool, type(None))


class Baseline:
    """What a worker was like before its first run, to check that a run left nothing
    running and to put back what a run may have changed in the process. The next order
    sets the working directory, environment and `sys.path` itself."""

    def __init__(self) -> None:
        self.modules = set(sys.modules)
        self.threads = threading.active_count()
        self.signals = {s: _signal.getsignal(s) for s in _CATCHABLE}
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.recursion_limit = sys.getrecursionlimit()
        self.streams = (sys.stdout, sys.stderr, sys.stdin)
        self.warnings = list(warnings.filters)
        root = logging.getLogger()
        self.logging = (root.level, list(root.handlers))
        self.socket_timeout = socket.getdefaulttimeout()

    def left_nothing(self, limited: bool, kept: Kept = NOTHING_KEPT) -> bool:
        """Whether the run left nothing running and lowered no limit (the threads of
        executors kept across runs are not the run's)."""
        ours = sum(thread.is_alive() for thread in kept.threads)
        return (
            not limited
            and threading.active_count() - ours <= self.threads
            and not descendants(os.getpid())
        )

    def restore(self, kept: Kept = NOTHING_KEPT) -> None:
        """Put back what a run may have changed; the modules that executors kept across
        runs need stay loaded (their packages', and the standard library's)."""
        for name in set(sys.modules) - self.modules:  # the next run imports its own
            top = name.partition(".")[0]
            if kept.packages and (top in kept.packages or top in sys.stdlib_module_names):
                self.modules.add(name)
                continue
            del sys.modules[name]
        importlib.invalidate_caches()  # ... and sees edited files
        linecache.clearcache()
        for number, handler in self.signals.items():
            if _signal.getsignal(number) != handler:  # a run rarely changes any
                with contextlib.suppress(OSError, ValueError, TypeError):
                    signal.signal(number, handler)
        os.umask(self.umask)
        sys.setrecursionlimit(self.recursion_limit)
        sys.stdout, sys.stderr, sys.stdin = self.streams
        cast(list[Any], warnings.filters)[:] = self.warnings
        root = logging.getLogger()
        root.setLevel(self.logging[0])
        root.handlers[:] = self.logging[1]
        socket.setdefaulttimeout(self.socket_timeout)


_CATCHABLE = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
