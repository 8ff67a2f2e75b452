"""Where a parallel group stands: the key of the member running now, carried in a
`contextvars.ContextVar` (each asyncio task has its own copy, so a member never sees a
sibling's key), what nested groups inherit, and the async clock groups keep time with.

Keys are deterministic: `parent/group/name-or-index`. The k-th group named `g` opened in
the same member (or, at the top, the same task) is `g`, then `g#2`, `g#3`...
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from tead.parallel.breaker import BreakerRegistry
from tead.parallel.journal import Journal
from tead.parallel.members import GroupListener


class AsyncClock(Protocol):
    """A group's time: monotonic seconds and an awaitable sleep (tests pass a fake)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The real clock: the event loop's time and `asyncio.sleep`."""

    #: the event loop's own clock (`loop.time()` is `time.monotonic()`), without a lookup
    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(slots=True, kw_only=True)
class Scope:
    """What a member (or the top of a task) passes to the groups opened inside it."""

    key: str  # the member's key; "" at the top
    breakers: BreakerRegistry | None = None
    journal: Journal | None = None
    listener: GroupListener | None = None
    opened: dict[str, int] = field(default_factory=dict)  # group name -> groups opened

    def child_key(self, name: str) -> str:
        """The key of the next group named `name` opened here."""
        count = self.opened.get(name, 0) + 1
        self.opened[name] = count
        own = name if count == 1 else f"{name}#{count}"
        return f"{self.key}/{own}" if self.key else own


_CURRENT: ContextVar[Scope | None] = ContextVar("tead_group_scope", default=None)


def current_scope() -> Scope:
    """The scope of the running member; at the top of a task, that task's own (made and set
    in its context on first use, so consecutive groups of one task are numbered)."""
    scope = _CURRENT.get()
    if scope is None:
        scope = Scope(key="")
        _CURRENT.set(scope)
    return scope


def enter_member(scope: Scope, listener: GroupListener | None) -> None:
    """Make `scope` (told of `listener`) the current one, inside a member's own task."""
    scope.listener = listener
    _CURRENT.set(scope)


def current_key() -> str:
    """The key of the group member running now (`parent/group/name-or-index`), or "" outside
    any group."""
    scope = _CURRENT.get()
    return scope.key if scope is not None else ""
