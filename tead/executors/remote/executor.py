"""The remote strategy: a fan-out's branches run on SSH hosts, each host through one warm
worker (worker.py) on one long-lived connection (hosts.py).

The executor owns an event loop in a thread of its own and the links to hosts, kept for
its life: every fan-out of a run (and of later runs given the same executor) reuses them.
A fan-out first makes sure each of its hosts is connected (outside any branch's clock),
then hands its tasks to a `RemoteLauncher` (launcher.py) under the shared supervisor, so
timeouts, retries, breakers and `fail_fast` behave as in every other strategy.

Hosts are guarded by breakers named `host:<user@host>` in the run's breaker registry (the
daemon persists them like the others): a host that cannot be reached or whose connection
drops opens its breaker at once (one failure) and is left out until its reset timeout (the
fan-out's `circuit_breaker.reset_timeout`, else 30 s) lets one connection attempt through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import itertools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tead.engine.events import RemoteHost
from tead.engine.seam import FanOutJob, Kept
from tead.errors import RemoteHostError
from tead.executors.kept import distribution_packages
from tead.executors.remote.hosts import HostAddress, HostLink, LinkSettings
from tead.executors.remote.launcher import RemoteLauncher, Slot
from tead.parallel.breaker import BreakerRegistry, CircuitBreaker, Transition
from tead.parallel.config import CircuitBreakerConfig, ParallelFlowResult, RemoteConfig
from tead.parallel.supervisor import supervise

log = logging.getLogger(__name__)

HOST_RESET_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HostStatus:
    """What the executor knows of one host now (for metrics and tests)."""

    label: str
    up: bool
    commands: int
    bundles: int
    error: str | None = None
    bytes_sent: int = 0  # over its current connection


class RemoteExecutor:
    """Runs fan-outs on SSH hosts; see the module docstring."""

    def __init__(self, *, share_base: bool = True) -> None:
        # share_base=False sends every branch its whole state (to measure what sharing saves)
        self._share_base = share_base
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._links: dict[tuple[str, LinkSettings], HostLink] = {}
        self._errors: dict[str, str] = {}  # host label -> why it is down
        self._routes: dict[int, RemoteLauncher] = {}  # task id -> the launcher awaiting it
        self._ids = itertools.count(1)
        self._own_breakers = BreakerRegistry()  # when a run brings none
        self._closed = False
        self._prefix = f"tead-remote-{id(self):x}"  # its threads' names

    # --- the seam ------------------------------------------------------------------------

    def execute(self, job: FanOutJob) -> list[ParallelFlowResult]:
        tasks = job.tasks
        if not tasks:
            return []
        config = job.config.remote
        if config is None:
            raise RemoteHostError("-", "strategy 'remote' needs `remote: {hosts: [...]}`")
        breakers = job.hooks.breakers or self._own_breakers
        cb = job.config.circuit_breaker
        reset_s = cb.reset_timeout if cb is not None else HOST_RESET_TIMEOUT_S
        slots, down = self._connect_all(config, breakers, job.hooks.on_transition, reset_s)
        launcher = RemoteLauncher(
            tasks,
            slots,
            env=_environment(config, os.environ),
            config=job.config,
            replay=job.replay,
            breakers=job.hooks.breakers,
            listening=job.listening,
            register=self._route,
            down=down,
            share_base=self._share_base,
            host_failed=lambda slot, reason: self._host_failed(
                slot, reason, breakers, job.hooks.on_transition
            ),
        )
        try:
            return supervise(tasks, job.config, launcher, job.hooks)
        finally:
            launcher.close()
            if job.emit is not None:
                for slot in slots:
                    label = slot.link.label
                    sent = launcher.sent.get(label, 0)
                    job.emit(RemoteHost(host=label, up=slot.link.alive, commands=sent))
                for label in down:
                    job.emit(RemoteHost(host=label, up=False, commands=0))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            links, self._links = list(self._links.values()), {}
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if links:
            closing = asyncio.run_coroutine_threadsafe(
                _await(
                    lambda: asyncio.gather(
                        *(link.close() for link in links), return_exceptions=True
                    )
                ),
                loop,
            )
            closing.result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def threads(self) -> list[threading.Thread]:
        """The threads this executor runs now (its event loop's, and name resolution's)."""
        return [t for t in threading.enumerate() if t.name.startswith(self._prefix)]

    def run_ended(self) -> Kept:
        """A run ended in a process that keeps this executor for its next runs (a daemon's
        run worker): its connections and the hosts' warm workers stay, with its threads and
        the SSH library's modules (`tead.engine.seam.KeptAcrossRuns`)."""
        return Kept(threads=tuple(self.threads()), packages=distribution_packages("asyncssh"))

    # --- hosts ---------------------------------------------------------------------------

    def hosts(self) -> list[HostStatus]:
        """Every host this executor has tried, and whether it is up now."""
        with self._lock:
            links = list(self._links.values())
            errors = dict(self._errors)
        found = [
            HostStatus(
                label=link.label,
                up=link.alive,
                commands=link.commands,
                bundles=len(link.shipped),
                error=errors.get(link.label),
                bytes_sent=link.bytes_sent,
            )
            for link in links
        ]
        seen = {status.label for status in found}
        found += [
            HostStatus(label=label, up=False, commands=0, bundles=0, error=error)
            for label, error in errors.items()
            if label not in seen
        ]
        return found

    def _connect_all(
        self,
        config: RemoteConfig,
        breakers: BreakerRegistry,
        on_transition: Callable[[Transition], None] | None,
        reset_s: float,
    ) -> tuple[list[Slot], dict[str, str]]:
        """A slot per host whose breaker lets it through, connected (in parallel) if it
        is not yet; hosts that cannot be reached open their breakers. Also why each host
        left out is down."""
        settings = LinkSettings.of(config)
        wanted: list[tuple[HostAddress, int | None, CircuitBreaker]] = []
        down: dict[str, str] = {}
        for index, text in enumerate(config.hosts):
            address = HostAddress.parse(text)
            breaker = breakers.get(
                f"host:{address.label}",
                _host_breaker_config(reset_s, config.host_failure_threshold),
            )
            allowed, change = breaker.allow()
            _tell(on_transition, change)
            if not allowed:
                down[address.label] = (
                    f"remote host {address.label}: its breaker {breaker.name!r} is open"
                    + (f" ({self._errors[address.label]})" if address.label in self._errors else "")
                )
            else:
                capacity = config.slots[index] if index < len(config.slots) else None
                wanted.append((address, capacity, breaker))
        links = [self._link(address, settings) for address, _, _ in wanted]
        pending = [link for link in links if not link.alive]
        if pending:
            outcomes = self._run(
                lambda: asyncio.gather(*(link.ensure() for link in pending), return_exceptions=True)
            )
            failed = dict(zip((id(link) for link in pending), outcomes, strict=True))
        else:
            failed = {}
        slots: list[Slot] = []
        for (address, capacity, breaker), link in zip(wanted, links, strict=True):
            error = failed.get(id(link))
            if isinstance(error, BaseException):
                message = str(error) if isinstance(error, RemoteHostError) else repr(error)
                with self._lock:
                    self._errors[address.label] = message
                down[address.label] = message
                log.warning("%s", message)
                _tell(on_transition, breaker.record_failure())
            else:
                with self._lock:
                    self._errors.pop(address.label, None)
                _tell(on_transition, breaker.record_success())
                slots.append(Slot(link=link, capacity=capacity or link.cpus, breaker=breaker))
            breakers.save(breaker)
        return slots, down

    def _link(self, address: HostAddress, settings: LinkSettings) -> HostLink:
        key = (address.label, settings)
        with self._lock:
            if self._closed:
                raise RuntimeError("the remote executor is closed")
            link = self._links.get(key)
            if link is None or link.lost:  # a lost link: a new one, to a new worker
                link = self._links[key] = HostLink(
                    address, settings, on_message=self._message, on_lost=self._lost
                )
            return link

    def _host_failed(
        self,
        slot: Slot,
        reason: str,
        breakers: BreakerRegistry,
        on_transition: Callable[[Transition], None] | None,
    ) -> None:
        with self._lock:
            self._errors[slot.link.label] = f"remote host {slot.link.label}: {reason}"
        _tell(on_transition, slot.breaker.record_failure())
        breakers.save(slot.breaker)

    # --- messages from hosts (on the loop's thread) ----------------------------------------

    def _route(self, launcher: RemoteLauncher | None, task_id: int | None = None) -> int:
        """A new task id routed to `launcher`; with `task_id`, forget that route."""
        with self._lock:
            if task_id is not None:
                self._routes.pop(task_id, None)
                return task_id
            new = next(self._ids)
            assert launcher is not None
            self._routes[new] = launcher
            return new

    def _message(self, link: HostLink, message: dict[str, Any]) -> None:
        task_id = message.get("id")
        with self._lock:
            launcher = self._routes.get(task_id) if isinstance(task_id, int) else None
        if launcher is not None:
            launcher.answer(link, message)

    def _lost(self, link: HostLink, reason: str) -> None:
        with self._lock:
            launchers = set(self._routes.values())
        for launcher in launchers:
            launcher.lost(link, reason)

    # --- the loop ------------------------------------------------------------------------

    def _run(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run a coroutine on the executor's loop (started on first use) and wait."""
        with self._lock:
            if self._loop is None:
                loop = self._loop = asyncio.new_event_loop()
                # name resolution (a host given by name) runs in threads named like the loop's
                loop.set_default_executor(
                    concurrent.futures.ThreadPoolExecutor(thread_name_prefix=self._prefix)
                )
                self._thread = threading.Thread(
                    target=loop.run_forever, name=self._prefix, daemon=True
                )
                self._thread.start()
            loop = self._loop
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            _await(make), loop
        )
        return future.result()


async def _await(make: Callable[[], Awaitable[Any]]) -> Any:
    """`make()` awaited on the loop that runs this (so its futures belong to that loop)."""
    return await make()


def _host_breaker_config(
    reset_timeout: float = HOST_RESET_TIMEOUT_S, threshold: int = 1
) -> CircuitBreakerConfig:
    return CircuitBreakerConfig(failure_threshold=threshold, reset_timeout=reset_timeout)


def _tell(on_transition: Callable[[Transition], None] | None, change: Transition | None) -> None:
    if change is not None and on_transition is not None:
        on_transition(change)


def _environment(config: RemoteConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables a branch on a host gets: those named in `env_vars.include` that are
    set here and match no `exclude_patterns`."""
    return {
        name: environ[name]
        for name in config.env_include
        if name in environ
        and not any(fnmatch.fnmatchcase(name, p) for p in config.env_exclude_patterns)
    }
