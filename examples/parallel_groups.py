"""Parallel groups in Python code (`tead.parallel`): gather, gather_dict, stream, a timeout
that keeps finished results, plain functions on threads, a progress display, and a journal
that replays completed members when the script runs again.

    python examples/parallel_groups.py [JOURNAL.sqlite]
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

import tead


async def fetch(page: int) -> dict[str, int]:
    """Stands for a network call: later pages answer sooner."""
    await asyncio.sleep(0.05 * (5 - page))
    return {"page": page, "words": page * 100}


def checksum(text: str) -> str:
    """A plain (blocking) function: it runs on the group's strategy (threads here)."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


async def slow(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


async def main(journal: str | None) -> None:
    with tead.progress_display() as display:  # bars on a terminal, lines when piped
        async with tead.parallel(
            name="pages", max_workers=3, journal=journal, progress=display
        ) as group:
            for page in range(5):
                group.add(fetch, page)  # an async function and its arguments
            results = await group.gather()  # in add order, whatever order they finish in
        words = [r["words"] for r in results]
        ok = sum(r.success for r in results)
        print(f"pages: {ok} ok, words {words}, replayed {group.metrics.replayed}")

        async with tead.parallel(name="sums", strategy="thread", progress=display) as group:
            group.add(checksum, "alpha", name="alpha")
            group.add(checksum, "beta", name="beta")
            sums = {name: r.value for name, r in (await group.gather_dict()).items()}
        print(f"sums: {sums}")

        async with tead.parallel(name="flaky", timeout=0.5, progress=display) as group:
            for seconds in (0.01, 0.02, 0.03, 30):
                group.add(slow(seconds))
            as_completed = [r.value async for r in group.stream()]
        late = [r.branch for r in group.results() if r.timeout]
        print(f"flaky: {as_completed} as completed, timed out: {late}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
