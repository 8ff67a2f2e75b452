"""SQL of the runs' log lines, and of finding a run by a prefix of its id (a part of the
daemon's store: `tead.daemon.store.Store` is one of these).

A run's lines are kept in rows of a batch each: `(run_id, seq, lines)`, `lines` the JSON
of `[[ts, node, branch, stream, line], ...]`; a run's rows go with it when it is pruned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tead.daemon.database import Database
from tead.engine.logs import LogLine
from tead.errors import TeadError
from tead.jsonable import dumps as _dumps


def dumps(value: Any) -> str:
    """JSON for a column: ASCII only, so that any string (even a lone surrogate from a
    non-UTF-8 file name) can be stored."""
    return _dumps(value, ascii_only=True)


_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


class AmbiguousRunId(TeadError):
    """A run id prefix that several runs' ids start with."""

    def __init__(self, prefix: str, matches: Sequence[str]) -> None:
        self.prefix = prefix
        self.matches = tuple(matches)
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        super().__init__(f"run id prefix {prefix!r} is ambiguous: it matches {shown}")


class LogStore(Database):
    """The log table and run id lookups (see the module)."""

    def append_logs(self, run_id: str, lines: list[LogLine]) -> None:
        """Store a batch of a run's lines after those stored before (StorageFullError)."""
        text = _ENCODE(lines)
        with self._write() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM run_logs WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute("INSERT INTO run_logs VALUES (?, ?, ?)", (run_id, row[0], text))

    def read_logs(self, run_id: str, after: int = -1) -> list[tuple[int, list[list[Any]]]]:
        """The run's batches after batch `after`, as (seq, lines), in order."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, lines FROM run_logs WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            ).fetchall()
        return [(row["seq"], json.loads(row["lines"])) for row in rows]

    def resolve_run_id(self, prefix: str) -> str | None:
        """The id of the one run whose id is or starts with `prefix`; None if there is
        none; AmbiguousRunId if there are several."""
        if not prefix:
            return None
        with self._tx() as db:
            exact = db.execute("SELECT id FROM runs WHERE id = ?", (prefix,)).fetchone()
            if exact is not None:
                return str(exact["id"])
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = db.execute(
                "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 6",
                (escaped + "%",),
            ).fetchall()
        ids = [str(row["id"]) for row in rows]
        if len(ids) > 1:
            raise AmbiguousRunId(prefix, ids)
        return ids[0] if ids else None
