"""SQLite: the daemon's runs, branch results, circuit breakers and schedule marks.

The only module with SQL. One connection (WAL, synchronous=NORMAL) guarded by a lock, so
the event loop and run threads can both use it; every write is one short transaction.
The schema version is SQLite's `user_version`; `MIGRATIONS[n]` takes version n to n + 1.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tead.breaker import BreakerSnapshot, CircuitState
from tead.jsonable import dumps as _dumps
from tead.records import RunRecord, RunStatus

MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        workflow_hash TEXT NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        error TEXT,
        inputs TEXT NOT NULL DEFAULT '{}',
        final_state TEXT
    );
    CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
    CREATE INDEX runs_by_status ON runs (status, created_at);
    CREATE INDEX runs_by_time ON runs (created_at);
    CREATE TABLE branch_results (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE breakers (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        failure_count INTEGER NOT NULL,
        opened_at REAL
    );
    CREATE TABLE schedule_marks (
        key TEXT PRIMARY KEY,
        last_fire REAL NOT NULL
    );
    """,
)


def dumps(value: Any) -> str:
    """JSON for a column: ASCII only, so that any string (even a lone surrogate from a
    non-UTF-8 file name) can be stored."""
    return _dumps(value, ascii_only=True)


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class Store:
    """The daemon's database at `path` (created and migrated on open)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, len(MIGRATIONS)):
                db.executescript(
                    f"BEGIN; {MIGRATIONS[step]}; PRAGMA user_version = {step + 1}; COMMIT;"
                )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- runs -------------------------------------------------------------------------------

    def insert_run(self, run: RunRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, workflow, workflow_hash, trigger, status, created_at,"
                " inputs) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.workflow,
                    run.workflow_hash,
                    dumps(run.trigger),
                    str(run.status),
                    _ts(run.created_at),
                    dumps(run.inputs),
                ),
            )

    def mark_started(self, run_id: str, started_at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = ?, started_at = ? WHERE id = ?",
                (str(RunStatus.RUNNING), _ts(started_at), run_id),
            )

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        finished_at: datetime,
        error: str | None = None,
        final_state: dict[str, Any] | None = None,
        branches: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Record a run's end and its branch results, in one transaction."""
        state = dumps(final_state) if final_state is not None else None
        rows = [(run_id, seq, dumps(result)) for seq, result in enumerate(branches)]
        with self._tx() as db:
            db.execute("BEGIN")
            try:
                db.execute(
                    "UPDATE runs SET status = ?, finished_at = ?, error = ?, final_state = ?"
                    " WHERE id = ?",
                    (str(status), _ts(finished_at), error, state, run_id),
                )
                db.executemany("INSERT OR REPLACE INTO branch_results VALUES (?, ?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            branches = db.execute(
                "SELECT result FROM branch_results WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return self._record(row, [json.loads(b["result"]) for b in branches])

    def list_runs(
        self, *, workflow: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Newest first, without final states and branch results."""
        where, args = [], []
        if workflow is not None:
            where.append("workflow = ?")
            args.append(workflow)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT id, workflow, workflow_hash, trigger, status, created_at, started_at,"
        sql += " finished_at, error, inputs, NULL AS final_state FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._tx() as db:
            rows = db.execute(sql, (*args, limit)).fetchall()
        return [self._record(row, []) for row in rows]

    def runs_with_status(self, *statuses: RunStatus) -> list[RunRecord]:
        """Oldest first (for recovery after a restart)."""
        marks = ", ".join("?" for _ in statuses)
        with self._tx() as db:
            rows = db.execute(
                f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY created_at, id",
                [str(s) for s in statuses],
            ).fetchall()
        return [self._record(row, []) for row in rows]

    def prune(self, keep: int) -> int:
        """Delete all but the newest `keep` finished runs; returns how many went."""
        finished = [str(s) for s in RunStatus if s.finished]
        marks = ", ".join("?" for _ in finished)
        with self._tx() as db:
            cursor = db.execute(
                f"DELETE FROM runs WHERE status IN ({marks}) AND id NOT IN"
                f" (SELECT id FROM runs WHERE status IN ({marks})"
                " ORDER BY created_at DESC, id DESC LIMIT ?)",
                (*finished, *finished, keep),
            )
            return cursor.rowcount

    @staticmethod
    def _record(row: sqlite3.Row, branches: list[dict[str, Any]]) -> RunRecord:
        created = _dt(row["created_at"])
        assert created is not None
        return RunRecord(
            id=row["id"],
            workflow=row["workflow"],
            workflow_hash=row["workflow_hash"],
            trigger=json.loads(row["trigger"]),
            status=RunStatus(row["status"]),
            created_at=created,
            started_at=_dt(row["started_at"]),
            finished_at=_dt(row["finished_at"]),
            error=row["error"],
            inputs=json.loads(row["inputs"]),
            final_state=json.loads(row["final_state"]) if row["final_state"] else None,
            branches=branches,
        )

    # --- circuit breakers (a tead.breaker.BreakerStore) --------------------------------------

    def load_all(self) -> list[BreakerSnapshot]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM breakers ORDER BY name").fetchall()
        return [
            BreakerSnapshot(
                name=r["name"],
                state=CircuitState(r["state"]),
                failure_count=r["failure_count"],
                opened_at=r["opened_at"],
            )
            for r in rows
        ]

    def save(self, snapshot: BreakerSnapshot) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO breakers VALUES (?, ?, ?, ?)",
                (snapshot.name, str(snapshot.state), snapshot.failure_count, snapshot.opened_at),
            )

    # --- schedule marks ------------------------------------------------------------------------

    def last_fire(self, key: str) -> datetime | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT last_fire FROM schedule_marks WHERE key = ?", (key,)
            ).fetchone()
        return _dt(row["last_fire"]) if row else None

    def set_last_fire(self, key: str, moment: datetime) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO schedule_marks VALUES (?, ?)", (key, _ts(moment)))
