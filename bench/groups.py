"""Overhead per member of a parallel group's `gather()` against a bare `asyncio.gather`
with a semaphore.

    python bench/groups.py [--members 1000] [--workers 10] [--rounds 30]

Both sides run the same no-op coroutines (an `await asyncio.sleep(0)` each) with the same
concurrency limit, in one event loop, in this run, alternating so that machine noise hits
both. tead's side is a whole group: entering the block, `add` for each member (its task,
its key in contextvars), `gather()` and leaving the block. Goal: at most 3x the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tead


async def member(i: int) -> int:
    await asyncio.sleep(0)
    return i


async def bare(members: int, workers: int) -> None:
    limit = asyncio.Semaphore(workers)

    async def limited(i: int) -> int:
        async with limit:
            return await member(i)

    results = await asyncio.gather(*(limited(i) for i in range(members)))
    assert len(results) == members


async def group(members: int, workers: int) -> None:
    async with tead.parallel(max_workers=workers, name="bench") as g:
        for i in range(members):
            g.add(member(i))
        results = await g.gather()
    assert len(results) == members
    assert results[-1].value == members - 1


async def measure(members: int, workers: int, rounds: int) -> dict[str, float]:
    sides: dict[str, Callable[[int, int], Awaitable[None]]] = {"bare": bare, "group": group}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(3):  # warm-up
        for fn in sides.values():
            await fn(members, workers)
    for _ in range(rounds):
        for name, fn in sides.items():
            started = time.perf_counter()
            await fn(members, workers)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) / members for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    per = asyncio.run(measure(args.members, args.workers, args.rounds))
    ratio = per["group"] / per["bare"]
    print(
        f"{args.members} members, max_workers {args.workers}: "
        f"asyncio.gather + semaphore {per['bare'] * 1e6:.1f} µs/member, "
        f"tead.parallel gather() {per['group'] * 1e6:.1f} µs/member, ratio {ratio:.2f}x "
        f"(goal ≤ 3x)"
    )


if __name__ == "__main__":
    main()
