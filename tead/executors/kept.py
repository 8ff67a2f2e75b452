"""What an executor kept across runs keeps in its process (`tead.engine.seam.Kept`): the
threads it started (found as the threads that appeared while it connected or ran a
fan-out: a Dask client's IO loop, an SSH event loop), and the packages of the
distribution it connects with (`distributed`, `asyncssh`) and of everything that
requires, with tead's own, so that a run worker does not unload them between runs (a
client whose modules were imported again beside it would meet classes of two copies)."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import re
import threading
from collections.abc import Iterator

from tead.engine.seam import Kept


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def distribution_packages(distribution: str) -> frozenset[str]:
    """The top-level packages of `distribution` and its requirements (transitively,
    extras left out), and `tead`."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = todo.pop()
        if _normal(name) in seen:
            continue
        try:
            found = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(_normal(name))
        for requirement in found.requires or ():
            matched = re.match(r"[A-Za-z0-9_.-]+", requirement)
            if matched is not None and "extra ==" not in requirement:
                todo.append(matched.group(0))
    tops = {
        top
        for top, dists in importlib.metadata.packages_distributions().items()
        if any(_normal(d) in seen for d in dists)
    }
    return frozenset({*tops, "tead"})


def _runs_code_of(thread: threading.Thread, packages: frozenset[str]) -> bool:
    """Whether `thread` runs a function of one of `packages` (not of a run's own code,
    `tead.node.*`, which may start threads while a fan-out runs: those are the run's)."""
    target = getattr(thread, "_target", None)  # threading's: what Thread(target=) runs
    module = getattr(target if target is not None else type(thread).run, "__module__", None)
    if not isinstance(module, str) or module.startswith("tead.node."):
        return False
    return module.partition(".")[0] in packages


class ClientThreads:
    """The threads that appeared while a client of `distribution` was used and that run
    its packages' code (see the module)."""

    def __init__(self, distribution: str) -> None:
        self._distribution = distribution
        self._lock = threading.Lock()
        self._threads: dict[int, threading.Thread] = {}

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        before = {t.ident for t in threading.enumerate()}
        try:
            yield
        finally:
            packages = distribution_packages(self._distribution)
            new = [
                t
                for t in threading.enumerate()
                if t.ident not in before and _runs_code_of(t, packages)
            ]
            with self._lock:
                self._threads.update((t.ident or 0, t) for t in new)

    def kept(self) -> Kept:
        """The threads still running, and the packages the client needs."""
        with self._lock:
            alive = {i: t for i, t in self._threads.items() if t.is_alive()}
            self._threads = alive
        return Kept(
            threads=tuple(alive.values()), packages=distribution_packages(self._distribution)
        )
