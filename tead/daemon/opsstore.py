"""The store's tables for operating workflows: which are disabled, the text of each
workflow version that runs used (so that a run can be re-run as it ran), and each run's
journal of completed steps (so that it can be resumed). Part of `tead.daemon.store.Store`;
the connection and migrations are `tead.daemon.database`'s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from tead.daemon.database import Database


class OpsTables(Database):
    # --- disabled workflows -----------------------------------------------------------------

    def disabled_workflows(self) -> set[str]:
        with self._tx() as db:
            return {row["name"] for row in db.execute("SELECT name FROM disabled_workflows")}

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Persist a workflow's switch (StorageFullError if it cannot be written)."""
        with self._write() as db:
            if disabled:
                db.execute(
                    "INSERT OR IGNORE INTO disabled_workflows VALUES (?, ?)", (name, time.time())
                )
            else:
                db.execute("DELETE FROM disabled_workflows WHERE name = ?", (name,))

    # --- workflow versions ------------------------------------------------------------------

    def keep_text(self, content_hash: str, path: str, text: str) -> None:
        """Keep a workflow version's text (once per content hash)."""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO workflow_texts VALUES (?, ?, ?)", (content_hash, path, text)
            )

    def workflow_text(self, content_hash: str) -> tuple[str, str] | None:
        """The (path, text) of a kept workflow version, or None."""
        with self._tx() as db:
            row = db.execute(
                "SELECT path, text FROM workflow_texts WHERE hash = ?", (content_hash,)
            ).fetchone()
        return (row["path"], row["text"]) if row else None

    def prune_texts(self, current: Iterable[str]) -> int:
        """Drop versions that no kept run used and that are not `current`; how many went."""
        keep = list(current)
        marks = ", ".join("?" for _ in keep)
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM workflow_texts WHERE hash NOT IN (SELECT workflow_hash FROM runs)"
                f" AND hash NOT IN ({marks})",
                keep,
            )
            return cursor.rowcount

    # --- journals -----------------------------------------------------------------------------

    def add_journal(self, run_id: str, steps: Sequence[tuple[str, str]]) -> None:
        """Record completed steps of a run: (key, JSON text of the result) each."""
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO journal VALUES (?, ?, ?)",
                [(run_id, key, value) for key, value in steps],
            )

    def journal(self, run_id: str) -> dict[str, Any]:
        """A run's completed steps, decoded, by key."""
        with self._tx() as db:
            rows = db.execute("SELECT key, value FROM journal WHERE run_id = ?", (run_id,))
            return {row["key"]: json.loads(row["value"]) for row in rows}

    def copy_journal(self, source: str, target: str) -> int:
        """Give run `target` the journal of run `source` (a resume); how many steps."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR REPLACE INTO journal SELECT ?, key, value FROM journal WHERE run_id = ?",
                (target, source),
            )
            return cursor.rowcount
