"""Where a parallel group (`tead.parallel`) records its members' results, so that running
the same code again replays the members that completed and runs only the others.

A journal maps a member's deterministic key (`parent/group/name-or-index`) to its result.
`Journal` is the seam: `SqliteJournal` keeps one SQLite file (WAL; one row per member);
another store (the daemon's) can serve the same two calls. Only successful results whose
value JSON carries exactly (it reads back equal) are recorded: a failed member, or one whose
value JSON would change, runs again on replay instead of coming back falsified.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from typing import Any, Protocol

from tead.parallel.config import ParallelFlowResult

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_results (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL
)
"""


class Journal(Protocol):
    """Recorded member results by key."""

    def get(self, key: str) -> ParallelFlowResult | None:
        """The result recorded under `key`, or None."""
        ...

    def put(self, key: str, result: ParallelFlowResult) -> None:
        """Record `result` (a success) under `key`; a value that cannot be kept exactly is
        not recorded (that member runs again on replay)."""
        ...


def encode_result(result: ParallelFlowResult) -> str | None:
    """The JSON text of a successful result, or None if its value would not read back
    equal (a tuple, a set, an object...)."""
    data = result.to_dict()
    data["attempt_errors"] = list(result.attempt_errors)
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    back = json.loads(text)
    if back.get("value") != result.value or back.get("state") != result.state:
        return None
    return text


def decode_result(text: str) -> ParallelFlowResult:
    data: dict[str, Any] = json.loads(text)
    data["attempt_errors"] = tuple(data.get("attempt_errors") or ())
    return ParallelFlowResult(**data)


class SqliteJournal:
    """A journal in one SQLite file (made if missing). Safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> ParallelFlowResult | None:
        with self._lock:
            row = self._db.execute(
                "SELECT result FROM group_results WHERE key = ?", (key,)
            ).fetchone()
        return decode_result(row[0]) if row is not None else None

    def put(self, key: str, result: ParallelFlowResult) -> None:
        text = encode_result(result)
        if text is None:
            log.warning("group member %s: its value cannot be journaled as JSON; not kept", key)
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO group_results (key, result) VALUES (?, ?)", (key, text)
            )

    def keys(self) -> list[str]:
        """Every recorded key, sorted."""
        with self._lock:
            rows = self._db.execute("SELECT key FROM group_results ORDER BY key").fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
