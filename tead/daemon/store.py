"""SQLite: the daemon's runs, branch results, circuit breakers and schedule marks.

With `tead.daemon.logstore` (logs), the only module that queries the tables; connection,
schema and transactions are in `tead.daemon.database`. A write that fails for lack of
space raises StorageFullError and leaves nothing half-written; a run's end, a breaker's
state or a schedule mark that could not be written is kept here in memory (and shown by
reads) until `record_unrecorded` writes it. A run's end is written once: a finished run is never
rewritten.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tead.daemon.logstore import LogStore, dumps
from tead.daemon.opsstore import OpsTables
from tead.daemon.records import RunRecord, RunStatus
from tead.daemon.runquery import list_query
from tead.daemon.storable import StorableEnd
from tead.errors import StorageFullError
from tead.parallel.breaker import BreakerSnapshot, CircuitState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class _UnrecordedEnd:
    status: RunStatus
    finished_at: datetime
    error: str | None
    end: StorableEnd


@dataclass(frozen=True, slots=True)
class RunJson:
    """A run with its JSON columns as stored: ASCII JSON text, not decoded (decoding a big
    state would hold the GIL, and so the event loop, for the whole call)."""

    record: RunRecord  # its trigger, inputs, final state and branches left empty
    texts: dict[str, bytes]  # "trigger", "inputs", "final_state", "branches" -> JSON


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class Store(OpsTables, LogStore):
    """The daemon's database at `path` (created and migrated on open)."""

    def __init__(self, path: str | Path) -> None:
        self._ends: dict[str, _UnrecordedEnd] = {}  # run id -> an end not written yet
        self._breakers: dict[str, BreakerSnapshot] = {}  # not written yet
        self._marks: dict[str, datetime] = {}  # schedule marks not written yet
        super().__init__(path)

    # --- runs -------------------------------------------------------------------------------

    def insert_run(self, run: RunRecord, *, mark: tuple[str, datetime] | None = None) -> None:
        """Insert a queued run and, in the same transaction, a schedule's last fire (`mark`:
        its key and moment), so that a crash between the two can neither lose the fire nor
        run it twice."""
        with self._write() as db:
            if mark is not None:
                key, moment = mark
                db.execute(
                    "INSERT OR REPLACE INTO schedule_marks VALUES (?, ?)", (key, _ts(moment))
                )
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
        if mark is not None:
            with self._tx():
                self._marks.pop(mark[0], None)  # an older mark still waiting for space

    def mark_started(self, run_id: str, started_at: datetime) -> None:
        with self._write() as db:
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
        keep: bool = True,
    ) -> None:
        """Record a run's end and its branch results, in one transaction (`keep`: see
        record_end)."""
        end = StorableEnd(
            final_state=dumps(final_state) if final_state is not None else None,
            branches=tuple(dumps(result) for result in branches),
        )
        self.record_end(run_id, status, finished_at=finished_at, error=error, end=end, keep=keep)

    def record_end(
        self,
        run_id: str,
        status: RunStatus,
        *,
        finished_at: datetime,
        error: str | None,
        end: StorableEnd,
        keep: bool = True,
    ) -> None:
        """Record a run's end (already encoded), once: a run already finished is left as
        it is. On StorageFullError the end is kept (and shown by reads) until
        `record_unrecorded` writes it, unless `keep` is false."""
        unrecorded = _UnrecordedEnd(status=status, finished_at=finished_at, error=error, end=end)
        with self._tx():
            if run_id in self._ends:  # the first end is the true one; it waits its turn
                return
        try:
            self._write_end(run_id, unrecorded)
        except StorageFullError:
            if keep:
                with self._tx():
                    self._ends.setdefault(run_id, unrecorded)
            raise

    def _write_end(self, run_id: str, end: _UnrecordedEnd) -> None:
        rows = [(run_id, seq, text) for seq, text in enumerate(end.end.branches)]
        unfinished = [str(s) for s in RunStatus if not s.finished]
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ?, final_state = ?,"
                " failure = ?, nodes = ? WHERE id = ? AND status IN (?, ?)",
                (
                    str(end.status),
                    _ts(end.finished_at),
                    end.error,
                    end.end.final_state,
                    end.end.failure,
                    end.end.nodes,
                    run_id,
                    *unfinished,
                ),
            )
            if cursor.rowcount:
                db.executemany("INSERT OR REPLACE INTO branch_results VALUES (?, ?, ?)", rows)

    @property
    def unrecorded(self) -> int:
        """How many writes wait for space (run ends, breaker states, schedule marks)."""
        with self._tx():
            return len(self._ends) + len(self._breakers) + len(self._marks)

    def record_unrecorded(self) -> int:
        """Write what waits for space, oldest first; returns how many still wait."""
        with self._tx():
            ends, breakers, marks = dict(self._ends), dict(self._breakers), dict(self._marks)
        try:
            for run_id, end in ends.items():
                self._write_end(run_id, end)
                with self._tx():
                    del self._ends[run_id]
                log.info("run %s %s: recorded now that there is space", run_id, end.status)
            for name, snapshot in breakers.items():
                self._save(snapshot)
                with self._tx():
                    if self._breakers.get(name) == snapshot:
                        del self._breakers[name]
            for key, moment in marks.items():
                self._set_last_fire(key, moment)
                with self._tx():
                    if self._marks.get(key) == moment:
                        del self._marks[key]
        except StorageFullError:
            pass
        return self.unrecorded

    def unrecorded_ends(self) -> dict[str, RunStatus]:
        """Run id -> the status of each run end still waiting for space."""
        with self._tx():
            return {run_id: end.status for run_id, end in self._ends.items()}

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            branches = db.execute(
                "SELECT result FROM branch_results WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            waiting = self._ends.get(run_id)
        if waiting is not None:
            return self._waiting(self._record(row, []), waiting, full=True)
        return self._record(row, [json.loads(b["result"]) for b in branches])

    def run_json(self, run_id: str) -> RunJson | None:
        """The run as `get_run` would read it, with its JSON columns left as text."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, workflow, workflow_hash, '{}' AS trigger, status, created_at,"
                " started_at, finished_at, error, '{}' AS inputs, NULL AS final_state, NULL AS"
                " failure, NULL AS nodes, CAST(trigger AS BLOB) AS t, CAST(inputs AS BLOB) AS i,"
                " CAST(final_state AS BLOB) AS s, CAST(failure AS BLOB) AS f,"
                " CAST(nodes AS BLOB) AS n FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            branches = db.execute(
                "SELECT CAST(result AS BLOB) FROM branch_results WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            waiting = self._ends.get(run_id)
        record, state, results = self._record(row, []), row["s"], [b[0] for b in branches]
        failure, nodes = row["f"], row["n"]
        if waiting is not None:
            record, end = self._waiting(record, waiting, full=False), waiting.end
            state, failure, nodes = ((t or "").encode() for t in end.columns())
            results = [text.encode() for text in end.branches]
        texts = {"trigger": row["t"], "inputs": row["i"], "final_state": state or b"null"}
        texts |= {"failure": failure or b"null", "nodes": nodes or b"[]"}
        return RunJson(record, {**texts, "branches": b"[" + b",".join(results) + b"]"})

    def run_status(self, run_id: str) -> RunStatus | None:
        """The run's status as reads show it, or None if there is no such run."""
        with self._tx() as db:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            waiting = self._ends.get(run_id)
        if row is None:
            return None
        return waiting.status if waiting is not None else RunStatus(row["status"])

    @staticmethod
    def _waiting(record: RunRecord, end: _UnrecordedEnd, *, full: bool) -> RunRecord:
        """`record` as it will be once its end is written."""
        state = end.end.final_state
        return replace(
            record,
            status=end.status,
            finished_at=end.finished_at,
            error=end.error,
            final_state=json.loads(state) if full and state else None,
            branches=[json.loads(text) for text in end.end.branches] if full else [],
            failure=json.loads(end.end.failure) if full and end.end.failure else None,
            nodes=json.loads(end.end.nodes) if full and end.end.nodes else [],
        )

    def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[RunRecord]:
        """Newest first, without inputs, final states and branch results (the list does not
        show them, and decoding up to 1000 runs' inputs of up to `max_request_bytes` each
        would hold up the event loop); `before` (a run id): only the runs after it in this
        order, the next page."""
        with self._tx() as db:
            ends = dict(self._ends)
            sql, args = list_query(ends, workflow, status, before)
            rows = db.execute(sql, (*args, limit)).fetchall()
        records = [self._record(row, []) for row in rows]
        shown = [self._waiting(r, ends[r.id], full=False) if r.id in ends else r for r in records]
        return [r for r in shown if status is None or r.status == status]

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
        with self._write() as db:
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
            failure=json.loads(row["failure"]) if row["failure"] else None,
            nodes=json.loads(row["nodes"]) if row["nodes"] else [],
        )

    # --- circuit breakers (a tead.parallel.breaker.BreakerStore) ------------------------------

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
        """Store a breaker's state; without space, keep it until there is some."""
        try:
            self._save(snapshot)
        except StorageFullError as exc:
            log.warning("breaker %s: %s; kept in memory until then", snapshot.name, exc)
            with self._tx():
                self._breakers[snapshot.name] = snapshot

    def _save(self, snapshot: BreakerSnapshot) -> None:
        with self._write() as db:
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
            if key in self._marks:
                return self._marks[key]
        return _dt(row["last_fire"]) if row else None

    def set_last_fire(self, key: str, moment: datetime) -> None:
        """Store a schedule's last fire; without space, keep it until there is some."""
        try:
            self._set_last_fire(key, moment)
        except StorageFullError as exc:
            log.warning("schedule %s: %s; its last fire is kept in memory until then", key, exc)
            with self._tx():
                self._marks[key] = moment

    def _set_last_fire(self, key: str, moment: datetime) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO schedule_marks VALUES (?, ?)", (key, _ts(moment)))
