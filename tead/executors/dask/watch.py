"""A fan-out's tasks watched on the client's event loop: each batch of submitted tasks is
handed to the loop in one call; as each task ends, the loop says so at once (its room is
free for the next branch) and, if it finished, fetches its result there (fetches under
way are merged: one fetch at a time, of all that finished meanwhile), then hands the
result over. While other watched tasks still run, a fetch first waits `GATHER_WINDOW_S`
for more to finish: each fetch costs the scheduler and the workers a round of messages
(200 no-op branches took 60-110 fetches without waiting, about 10% of their CPU time);
the last running task's result is fetched at once.
Per-future `add_done_callback`s and fetches from other threads cost a call into the loop
and a thread hop each (bench/dask_strategy.py: a no-op branch's cost is mostly these)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from distributed import Client
from distributed import Future as DaskFuture
from distributed.client import done_callback

from tead.executors.dask.worker import Answer


class _HasFuture(Protocol):
    @property
    def future(self) -> DaskFuture[Any]: ...


E = TypeVar("E", bound=_HasFuture)

GATHER_WINDOW_S = 0.01


@dataclass(frozen=True, slots=True)
class Fetched(Generic[E]):
    """A task that ended, with its result (None if it did not finish: cancelled, or
    failed in Dask, e.g. KilledWorker)."""

    entry: E
    answer: Answer | None


class LoopWatch(Generic[E]):
    """Watches entries' futures on `client`'s loop; `ended(entry)` then `fetched(...)`
    are called on the loop for each (they must only hand over, e.g. put in a queue)."""

    def __init__(
        self, client: Client, ended: Callable[[E], None], fetched: Callable[[Fetched[E]], None]
    ) -> None:
        self._client = client
        self._ended = ended
        self._fetched = fetched
        self._tasks: set[asyncio.Future[None]] = set()  # the loop's references are weak
        self._ready: list[E] = []  # finished, to be fetched together
        self._fetching = False  # a fetch is under way (the next one waits for it)
        self._running = 0  # watched tasks that have not ended

    def watch(self, entries: list[E]) -> bool:
        """Watch these (one call into the loop); False if the client is closed."""
        loop = self._client.loop
        if loop is None:
            return False
        loop.add_callback(self._start, entries)
        return True

    def _start(self, entries: list[E]) -> None:
        self._running += len(entries)
        for entry in entries:
            self._keep(done_callback(entry.future, functools.partial(self._done, entry)))

    def _keep(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _done(self, entry: E, future: DaskFuture[Any]) -> None:
        self._running -= 1
        self._ended(entry)
        if future.status != "finished":
            self._fetched(Fetched(entry, None))
            return
        self._ready.append(entry)
        if not self._fetching:
            self._fetching = True
            self._keep(self._fetch())

    async def _fetch(self) -> None:
        """Fetch what finished, in one request, until nothing more did meanwhile."""
        while self._ready:
            if self._running:  # more may finish meanwhile
                await asyncio.sleep(GATHER_WINDOW_S)
            entries, self._ready = self._ready, []
            try:
                answers = await self._client.gather([e.future for e in entries], asynchronous=True)
            except BaseException:  # one was lost meanwhile (its worker died): one at a time
                answers = [await self._fetch_one(entry) for entry in entries]
            for entry, answer in zip(entries, answers, strict=True):
                self._fetched(Fetched(entry, answer))
        self._fetching = False

    async def _fetch_one(self, entry: E) -> Answer:
        try:
            answers = await self._client.gather([entry.future], asynchronous=True)
            answer: Answer = answers[0]
        except BaseException as exc:
            return ("crashed", f"dask: cannot fetch the result: {type(exc).__name__}: {exc}")
        return answer
