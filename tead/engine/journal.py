"""A run's journal of completed steps, for resuming a failed or interrupted run.

Each completed step is recorded under a deterministic key, never by completion order:
`node:<path>/<node>#<visit>` for a node that returned (its update, `<visit>` counting the
node's runs in its scope, for loops; no path on the main path), and `branch:<path>` for a
fan-out branch that succeeded (`<path>` is its parent's path and its name, `fetch[2]` for
the third `for_each` item), as what it changed in the fan-out's state (`{changed,
deleted}`: a wide fan-out does not record the shared state once per branch). A resumed
run gets the journal of the run it resumes (`done`): a node or branch found there is not
executed again, its recorded result is used instead. Lookups read `done` only, never
what this run records, so a retried branch runs again within a run. A step whose result
has no strict JSON form is not recorded (it runs again when resumed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tead.engine.state import BranchState
from tead.parallel.config import ParallelFlowResult

Record = Callable[[str, Any], None]


def node_key(path: str, node: str, visit: int) -> str:
    return f"node:{path}/{node}#{visit}" if path else f"node:{node}#{visit}"


def branch_key(path: str) -> str:
    return f"branch:{path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Journal:
    """What an earlier run completed (`done`) and where this run's steps are recorded."""

    done: Mapping[str, Any] = field(default_factory=dict)
    record: Record | None = None
    kept: set[str] = field(default_factory=set, repr=False)  # keys recorded by this run

    def node(self, key: str) -> dict[str, Any] | None:
        """The recorded update of a completed node, or None."""
        found = self.done.get(key)
        return dict(found) if isinstance(found, dict) else None

    def branch(self, path: str, name: str, base: Mapping[str, Any]) -> ParallelFlowResult | None:
        """The recorded result of a branch that succeeded (over its fan-out's state
        `base`), or None."""
        found = self.done.get(branch_key(path))
        if not isinstance(found, dict) or not isinstance(found.get("changed"), dict):
            return None
        state = BranchState.over(base, found["changed"])
        for key in found.get("deleted") or ():
            dict.pop(state, key, None)
        return ParallelFlowResult(branch=name, success=True, state=state)

    def node_done(self, key: str, update: Mapping[str, Any] | None) -> None:
        self._keep(key, dict(update or {}))

    def branch_done(self, path: str, result: ParallelFlowResult, base: Mapping[str, Any]) -> None:
        state = result.state
        if not result.success or state is None or self.record is None:
            return
        values = state.raw() if isinstance(state, BranchState) else dict(state)
        changed = {k: v for k, v in values.items() if k not in base or base[k] is not v}
        deleted = [k for k in base if k not in values]
        self._keep(branch_key(path), {"changed": changed, "deleted": deleted})

    def _keep(self, key: str, value: Any) -> None:
        if self.record is None or key in self.kept:
            return
        try:  # strict JSON only: what is replayed must be what was recorded
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return
        self.kept.add(key)
        self.record(key, value)
