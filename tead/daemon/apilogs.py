"""The HTTP API of run logs (`GET /api/v1/runs/{id}/logs`), and run ids given as a prefix.

`?follow=1` streams the lines as NDJSON (one JSON object per line, `application/x-ndjson`)
as they are stored (about every quarter of a second), and ends once the run has ended and
its last line was sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException

from tead.daemon.logstore import AmbiguousRunId
from tead.daemon.records import iso_utc
from tead.daemon.store import Store

FOLLOW_POLL_S = 0.25


class _Daemon(Protocol):
    @property
    def store(self) -> Store: ...


def resolve_run_id(store: Store, run_id: str) -> str:
    """The full id of the run that `run_id` is the id or a unique prefix of; an HTTP error
    (404: none, 400: several) otherwise."""
    try:
        found = store.resolve_run_id(run_id)
    except AmbiguousRunId as exc:
        raise HTTPException(400, str(exc)) from None
    if found is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return found


def log_entries(
    batches: Iterable[tuple[int, list[list[Any]]]], node: str | None
) -> list[dict[str, Any]]:
    """Stored batches as the API shows their lines (only `node`'s, if given), in time order
    (a run's Python output and its descriptors' output arrive in separate batches)."""
    groups = [group for _, batch in batches for group in batch if node in (None, group[1])]
    groups.sort(key=lambda group: group[0])  # stable: a batch's order is kept
    entries = []
    for ts, line_node, branch, stream, text in groups:
        when = iso_utc(datetime.fromtimestamp(ts, UTC))
        entries += [
            {"ts": when, "node": line_node, "branch": branch, "stream": stream, "line": line}
            for line in text.split("\n")  # lines written together are stored together
        ]
    return entries


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def add_log_routes(app: FastAPI, daemon: _Daemon) -> None:
    @app.get("/api/v1/runs/{run_id}/logs")
    async def logs(run_id: str, node: str | None = None, follow: bool = False) -> Response:
        store = daemon.store
        node = node or None  # `?node=` (empty): no filter
        full_id = await asyncio.to_thread(resolve_run_id, store, run_id)
        if not follow:
            batches = await asyncio.to_thread(store.read_logs, full_id)
            return Response(_encode(log_entries(batches, node)), media_type="application/json")
        return StreamingResponse(_follow(store, full_id, node), media_type="application/x-ndjson")


async def _follow(store: Store, run_id: str, node: str | None) -> AsyncIterator[bytes]:
    """The run's lines as NDJSON, as they come, until the run has ended. A run's lines are
    all stored before its end is: once it is seen ended, one more read has the rest."""
    after = -1
    while True:
        status = store.run_status(run_id)
        ended = status is None or status.finished
        batches = await asyncio.to_thread(store.read_logs, run_id, after)
        if batches:
            after = batches[-1][0]
            entries = log_entries(batches, node)
            if entries:
                yield b"".join(_encode(entry) + b"\n" for entry in entries)
        if ended:
            return
        await asyncio.sleep(FOLLOW_POLL_S)
