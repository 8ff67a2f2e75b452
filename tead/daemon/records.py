"""What the daemon records of a run."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


def new_run_id() -> str:
    """Sortable by creation time (milliseconds, hex) and unique (random suffix)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    id: str
    workflow: str
    workflow_hash: str
    trigger: dict[str, Any]
    status: RunStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    final_state: dict[str, Any] | None = None
    branches: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None  # where and why it failed (tead.daemon.failure)
    nodes: list[dict[str, Any]] = field(default_factory=list)  # each node's status, timings

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        """The run as the API shows it (`full`: with final state, branch results and
        failure details)."""
        data: dict[str, Any] = {
            "id": self.id,
            "workflow": self.workflow,
            "workflow_hash": self.workflow_hash,
            "trigger": self.trigger,
            "status": str(self.status),
            "created_at": iso_utc(self.created_at),
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "error": self.error,
        }
        if full:
            data["inputs"] = self.inputs
            data["final_state"] = self.final_state
            data["branches"] = self.branches
            data["failure"] = self.failure
            data["nodes"] = self.nodes
        return data


def iso_utc(moment: datetime | None) -> str | None:
    """`2026-01-02T03:04:05.678Z`, the one timestamp format of the API."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None
