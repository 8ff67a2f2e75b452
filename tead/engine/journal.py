"""A run's journal of completed steps, for resuming a failed or interrupted run.

Each completed step is recorded under a deterministic key, never by completion order:
`node:<node>#<visit>` for a node of the run's main path that returned (its update,
`<visit>` counting the node's runs, for loops; a node inside a branch is recorded with its
whole branch, never alone: its input is the branch's), and `branch:<path>@<input>`
for a fan-out branch that succeeded (`<path>` is its parent's path and its name, `fetch[2]`
for the third `for_each` item; `<input>` a digest of what it started from: the fan-out's
state and its item, so that a branch whose input changed since, because a node before it
ran again and gave another list, runs again rather than take a sibling's or an old
result; a branch whose input has no stable text form is neither recorded nor replayed),
as what it changed in the fan-out's state (`{changed,
deleted}`: a wide fan-out does not record the shared state once per branch). A resumed
run gets the journal of the run it resumes (`done`): a node or branch found there is not
executed again, its recorded result is used instead. Lookups read `done` only, never
what this run records, so a retried branch runs again within a run. A step whose result
has no strict JSON form is not recorded (it runs again when resumed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tead.engine.state import BranchState
from tead.parallel.config import ParallelFlowResult

Record = Callable[[str, Any], None]
#: what a re-run's trigger adds to its run's (`tead runs rerun`): not a branch's input
RUN_MARKS = frozenset({"rerun_of", "resumed_from"})


def node_key(path: str, node: str, visit: int) -> str:
    return f"node:{path}/{node}#{visit}" if path else f"node:{node}#{visit}"


def input_digest(base: Mapping[str, Any]) -> str | None:
    """A digest of a fan-out's state (once per fan-out), or None if it has no stable text
    form (a value whose repr changes from run to run only makes its branches run again)."""
    values = base.raw() if isinstance(base, BranchState) else dict(base)
    trigger = values.get("trigger")
    if isinstance(trigger, dict) and RUN_MARKS & trigger.keys():  # where a re-run came from
        values["trigger"] = {k: v for k, v in trigger.items() if k not in RUN_MARKS}
    return _digest(values)


def branch_key(path: str, base_digest: str | None, item: Any) -> str | None:
    """A branch's key: its path and a digest of its input (the fan-out's state's digest
    and its item), or None if that input has no stable text form."""
    if base_digest is None or (digest := _digest([base_digest, item])) is None:
        return None
    return f"branch:{path}@{digest}"


def _digest(value: Any) -> str | None:
    try:
        text = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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

    def branch(
        self, key: str | None, name: str, base: Mapping[str, Any]
    ) -> ParallelFlowResult | None:
        """The recorded result of a branch that succeeded (over its fan-out's state
        `base`), or None."""
        found = self.done.get(key) if key is not None else None
        if not isinstance(found, dict) or not isinstance(found.get("changed"), dict):
            return None
        state = BranchState.over(base, found["changed"])
        for gone in found.get("deleted") or ():
            dict.pop(state, gone, None)
        return ParallelFlowResult(branch=name, success=True, state=state)

    def node_done(self, key: str, update: Mapping[str, Any] | None) -> None:
        self._keep(key, dict(update or {}))

    def branch_done(
        self, key: str | None, result: ParallelFlowResult, base: Mapping[str, Any]
    ) -> None:
        state = result.state
        if key is None or not result.success or state is None or self.record is None:
            return
        values = state.raw() if isinstance(state, BranchState) else dict(state)
        changed = {k: v for k, v in values.items() if k not in base or base[k] is not v}
        deleted = [k for k in base if k not in values]
        self._keep(key, {"changed": changed, "deleted": deleted})

    def _keep(self, key: str, value: Any) -> None:
        if self.record is None or key in self.kept:
            return
        try:  # strict JSON only: what is replayed must be what was recorded
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return
        self.kept.add(key)
        self.record(key, value)
