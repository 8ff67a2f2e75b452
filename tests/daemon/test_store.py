"""The store on real SQLite: a run's end is written once and never rewritten."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tead.daemon.api import run_response, stored_run_response
from tead.daemon.records import RunRecord, RunStatus, new_run_id, now_utc
from tead.daemon.store import Store


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


def test_a_scheduled_run_and_its_schedule_mark_are_written_together(tmp_path: Path) -> None:
    """The run of a schedule fire and the schedule's last-fire mark are one transaction: a
    kill -9 between two separate writes lost the fire (a gap in `catchup: all`)."""
    store = Store(tmp_path / "tead.db")
    first = now_utc()
    run = RunRecord(
        id=new_run_id(),
        workflow="w",
        workflow_hash="h",
        trigger={"kind": "schedule"},
        status=RunStatus.QUEUED,
        created_at=first,
    )
    store.insert_run(run, mark=("w:every-1s", first))
    assert store.last_fire("w:every-1s") == first
    later = first + timedelta(seconds=1)
    with pytest.raises(sqlite3.IntegrityError):  # the same run id again: the insert fails
        store.insert_run(run, mark=("w:every-1s", later))
    assert store.last_fire("w:every-1s") == first  # ... and so the mark was not moved
    store.close()
    reopened = Store(tmp_path / "tead.db")
    assert reopened.last_fire("w:every-1s") == first
    assert reopened.get_run(run.id) is not None
    reopened.close()


def test_a_run_read_as_stored_text_answers_what_decoding_it_answers(tmp_path: Path) -> None:
    """The API's answer spliced from the stored JSON texts has the same content and key
    order as the one built from the decoded run: non-ASCII and lone surrogates, a string
    holding "NaN", a NaN float (left out under `omitted`), branches, a run not ended."""
    store = Store(tmp_path / "tead.db")
    states = (
        {"s": "é \udcff NaN Infinity", "n": [1, 2.5, None, True]},
        {"x": float("nan"), "y": "ok"},
        None,
    )
    for state in states:
        run = RunRecord(
            id=new_run_id(),
            workflow="w",
            workflow_hash="h",
            trigger={"kind": "dispatch", "é": 1},
            status=RunStatus.QUEUED,
            created_at=now_utc(),
            inputs={"a": "ü", "b": [{"c": None}]},
        )
        store.insert_run(run)
        if state is not None:
            branches = [{"path": "p", "state": state}, {"path": "q", "state": None}]
            store.finish_run(
                run.id,
                RunStatus.SUCCEEDED,
                finished_at=now_utc(),
                final_state=state,
                branches=branches,
            )
        decoded = store.get_run(run.id)
        stored = store.run_json(run.id)
        assert decoded is not None and stored is not None
        old = json.loads(bytes(run_response(decoded.to_dict()).body))
        new = json.loads(bytes(stored_run_response(stored).body))
        assert new == old and list(new) == list(old)
        assert ("omitted" in new) == (state is states[1])
    store.close()
