"""A worker process of a `WorkerPool`: how it starts, how it follows its parent, and how it
serves tasks.

Workers come from the `forkserver` context (`spawn` where there is none). The fork server
starts in the parent's working directory with `''` first on its `sys.path`, so it preloads
tead only when that folder shadows nothing; else every import happens in the worker after
multiprocessing has given it the parent's `sys.path`: a folder named `tead/` (or `yaml.py`)
in the working directory is never imported. Each worker exits within milliseconds of the
death of the process that started it (a pidfd it polls; a 0.1 s `kill(pid, 0)` check where
pidfds are missing).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tead.engine.logs import FdCapture

#: imported by each worker before it says it is ready (so that no branch pays for them)
PRELOAD = ("tead.engine.walk", "tead.graph.loader", "tead.executors.registry")
PARENT_POLL_S = 0.1  # where pidfds are missing: how often a worker checks its parent

#: a message from the pool that is no task: `BASE` + key, then the base's bytes in a
#: message of their own; `DROP` + key (task payloads are pickles: they start with 0x80)
BASE, DROP = b"B:", b"D:"


class BaseCache:
    """What a worker keeps for the fan-outs it serves: each one's base state, sent once
    per fan-out, unpickled on first use (once the task's workflow, whose folder may hold
    the classes of its values, is loaded), dropped when the fan-out ends."""

    def __init__(self) -> None:
        self._bytes: dict[str, bytes] = {}
        self._loaded: dict[str, Any] = {}
        self._pickled: dict[str, dict[str, bytes]] = {}  # per base: its values pickled

    def pickled(self, key: str, name: str) -> bytes:
        """Value `name` of base `key` pickled (once per worker and fan-out)."""
        values = self._pickled.setdefault(key, {})
        if name not in values:
            values[name] = pickle.dumps(self.get(key)[name], protocol=pickle.HIGHEST_PROTOCOL)
        return values[name]

    def put(self, key: str, data: bytes) -> None:
        self._bytes[key] = data

    def drop(self, key: str) -> None:
        self._bytes.pop(key, None)
        self._loaded.pop(key, None)
        self._pickled.pop(key, None)

    def get(self, key: str) -> Any:
        """The base of fan-out `key`; KeyError if this worker was never sent it."""
        if key not in self._loaded:
            self._loaded[key] = pickle.loads(self._bytes.pop(key))
        return self._loaded[key]

    def __len__(self) -> int:
        return len(self._bytes) + len(self._loaded)


Job = Callable[[bytes, BaseCache], Any]  # runs in the worker: payload -> result (pickled back)


def context(preload: tuple[str, ...] = PRELOAD) -> multiprocessing.context.BaseContext:
    """`forkserver` (no fork of a threaded parent), else `spawn`; `preload` is what the
    fork server imports, if it is not running yet.

    The fork server imports its preloads with the working directory first on `sys.path`
    (Python 3.11 ignores the parent's path there), so it preloads tead only when nothing
    in the working directory is named like a module this process has imported; otherwise
    (and never `__main__`, the default) each worker imports after it has the parent's path.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([] if _cwd_shadows_imports() else list(preload))
    return ctx


def _cwd_shadows_imports() -> bool:
    """Whether the working directory holds a module or package named like one this process
    imported from elsewhere (the folder it really came from, a checkout, does not count)."""
    try:
        cwd = Path.cwd().resolve()
        entries = os.listdir(cwd)
    except OSError:
        return True
    suffixes = tuple(importlib.machinery.all_suffixes())
    names = {e.split(".", 1)[0] for e in entries if "." not in e or e.endswith(suffixes)}
    for name in names & {name.partition(".")[0] for name in list(sys.modules)}:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if origin is None:
            if getattr(module, "__path__", None) is None:
                continue  # built in or frozen: found before any folder
            return True
        try:
            relative = Path(origin).resolve().relative_to(cwd)
        except ValueError:
            return True  # imported from elsewhere: the folder's copy would win
        if relative.parts[0].split(".", 1)[0] != name:
            return True
    return False


# --- the worker side ------------------------------------------------------------------------


def _exit() -> None:
    os._exit(0)


def watch_parent(pid: int, gone: Callable[[], None] = _exit) -> None:
    """Call `gone` (default: exit) at once when process `pid` (the one that started this
    worker) is gone; `gone` must not return."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        gone()
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
        fd = None

    def watch() -> None:
        if fd is not None:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll()  # readable when the process ends
            gone()
        while True:
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):  # gone, or its pid reused
                gone()
            threading.Event().wait(PARENT_POLL_S)

    threading.Thread(target=watch, name="tead-parent-watch", daemon=True).start()


def worker_main(conn: Connection, parent: int, job: Job) -> None:
    """A worker: watch the parent, import, say ready, then run tasks until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    FdCapture.install()  # a branch's output below Python goes back with its result
    watch_parent(parent)
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("start_failed", f"{type(exc).__name__}: {exc}"))
        os._exit(1)
    try:
        conn.send(("ready", None))
    except OSError:  # the pool was closed while this worker started
        os._exit(0)
    bases = BaseCache()
    while True:
        try:
            payload = conn.recv_bytes()
            if payload[:2] == BASE:
                bases.put(payload[2:].decode(), conn.recv_bytes())
                continue
        except (EOFError, OSError):
            os._exit(0)
        if payload[:2] == DROP:
            bases.drop(payload[2:].decode())
            continue
        try:
            message: tuple[str, Any] = ("result", job(payload, bases))
            data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:
            data = pickle.dumps(("error", _sendable(exc)), protocol=pickle.HIGHEST_PROTOCOL)
        conn.send_bytes(data)


def _sendable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
