"""The query behind the list of runs (`Store.list_runs`): filters and a page's cursor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tead.daemon.records import RunStatus

COLUMNS = (
    "SELECT id, workflow, workflow_hash, trigger, status, created_at, started_at, finished_at,"
    " error, '{}' AS inputs, NULL AS final_state, NULL AS failure, NULL AS nodes FROM runs"
)


class _Shown(Protocol):
    @property
    def status(self) -> RunStatus: ...


def list_query(
    ends: Mapping[str, _Shown], workflow: str | None, status: str | None, before: str | None
) -> tuple[str, list[Any]]:
    """The SQL (newest first, its LIMIT's value to be appended to the arguments) and its
    arguments. A status filter goes by the status shown: an end still waiting for space to
    be written (`ends`) counts. `before` is a cursor: only runs older than that run in the
    list's order (created_at, then id), found through the created_at indexes; a run id that
    is not there (pruned since) gives an empty page."""
    where: list[str] = []
    args: list[Any] = []
    if workflow is not None:
        where.append("workflow = ?")
        args.append(workflow)
    if status is not None:
        now_is = [i for i, end in ends.items() if end.status == status]
        was = [i for i, end in ends.items() if end.status != status]
        # Plain `status = ?` unless ends wait: it is what the runs_by_status index serves
        # (a rare status among 100 000 runs: ~1 ms, against ~150 ms for a scan).
        clause, args = "status = ?", [*args, status, *was]
        if was:
            clause += f" AND id NOT IN ({', '.join('?' * len(was))})"
        if now_is:
            clause = f"({clause}) OR id IN ({', '.join('?' * len(now_is))})"
            args += now_is
        where.append(f"({clause})")
    if before is not None:
        where.append("(created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?)")
        args.append(before)
    sql = COLUMNS + (" WHERE " + " AND ".join(where) if where else "")
    return sql + " ORDER BY created_at DESC, id DESC LIMIT ?", args
