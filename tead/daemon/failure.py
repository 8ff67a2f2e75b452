"""What the daemon keeps of how a run went: where it failed and each node's status and timing.

`failure_of` describes the exception that ended a run (in the process that ran it): the
failing node and its branch path, the error's type and message, and its traceback, whose
frames of `run:` code carry the workflow file's name and line numbers (tead.graph.nodes
compiles them so); the engine's own frames are left out. `RunTrace` follows a run's events
(in the daemon) and keeps each node's status and timings.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tead.daemon.logstore import dumps
from tead.daemon.records import iso_utc
from tead.daemon.runlogs import RunLogs, no_mask
from tead.daemon.storable import StorableEnd
from tead.engine.events import Event, NodeFinished, NodeStarted
from tead.errors import FanOutError, NodeError, TeadError

MAX_NODES = 1000  # node entries kept per run; the rest are counted
MAX_TRACEBACK = 32_768  # characters
_TEAD = str(Path(__file__).resolve().parent.parent)  # the package's own frames


def failure_of(exc: BaseException) -> dict[str, Any]:
    """The failure details of a run that ended with `exc`."""
    if isinstance(exc, NodeError):
        error = exc.error
        return {
            "node": exc.node,
            "branch": exc.path,
            "error_type": type(error).__name__,
            "message": str(error),
            "traceback": _traceback(error),
        }
    if isinstance(exc, FanOutError):
        result = exc.result
        return {
            "node": None,
            "branch": str(result.branch),
            "error_type": result.error_type,
            "message": str(exc),
            "traceback": result.traceback,
        }
    return {
        "node": None,
        "branch": "",
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": None if isinstance(exc, TeadError) else _traceback(exc),
    }


def checked_failure(data: Any) -> dict[str, Any] | None:
    """A failure a worker sent (its fields strings or null); ValueError if it is not one."""
    if data is None:
        return None
    keys = ("node", "branch", "error_type", "message", "traceback")
    if not isinstance(data, dict) or not all(
        data.get(k) is None or isinstance(data.get(k), str) for k in keys
    ):
        raise ValueError("an end's failure is an object of strings")
    return {k: data.get(k) for k in keys}


def crash_failure(trace: RunTrace, error: str | None) -> dict[str, Any]:
    """The failure details of a run whose worker died (or broke its protocol): the node
    running then, if one was."""
    running = trace.running()
    node, branch = running[-1] if running else (None, "")
    return {
        "node": node,
        "branch": branch,
        "error_type": "WorkerDied",
        "message": error or "the run's worker process died",
        "traceback": None,
    }


def _traceback(error: BaseException) -> str:
    """The error's traceback without the engine's frames (the node's own come first)."""
    summary = traceback.TracebackException.from_exception(error)
    frames = summary.stack
    while len(frames) > 1 and frames[0].filename.startswith(_TEAD):
        del frames[0]
    text = "".join(summary.format())
    return text if len(text) <= MAX_TRACEBACK else text[-MAX_TRACEBACK:]


class RunTrace:
    """Follows one run's events: each node's status, start and duration, in start order
    (branch nodes too, with their branch path). Thread-safe; events may come from branch
    threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[tuple[str, str], dict[str, Any]] = {}
        self.omitted = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeStarted):
            with self._lock:
                key = (event.path, event.node)
                if key not in self._nodes and len(self._nodes) >= MAX_NODES:
                    self.omitted += 1
                    return
                self._nodes[key] = {
                    "node": event.node,
                    "branch": event.path,
                    "status": "running",
                    "started_at": time.time(),
                    "duration_ms": None,
                    "error": None,
                }
        elif isinstance(event, NodeFinished):
            with self._lock:
                entry = self._nodes.get((event.path, event.node))
                if entry is not None:
                    entry.update(
                        status=event.status, duration_ms=event.duration_ms, error=event.error
                    )

    def running(self) -> list[tuple[str | None, str]]:
        """The nodes running now, as (node, branch)."""
        with self._lock:
            entries = self._nodes.values()
            return [(e["node"], e["branch"]) for e in entries if e["status"] == "running"]

    def nodes(self) -> list[dict[str, Any]]:
        """The entries, `started_at` in the API's format (a node still running when the
        run ended stays `running`)."""
        with self._lock:
            entries = [dict(entry) for entry in self._nodes.values()]
        for entry in entries:
            entry["started_at"] = iso_utc(datetime.fromtimestamp(entry["started_at"], UTC))
        return entries


def with_details(
    end: StorableEnd, logs: RunLogs | None, failure: dict[str, Any] | None, trace: RunTrace
) -> StorableEnd:
    """A run's end with its failure details and node trace, its logs written first (a
    follower of the logs has every line once it sees the run ended). The failure's
    message and traceback pass through the logs' mask, as log lines do."""
    if logs is not None:
        logs.close()
    mask = logs.mask if logs is not None else no_mask
    if failure is not None:
        failure = {k: mask(v) if isinstance(v, str) else v for k, v in failure.items()}
    nodes = live_nodes(trace, logs)
    return dataclasses.replace(
        end, failure=None if failure is None else dumps(failure), nodes=dumps(nodes)
    )


def live_nodes(trace: RunTrace, logs: RunLogs | None) -> list[dict[str, Any]]:
    """The trace's entries, their errors passed through the logs' mask (as log lines)."""
    mask = logs.mask if logs is not None else no_mask
    nodes = trace.nodes()
    for entry in nodes:
        if entry["error"] is not None:
            entry["error"] = mask(entry["error"])
    return nodes
