"""A run's rlimits (`limits:`): applied in its worker process, and described in errors."""

from __future__ import annotations

import errno
import resource
from collections.abc import Iterable

from tead.errors import TeadError
from tead.spec.models import Limits


def apply_limits(limits: Limits) -> None:
    """Lower this process's rlimits (children inherit them)."""
    if limits.memory is not None:
        _lower(resource.RLIMIT_AS, limits.memory)
    if limits.cpu_time is not None:
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = used.ru_utime + used.ru_stime  # the fork server's start-up counts
        _lower(resource.RLIMIT_CPU, max(1, int(spent + limits.cpu_time + 0.999)))
    if limits.open_files is not None:
        _lower(resource.RLIMIT_NOFILE, limits.open_files)


def _lower(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    # SIGXCPU at the soft CPU limit, SIGKILL a second later at the hard one
    new_hard = (
        value + 1 if which == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY else hard
    )
    resource.setrlimit(which, (value, new_hard))


def describe_limits(limits: Limits) -> str:
    parts = []
    if limits.memory is not None:
        parts.append(f"memory {size_text(limits.memory)}")
    if limits.cpu_time is not None:
        parts.append(f"cpu_time {limits.cpu_time:g} s")
    if limits.open_files is not None:
        parts.append(f"open_files {limits.open_files}")
    return ", ".join(parts)


def size_text(value: int) -> str:
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value} bytes"


def describe_failure(exc: BaseException, limits: Limits) -> str:
    """A run's error line, naming the limit it hit when one explains it."""
    if isinstance(exc, TeadError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}".rstrip(": ")
    causes = list(_chain(exc))
    if limits.memory is not None and any(isinstance(c, MemoryError) for c in causes):
        return f"the run hit its memory limit ({size_text(limits.memory)}): {message}"
    emfile = any(isinstance(c, OSError) and c.errno == errno.EMFILE for c in causes)
    if emfile and limits.open_files is not None:
        return f"the run hit its open_files limit ({limits.open_files}): {message}"
    return message


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """The exception and its causes (a node's error wraps what the node raised)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
