"""A fan-out's base state, sent once to each host that runs its branches, and each branch's
own part over it (the remote form of the process strategy's shared base).

A fan-out's branches share its state (`tead.engine.state.BranchState.over`): a for_each
branch differs from its siblings by its item alone. `SharedBase` (the client) checks the
base once for JSON, encodes it once as a `base` frame named by the sha256 of its JSON, and
gives each task its own part: the values that are not the base's, an item that is an entry
of a base list named by where it is (`entries`) rather than sent. On the host, `HostBases`
(in each of the worker's children) keeps the bases it was sent, rebuilds a task's state
over its base, and leaves out of the branch's reported changes (`StateDelta`) the base
values it took out but left as they were: a branch that only reads a large value does not
send it back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tead.engine.seam import BranchReport
from tead.engine.state import IMMUTABLE, BranchState, EntryRef, StateDelta, entry_index
from tead.engine.task import BranchTask, check_json_state
from tead.executors.remote.protocol import HEADER

#: a task's own values that stand for entries of its base's lists: {key: [list key, index]}
Entries = dict[str, list[Any]]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(eq=False, slots=True)
class SharedBase:
    """The client side: one fan-out's base, encoded once (see the module)."""

    values: Mapping[str, Any]
    digest: str
    frame: bytes  # the `base` message, ready to send
    _entries: dict[int, EntryRef] | None = field(default=None)

    @classmethod
    def of(cls, tasks: Sequence[BranchTask]) -> SharedBase | None:
        """The base the tasks' states were made over, if they share one; StateJsonError
        naming the key (and the first branch) if JSON cannot carry one of its values."""
        first = tasks[0].state if tasks else None
        base = first.base if isinstance(first, BranchState) else None
        if base is None or any(
            not isinstance(t.state, BranchState) or t.state.base is not base for t in tasks
        ):
            return None
        check_json_state(tasks[0].branch, base)
        text = _dumps(dict(base))
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        body = f'{{"kind":"base","digest":"{digest}","state":{text}}}'.encode(
            "utf-8", "surrogatepass"
        )
        return cls(values=base, digest=digest, frame=HEADER.pack(len(body)) + body)

    def own_part(self, task: BranchTask) -> tuple[dict[str, Any], Entries] | None:
        """`task`'s own values over this base, and which of them are entries of base lists
        (by where they are: sent as that, not as values); None if its state was not made
        over this base."""
        state = task.state
        if not isinstance(state, BranchState) or state.base is not self.values:
            return None
        own = state.own_part()
        entries: Entries = {}
        for key, value in own.items():
            if type(value) not in IMMUTABLE:
                if self._entries is None:
                    self._entries = entry_index(self.values)
                ref = self._entries.get(id(value))
                if ref is not None:
                    entries[key] = [ref.key, ref.index]
        return own, entries


class HostBases:
    """The host side (a worker's child): the bases it was sent, by digest."""

    def __init__(self) -> None:
        self._bases: dict[str, dict[str, Any]] = {}
        self._texts: dict[str, dict[str, str]] = {}  # per base: its values' JSON, as needed

    def put(self, digest: str, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError("a base state is an object")
        self._bases[digest] = state

    def drop(self, digest: str) -> None:
        self._bases.pop(digest, None)
        self._texts.pop(digest, None)

    def task_over(
        self, task: BranchTask, digest: Any, entries: Any
    ) -> tuple[BranchTask, dict[str, Any] | None]:
        """The task on its own part with its entries put back, and its base (None for a
        task sent whole); ValueError if its base was not sent or an entry is not in it."""
        if digest is None:
            return task, None
        base = self._bases.get(digest) if isinstance(digest, str) else None
        if base is None:
            raise ValueError(f"the base state {digest!r} of a task was not sent")
        own = dict(task.state)
        for key, where in (entries or {}).items():
            try:
                own[key] = base[where[0]][where[1]]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"a task's entry {key!r} is not in its base state") from None
        return task.with_state(own), base

    def without_unchanged(
        self, report: BranchReport, digest: str, own: Mapping[str, Any]
    ) -> BranchReport:
        """`report` without the base values the branch took out but left as they were
        (the same JSON text)."""
        delta, base = report.delta, self._bases.get(digest)
        if delta is None or base is None:
            return report
        texts = self._texts.setdefault(digest, {})
        same = []
        for name, value in delta.changed.items():
            if name in own or name not in base or type(value) in IMMUTABLE:
                continue
            try:
                if name not in texts:
                    texts[name] = _dumps(base[name])
                if _dumps(value) == texts[name]:
                    same.append(name)
            except (TypeError, ValueError):  # the report's check names what JSON cannot carry
                continue
        if not same:
            return report
        changed = {k: v for k, v in delta.changed.items() if k not in same}
        return replace(report, delta=StateDelta(changed=changed, deleted=delta.deleted))
