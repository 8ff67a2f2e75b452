"""Replaying parallel groups from a journal (a real SQLite file): recorded members come back
in add order, each with its own result, and only the missing ones run."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import tead
from tests.fakes import settle


async def _reverse_group(journal: Path, runs: list[str], tag: str, n: int = 5) -> list[Any]:
    """A group whose members finish in reverse add order (the last added first)."""
    release = [asyncio.Event() for _ in range(n)]

    async def member(i: int) -> dict[str, Any]:
        runs.append(f"{tag}{i}")
        await release[i].wait()
        if i > 0:
            release[i - 1].set()
        return {"member": i, "run": tag, "key": tead.current_key()}

    async with tead.parallel(name="rev", journal=journal, max_workers=n) as group:
        for i in range(n):
            group.add(member, i)
        await settle()
        release[-1].set()
        return [r.value for r in await group.gather()]


def test_replay_returns_each_members_own_result_in_add_order(tmp_path: Path) -> None:
    """Members recorded while finishing in reverse order are replayed under their own keys:
    no member ever gets a sibling's result, and nothing runs again."""
    journal = tmp_path / "journal.sqlite"
    runs: list[str] = []
    first = asyncio.run(_reverse_group(journal, runs, "a"))
    assert first == [{"member": i, "run": "a", "key": f"rev/{i}"} for i in range(5)]
    assert runs == [f"a{i}" for i in range(5)]

    second = asyncio.run(_reverse_group(journal, runs, "b"))
    assert second == first  # recorded results, each its own, in add order
    assert runs == [f"a{i}" for i in range(5)]  # nothing ran again
    with sqlite3.connect(journal) as db:
        keys = sorted(row[0] for row in db.execute("SELECT key FROM group_results"))
    assert keys == [f"rev/{i}" for i in range(5)]


def test_replay_runs_only_the_members_that_did_not_complete(tmp_path: Path) -> None:
    """A first run that timed out for two members, then a re-run: the three recorded ones
    come back, the two missing (and a failed one) run; nested groups replay too."""
    journal = tmp_path / "j.sqlite"
    calls: list[str] = []

    async def member(name: str, ok: bool) -> str:
        calls.append(name)
        if not ok:
            await asyncio.sleep(30)
        return f"{name} done"

    async def inner(outer: int) -> list[Any]:
        async with tead.parallel(name="inner") as group:
            group.add(member, f"inner{outer}", True)
            return [r.value for r in await group.gather()]

    async def job(first: bool) -> list[Any]:
        async with tead.parallel(name="job", journal=journal, timeout=1.0) as group:
            group.add(member, "a", True, name="a")
            group.add(member, "b", not first, name="b")
            group.add(member, "c", True, name="c")
            group.add(member, "d", not first, name="d")
            group.add(inner, 0, name="nested")
            return [r.value for r in await group.gather()]

    assert asyncio.run(job(first=True)) == ["a done", None, "c done", None, ["inner0 done"]]
    assert sorted(calls) == ["a", "b", "c", "d", "inner0"]
    calls.clear()
    assert asyncio.run(job(first=False)) == [
        "a done",
        "b done",
        "c done",
        "d done",
        ["inner0 done"],
    ]
    assert sorted(calls) == ["b", "d"]


def test_values_json_cannot_carry_exactly_are_not_journaled(tmp_path: Path) -> None:
    """A tuple would come back as a list: such a member runs again instead."""
    journal = tmp_path / "j.sqlite"
    calls = 0

    async def pair() -> tuple[int, int]:
        nonlocal calls
        calls += 1
        return (1, 2)

    async def job() -> Any:
        async with tead.parallel(journal=journal) as group:
            group.add(pair)
            return (await group.gather())[0].value

    assert asyncio.run(job()) == (1, 2)
    assert asyncio.run(job()) == (1, 2)
    assert calls == 2


def test_a_journal_object_can_be_shared(tmp_path: Path) -> None:
    journal = tead.SqliteJournal(tmp_path / "shared.sqlite")

    async def job() -> tead.GroupMetrics:
        async with tead.parallel(name="s", journal=journal) as group:
            group.add(asyncio.sleep, 0, result=7)
            await group.gather()
        return group.metrics

    try:
        assert asyncio.run(job()).replayed == 0
        assert asyncio.run(job()).replayed == 1
        assert journal.keys() == ["s/0"]
        assert journal.get("s/0") == tead.ParallelFlowResult(
            branch="s/0", success=True, value=7, timing_ms=journal.get("s/0").timing_ms
        )
    finally:
        journal.close()
