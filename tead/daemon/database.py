"""The SQLite connection under the daemon's store: schema, migrations, transactions.

One connection (WAL, synchronous=NORMAL) guarded by a lock, so the event loop and run
threads can both use it; every write is one short transaction. The schema version is
SQLite's `user_version`; `MIGRATIONS[n]` takes version n to n + 1.

The database and its -wal / -shm / -journal files are private to the daemon's user
(0600, whatever the umask). A write that fails for lack of space raises StorageFullError
and leaves nothing half-written.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tead.errors import StorageFullError

PRIVATE_FILE = 0o600
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

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
    # disabled workflows; each workflow version's text (to re-run old runs); each
    # run's journal of completed steps (to resume it)
    """
    CREATE TABLE disabled_workflows (
        name TEXT PRIMARY KEY,
        disabled_at REAL NOT NULL
    );
    CREATE TABLE workflow_texts (
        hash TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE TABLE journal (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    """,
    # run logs and failure details
    """
    CREATE TABLE run_logs (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        lines TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    ALTER TABLE runs ADD COLUMN failure TEXT;
    ALTER TABLE runs ADD COLUMN nodes TEXT;
    """,
)


def private_file(path: Path) -> None:
    """Create `path` if missing, and make it readable and writable by its owner only."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def is_full(exc: BaseException) -> bool:
    """Whether `exc` says that the disk (or the quota) is full."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", 0) or 0
        return code & 0xFF == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


class Database:
    """The SQLite database at `path` (created and migrated on open)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            private_file(self.path)  # SQLite gives -wal, -shm and -journal files its mode
            for suffix in ("-wal", "-shm", "-journal"):
                sibling = self.path.with_name(self.path.name + suffix)
                if sibling.exists():
                    os.chmod(sibling, PRIVATE_FILE)
        except OSError as exc:
            if is_full(exc):
                raise StorageFullError(str(self.path), os.strerror(exc.errno or 0)) from None
            raise
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._full_is_an_error():
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

    @contextmanager
    def _full_is_an_error(self) -> Iterator[None]:
        """Lack of space becomes StorageFullError (hold the lock)."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if is_full(exc):
                raise StorageFullError(str(self.path), str(exc)) from None
            raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed whole, or rolled back whole (even when COMMIT fails
        for lack of space) with StorageFullError raised."""
        with self._tx() as db, self._full_is_an_error():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
