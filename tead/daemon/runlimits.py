"""A run's rlimits (`limits:`): applied in its worker process, and described in errors."""

from __future__ import annotations

import resource

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
