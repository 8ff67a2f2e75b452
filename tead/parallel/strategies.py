"""Which strategy names a workflow may use: the built-in ones and those that installed
packages declare in the `tead.executors` entry-point group; and why a known strategy
cannot be used here. Checked when a workflow loads, without importing any executor."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Collection
from importlib.metadata import entry_points

from tead.parallel.config import ParallelConfig

ENTRY_POINT_GROUP = "tead.executors"
DASK_EXTRA_MISSING = "strategy 'dask' needs the dask extra (install tead[dask])"
BUILTIN_STRATEGIES = ("thread", "process", "remote", "dask")
#: built-in strategies this version of tead does not run yet
_NOT_BUILT: tuple[str, ...] = ()


def plugin_strategies() -> list[str]:
    """The strategy names installed packages declare in the entry-point group, sorted.
    Looked up once per process (reading every installed package's metadata takes
    milliseconds, and each workflow load asks; the daemon's run workers inherit the
    fork server's answer): a plug-in installed while a daemon runs is seen after a
    restart."""
    return list(_installed_plugins())


@functools.cache
def _installed_plugins() -> tuple[str, ...]:
    return tuple(sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}))


def known_strategies() -> list[str]:
    """Every strategy name: the built-in ones first, then plug-ins by name."""
    return list(dict.fromkeys([*BUILTIN_STRATEGIES, *plugin_strategies()]))


def unknown_strategy(name: str, known: list[str]) -> str | None:
    """The problem with a strategy name nobody knows, or None if it is known."""
    if name in known:
        return None
    usable = ", ".join(n for n in known if n not in _NOT_BUILT)
    return f"unknown parallel strategy {name!r} (available: {usable})"


def strategy_problem(
    config: ParallelConfig, known: list[str], provided: Collection[str] = ()
) -> str | None:
    """Why `config.strategy` cannot run here (one line), or None if it can. `provided` are
    the names an executor exists for beyond tead's own (plug-ins, registered factories):
    one of them named `remote` or `dask` is used as it is."""
    name = config.strategy
    if (unknown := unknown_strategy(name, known)) is not None:
        return unknown
    if name == "remote" and config.remote is None:
        return "strategy 'remote' needs `remote: {hosts: [...]}` in its parallel settings"
    if name in provided:
        return None
    if name == "dask" and importlib.util.find_spec("distributed") is None:
        return DASK_EXTRA_MISSING
    if name == "dask" and config.dask is None:
        return "strategy 'dask' needs `dask: {address: ...}` in its parallel settings"
    if name in _NOT_BUILT:
        return f"strategy {name!r} is not available in this version of tead (use thread or process)"
    return None
