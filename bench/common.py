"""Helpers for benchmarks: repeat a callable and report robust statistics."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> list[float]:
    """Seconds per call of `fn`, `repeat` times after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 3, collect: bool = False
) -> dict[str, float]:
    """Median seconds per call of each fn, alternating them so machine noise hits all alike;
    with `collect`, a full garbage collection (untimed) before each call, so that none
    falls into another's time (it matters with large states: it walks all of them)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if collect:
                gc.collect()
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}
