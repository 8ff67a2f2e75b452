"""What the daemon does for operators besides running triggers: runs that trigger runs
(`on.workflow_run`), re-running a run as it ran, and which workflows are disabled.

**The loop guard of `workflow_run`.** A run started by `workflow_run` carries the chain of
workflows that led to it (`state["trigger"]["chain"]`: the first run's workflow, ...,
the triggering run's workflow). A workflow already in the chain is not started again by
it: a workflow cannot trigger itself, directly or through others. And, as in GitHub
Actions, a chain is at most `MAX_CHAIN` runs long (a first run and three levels of
`workflow_run`): workflows that all follow each other would otherwise start a number of
runs that grows as the factorial of their count. Each skipped start is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tead.daemon.records import RunRecord
from tead.daemon.registry import WorkflowEntry, WorkflowRegistry
from tead.daemon.runs import RunManager
from tead.daemon.store import Store
from tead.errors import Conflict, StorageFullError, WorkflowError
from tead.graph.loader import load_workflow_text

log = logging.getLogger(__name__)

MAX_CHAIN = 4  # runs in a chain of workflow_run triggers, the first one included


def workflow_run_followers(
    entries: Iterable[WorkflowEntry], ended: RunRecord, disabled: set[str]
) -> list[tuple[WorkflowEntry, dict[str, Any]]]:
    """The workflows whose `on.workflow_run` the end of run `ended` fires, each with the
    trigger of its new run (the loop guard applied: see the module's docstring)."""
    before = ended.trigger.get("chain") if ended.trigger.get("kind") == "workflow_run" else None
    chain = [*(before if isinstance(before, list) else []), ended.workflow]
    found: list[tuple[WorkflowEntry, dict[str, Any]]] = []
    for entry in entries:
        spec = entry.workflow.spec if entry.workflow is not None else None
        on = spec.on.workflow_run if spec is not None and spec.on is not None else None
        if on is None or ended.workflow not in on.workflows or ended.status not in on.status:
            continue
        if entry.name in disabled:
            log.info("workflow %s not triggered by run %s: it is disabled", entry.name, ended.id)
            continue
        if len(chain) >= MAX_CHAIN:
            log.info(
                "workflow %s not triggered by run %s: the chain %s is %d runs long (the most)",
                entry.name,
                ended.id,
                " -> ".join(chain),
                MAX_CHAIN,
            )
            continue
        if entry.name in chain:
            log.info(
                "workflow %s not triggered by run %s: it is already in the chain %s (loop guard)",
                entry.name,
                ended.id,
                " -> ".join(chain),
            )
            continue
        run = {
            "id": ended.id,
            "workflow": ended.workflow,
            "status": str(ended.status),
            "error": ended.error,
        }
        found.append((entry, {"kind": "workflow_run", "run": run, "chain": chain}))
    return found


def rerun_entry(registry: WorkflowRegistry, store: Store, record: RunRecord) -> WorkflowEntry:
    """The workflow version that `record` ran: the loaded one if it is the same, else the
    kept text loaded again; Conflict if that version is gone or no longer loads."""
    current = registry.get(record.workflow)
    if (
        current is not None
        and current.workflow is not None
        and current.content_hash == record.workflow_hash
    ):
        return current
    kept = store.workflow_text(record.workflow_hash)
    if kept is None:
        raise Conflict(
            f"run {record.id}: its version of workflow {record.workflow!r} is no longer kept"
        )
    path, text = kept
    try:
        workflow = load_workflow_text(text, path, import_uses=registry.check_uses is None)
    except WorkflowError as exc:
        raise Conflict(f"run {record.id}: its workflow version no longer loads: {exc}") from None
    return WorkflowEntry(
        path=Path(path), name=workflow.name, content_hash=record.workflow_hash, workflow=workflow
    )


def start_rerun(
    runs: RunManager, registry: WorkflowRegistry, record: RunRecord, *, from_failure: bool
) -> RunRecord:
    """Queue a new run of the version `record` ran, with its trigger data and inputs;
    `from_failure`: resuming it (it gets the journal of `record`'s completed steps)."""
    store = runs.store
    entry = rerun_entry(registry, store, record)
    mark = "resumed_from" if from_failure else "rerun_of"
    new = runs.submit(entry, {**record.trigger, mark: record.id}, record.inputs)
    if from_failure:  # before the new run's order is made: in a task of its own, later
        try:
            steps = store.copy_journal(record.id, new.id)
        except StorageFullError as exc:
            log.warning("run %s: no journal from run %s, it runs whole: %s", new.id, record.id, exc)
        else:
            log.info("run %s resumes run %s: %d completed step(s)", new.id, record.id, steps)
    return new


def keep_versions(registry: WorkflowRegistry, store: Store, names: Iterable[str]) -> None:
    """Keep the text of these workflows' loaded versions; drop versions no run used."""
    for name in names:
        entry = registry.get(name)
        if entry is not None and entry.workflow is not None and entry.workflow.source:
            store.keep_text(entry.content_hash, str(entry.path), entry.workflow.source.text)
    store.prune_texts(e.content_hash for e in registry.workflows())
