"""The store on real SQLite: a run's end is written once and never rewritten."""

from __future__ import annotations

from pathlib import Path

from tead.records import RunRecord, RunStatus, new_run_id, now_utc
from tead.store import Store


def test_a_finished_run_is_never_rewritten(tmp_path: Path) -> None:
    """A second end for a run (say `failed` after `succeeded`) changes nothing recorded."""
    store = Store(tmp_path / "tead.db")
    run = RunRecord(
        id=new_run_id(),
        workflow="w",
        workflow_hash="h",
        trigger={"kind": "dispatch"},
        status=RunStatus.QUEUED,
        created_at=now_utc(),
    )
    store.insert_run(run)
    store.mark_started(run.id, now_utc())
    store.finish_run(run.id, RunStatus.SUCCEEDED, finished_at=now_utc(), final_state={"a": 1})
    store.finish_run(run.id, RunStatus.FAILED, finished_at=now_utc(), error="internal error")
    stored = store.get_run(run.id)
    assert stored is not None
    assert (stored.status, stored.error, stored.final_state) == ("succeeded", None, {"a": 1})
    store.close()
