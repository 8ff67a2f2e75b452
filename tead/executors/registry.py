"""Executors by strategy name, as an instance that a composition root (the daemon,
`tead run`, the Python API) builds and hands to its runs.

The built-in strategies and plug-ins share one shape: a factory that receives the
strategy's dependencies (`ExecutorDeps`) and returns a `ParallelExecutor`. A third-party
strategy is a package that declares its factory in the `tead.executors` entry-point group:

    [project.entry-points."tead.executors"]
    gpu = "my_package.executor:make_executor"
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from tead.engine.seam import Kept, KeptAcrossRuns, ParallelExecutor
from tead.errors import DaskClusterError, PluginError, TeadError, UnknownStrategyError
from tead.executors.process import ProcessExecutor
from tead.executors.remote.executor import RemoteExecutor
from tead.executors.thread import ThreadExecutor
from tead.parallel.strategies import DASK_EXTRA_MISSING, ENTRY_POINT_GROUP


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorDeps:
    """What a strategy's factory is given: its name and its settings from the composition
    root (e.g. the daemon's configuration for that strategy)."""

    strategy: str
    settings: Mapping[str, Any] = field(default_factory=dict)


ExecutorFactory = Callable[[ExecutorDeps], ParallelExecutor]


def _thread(deps: ExecutorDeps) -> ParallelExecutor:
    return ThreadExecutor()


def _process(deps: ExecutorDeps) -> ParallelExecutor:
    # A worker's nested fan-outs get a registry of their own, made in the worker.
    return ProcessExecutor(Executors)


def _remote(deps: ExecutorDeps) -> ParallelExecutor:
    # hosts and how to reach them come with each fan-out's settings (`remote:`)
    return RemoteExecutor()


def _dask(deps: ExecutorDeps) -> ParallelExecutor:
    try:
        from tead.executors.dask.executor import DaskExecutor  # deferred: the dask extra
    except ImportError as exc:
        if exc.name is None or exc.name.partition(".")[0] not in ("dask", "distributed"):
            raise
        raise DaskClusterError(DASK_EXTRA_MISSING) from None
    return DaskExecutor()


def _make(strategy: str, factory: ExecutorFactory, deps: ExecutorDeps) -> ParallelExecutor:
    """`factory(deps)`, or PluginError (one line) if it raises or makes no executor (a
    factory's own TeadError is one line already: it is raised as it is)."""
    target = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', factory)}"
    try:
        executor = factory(deps)
    except TeadError:
        raise
    except Exception as exc:
        raise PluginError(strategy, target, exc, failed="cannot make an executor") from exc
    if not isinstance(executor, ParallelExecutor):
        error = TypeError(f"it returned {type(executor).__name__}, not an executor")
        raise PluginError(strategy, target, error, failed="cannot make an executor")
    return executor


BUILTIN_FACTORIES: Mapping[str, ExecutorFactory] = {
    "thread": _thread,
    "process": _process,
    "remote": _remote,
    "dask": _dask,
}


class Executors:
    """Strategies by name: factories (built-in, plug-ins, registered), and the executors
    made from them on first use, closed together.

    A caller that runs many workflows (the daemon, a benchmark, your program) keeps one and
    passes it to every run, so that process pools stay warm across runs.
    """

    def __init__(
        self,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        plugins: bool = True,
    ) -> None:
        self._settings = dict(settings or {})
        self._factories: dict[str, ExecutorFactory] = dict(BUILTIN_FACTORIES)
        self._find_plugins = plugins
        self._found: dict[str, EntryPoint] | None = None  # looked up when first needed
        self._lock = threading.Lock()  # held briefly: never while a plug-in loads or makes
        self._making: dict[str, threading.Lock] = {}  # one per strategy, while it is made
        self._executors: dict[str, ParallelExecutor] = {}

    def register(self, name: str, factory: ExecutorFactory) -> None:
        """Make `factory` the strategy `name` for the runs given this registry."""
        with self._lock:
            self._factories[name] = factory

    def names(self) -> list[str]:
        """Every strategy this registry can make, built-in ones first."""
        with self._lock:
            return list(dict.fromkeys([*self._factories, *self._plugins()]))

    def get(self, strategy: str) -> ParallelExecutor:
        """The executor of `strategy`, made on first use; UnknownStrategyError if none.

        A strategy whose plug-in is slow to load or to make (a cluster to connect to) holds
        up only the runs that wait for that strategy, not the others."""
        with self._lock:
            executor = self._executors.get(strategy)
            if executor is not None:
                return executor
            making = self._making.setdefault(strategy, threading.Lock())
        with making:
            with self._lock:
                executor = self._executors.get(strategy)
            if executor is not None:  # made by another run meanwhile
                return executor
            factory = self._factory(strategy)
            deps = ExecutorDeps(strategy=strategy, settings=self._settings.get(strategy, {}))
            executor = _make(strategy, factory, deps)
            with self._lock:
                self._executors[strategy] = executor
            return executor

    def _factory(self, strategy: str) -> ExecutorFactory:
        """The factory of `strategy`; a plug-in's is loaded (imported) without the lock."""
        with self._lock:
            factory = self._factories.get(strategy)
            if factory is not None:  # built in or registered: no scan of installed packages
                return factory
            plugin = self._plugins().get(strategy)
            known = [*self._factories, *self._plugins()]
        if plugin is None:
            raise UnknownStrategyError(strategy, known)
        try:
            loaded = plugin.load()
        except Exception as exc:
            raise PluginError(strategy, plugin.value, exc) from exc
        if not callable(loaded):
            raise PluginError(strategy, plugin.value, TypeError("it is not callable"))
        made: ExecutorFactory = loaded
        with self._lock:
            return self._factories.setdefault(strategy, made)

    def _plugins(self) -> dict[str, EntryPoint]:
        """The `tead.executors` entry points of installed packages (scanned once, lazily:
        the scan costs milliseconds, and most runs use built-in strategies only)."""
        if self._found is None:
            found = entry_points(group=ENTRY_POINT_GROUP) if self._find_plugins else ()
            self._found = {ep.name: ep for ep in found}
        return self._found

    def end_run(self) -> Kept:
        """A run that used this registry ended, and the process keeps the registry for its
        next runs (a daemon's run worker): executors kept across runs (`KeptAcrossRuns`)
        release what only that run needed and stay; the others are closed. What the kept
        ones keep."""
        with self._lock:
            made = list(self._executors.items())
            self._executors = {n: e for n, e in made if isinstance(e, KeptAcrossRuns)}
        kept = Kept()
        for _, executor in made:
            if isinstance(executor, KeptAcrossRuns):
                kept |= executor.run_ended()
            else:
                executor.close()
        return kept

    def close(self) -> None:
        with self._lock:
            executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            executor.close()

    def __enter__(self) -> Executors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
