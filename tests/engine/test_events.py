"""Events: one typed value per kind, one JSON encoding (today's `--stream` lines), its exact
inverse, typed events for sinks, and the same events from every strategy."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tead
from tead.cli.progress import describe
from tead.engine.events import (
    EVENT_TYPES,
    BranchFinished,
    BranchRetry,
    BranchStarted,
    CircuitChanged,
    DaskRerun,
    Event,
    FanIn,
    FanOutStarted,
    NodeFinished,
    NodeStarted,
    RemoteHost,
    RunFinished,
    RunStarted,
    event_from_json,
)
from tead.jsonable import dumps
from tead.parallel.breaker import CircuitState

ROOT = Path(__file__).resolve().parents[2]
TS = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
TS_TEXT = "2026-01-02T03:04:05.678Z"

# One event of every kind (both variants where a field exists for one status only) and
# its JSON encoding, keys in the order `--stream` has always printed them.
SAMPLES: list[tuple[Event, dict[str, Any]]] = [
    (
        RunStarted(ts=TS, workflow="wf", entry="__start__", exit="__end__"),
        {"workflow": "wf", "entry": "__start__", "exit": "__end__"},
    ),
    (
        RunFinished(ts=TS, status="succeeded", duration_ms=12.5, state={"n": 1, "xs": [1]}),
        {"status": "succeeded", "duration_ms": 12.5, "state": {"n": 1, "xs": [1]}},
    ),
    (
        RunFinished(ts=TS, status="failed", error="node 'a' failed: X", duration_ms=3.0),
        {"status": "failed", "error": "node 'a' failed: X", "duration_ms": 3.0},
    ),
    (NodeStarted(ts=TS, node="a", path="b[0]/c"), {"node": "a", "path": "b[0]/c"}),
    (
        NodeFinished(ts=TS, node="a", path="", status="succeeded", duration_ms=0.0),
        {"node": "a", "path": "", "status": "succeeded", "duration_ms": 0.0},
    ),
    (
        NodeFinished(
            ts=TS, node="a", path="x", status="failed", error="ValueError: v", duration_ms=1.25
        ),
        {
            "node": "a",
            "path": "x",
            "status": "failed",
            "error": "ValueError: v",
            "duration_ms": 1.25,
        },
    ),
    (
        FanOutStarted(
            ts=TS, node="s", fan_in="j", path="", strategy="process", branches=("a", "b")
        ),
        {"node": "s", "fan_in": "j", "path": "", "strategy": "process", "branches": ["a", "b"]},
    ),
    (
        BranchStarted(ts=TS, node="s", fan_in="j", path="a", branch="a", strategy="thread"),
        {"node": "s", "fan_in": "j", "path": "a", "branch": "a", "strategy": "thread"},
    ),
    (
        BranchRetry(ts=TS, path="a", branch="a", attempt=2, delay_s=0.01, error="OSError: x"),
        {"path": "a", "branch": "a", "attempt": 2, "delay_s": 0.01, "error": "OSError: x"},
    ),
    (
        BranchFinished(
            ts=TS,
            node="s",
            fan_in="j",
            path="a",
            branch="a",
            strategy="thread",
            success=True,
            error=None,
            error_type=None,
            timeout=False,
            retry_count=0,
            timing_ms=4.5,
        ),
        {
            "node": "s",
            "fan_in": "j",
            "path": "a",
            "branch": "a",
            "strategy": "thread",
            "success": True,
            "error": None,
            "error_type": None,
            "timeout": False,
            "retry_count": 0,
            "timing_ms": 4.5,
        },
    ),
    (
        BranchFinished(
            ts=TS,
            node="s",
            fan_in="j",
            path="a/b",
            branch="b",
            strategy="process",
            success=False,
            error="branch timed out after 1 s",
            error_type="TimeoutError",
            timeout=True,
            retry_count=2,
            timing_ms=1000.0,
        ),
        {
            "node": "s",
            "fan_in": "j",
            "path": "a/b",
            "branch": "b",
            "strategy": "process",
            "success": False,
            "error": "branch timed out after 1 s",
            "error_type": "TimeoutError",
            "timeout": True,
            "retry_count": 2,
            "timing_ms": 1000.0,
        },
    ),
    (
        FanIn(ts=TS, node="j", path="", branches=3, failed=1),
        {"node": "j", "path": "", "branches": 3, "failed": 1},
    ),
    (
        CircuitChanged(ts=TS, name="wf:a", old=CircuitState.CLOSED, new=CircuitState.OPEN),
        {"name": "wf:a", "old": "closed", "new": "open"},
    ),
    (
        RemoteHost(ts=TS, host="worker@10.0.0.11", up=True, commands=4),
        {"host": "worker@10.0.0.11", "up": True, "commands": 4},
    ),
    (
        DaskRerun(ts=TS, path="work[1]", worker="tcp://10.0.0.12:40001"),
        {"path": "work[1]", "worker": "tcp://10.0.0.12:40001"},
    ),
]


def _ids() -> list[str]:
    return [f"{event.kind}-{index}" for index, (event, _) in enumerate(SAMPLES)]


def test_the_samples_cover_every_kind() -> None:
    """Adding a kind without a sample here fails (and so gets its encoding tested)."""
    assert {event.kind for event, _ in SAMPLES} == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == 12


@pytest.mark.parametrize(("event", "fields"), SAMPLES, ids=_ids())
def test_to_json_is_the_stream_encoding(event: Event, fields: dict[str, Any]) -> None:
    """`event`, `ts` (UTC, milliseconds, `Z`), then the fields in their usual order."""
    expected = {"event": event.kind, "ts": TS_TEXT, **fields}
    assert list(event.to_json().items()) == list(expected.items())


@pytest.mark.parametrize(("event", "fields"), SAMPLES, ids=_ids())
def test_event_from_json_inverts_to_json_through_json_text(
    event: Event, fields: dict[str, Any]
) -> None:
    """An event sent as a JSON line and decoded is the same event, field types included."""
    decoded = event_from_json(json.loads(dumps(event.to_json())))
    assert decoded == event
    assert type(decoded) is type(event)
    for item in dataclasses.fields(decoded):
        assert type(getattr(decoded, item.name)) is type(getattr(event, item.name)), item.name


def test_a_state_with_values_json_converts_is_re_sent_byte_for_byte() -> None:
    """A final state holding sets, tuples, dates and paths: decoded and encoded again, the
    line is the one first sent (what a parent re-emitting a worker's event relies on)."""
    state = {
        "tags": {"b"},
        "pair": (1, "x"),
        "day": date(2020, 1, 2),
        "at": datetime(2020, 1, 2, 3, 4, tzinfo=UTC),
        "file": Path("/tmp/x"),
        "nested": {"inner": [(1, 2)], "none": None, "text": "é"},
    }
    event = RunFinished(ts=TS, status="succeeded", duration_ms=1.0, state=state)
    line = dumps(event.to_json())
    decoded = event_from_json(json.loads(line))
    assert dumps(decoded.to_json()) == line
    assert isinstance(decoded, RunFinished) and decoded.state is not None
    assert decoded.state["tags"] == ["b"] and decoded.state["day"] == "2020-01-02"


def test_ts_is_aware_utc_at_millisecond_precision() -> None:
    """Another zone is converted to UTC, microseconds are cut to the encoding's precision,
    and a naive time is refused."""
    plus_two = timezone(timedelta(hours=2))
    event = NodeStarted(
        ts=datetime(2026, 1, 2, 5, 4, 5, 678999, tzinfo=plus_two), node="a", path=""
    )
    assert event.ts == TS and event.ts.tzinfo is UTC
    assert event_from_json(event.to_json()) == event
    assert NodeStarted(node="a", path="").ts.tzinfo is UTC  # now, by default
    with pytest.raises(ValueError, match="time-zone aware"):
        NodeStarted(ts=datetime(2026, 1, 2), node="a", path="")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"event": "node_begun", "ts": TS_TEXT}, "unknown kind 'node_begun'"),
        ({"ts": TS_TEXT, "node": "a"}, "unknown kind None"),
        ({"event": "node_started", "ts": TS_TEXT, "node": "a"}, r"missing fields \['path'\]"),
        ({"event": "node_started", "node": "a", "path": ""}, r"missing fields \['ts'\]"),
        (
            {"event": "fan_in", "ts": TS_TEXT, "node": "j", "path": "", "branches": 1},
            r"missing fields \['failed'\]",
        ),
        (
            {"event": "node_started", "ts": TS_TEXT, "node": "a", "path": "", "x": 1},
            r"unknown fields \['x'\]",
        ),
        ({"event": "node_started", "ts": "2026-01-02T03:04:05", "node": "a", "path": ""}, "zone"),
        (
            {"event": "circuit_changed", "ts": TS_TEXT, "name": "n", "old": "shut", "new": "open"},
            "'shut' is not a valid CircuitState",
        ),
        # values of the wrong type (what a host might send): refused, not passed on
        ({"event": "node_started", "ts": 5, "node": "a", "path": ""}, r"wrong type \['ts'\]"),
        ({"event": "node_started", "ts": TS_TEXT, "node": 5, "path": None}, r"\['node', 'path'\]"),
        (
            {
                "event": "fan_in",
                "ts": TS_TEXT,
                "node": "j",
                "path": "",
                "branches": "2",
                "failed": True,
            },
            r"wrong type \['branches', 'failed'\]",
        ),
        (
            {
                "event": "run_finished",
                "ts": TS_TEXT,
                "status": "done",
                "duration_ms": 1,
                "state": [],
            },
            r"wrong type \['state', 'status'\]",
        ),
        (
            {
                "event": "fanout_started",
                **{"ts": TS_TEXT, "node": "s", "fan_in": "j", "path": "", "strategy": "thread"},
                "branches": ["a", 1],
            },
            r"wrong type \['branches'\]",
        ),
    ],
)
def test_event_from_json_refuses_what_no_event_encodes_to(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        event_from_json(data)


def test_events_are_frozen() -> None:
    event = NodeStarted(node="a", path="")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.node = "b"  # type: ignore[misc]


def test_progress_describes_typed_events() -> None:
    """The plain progress lines read the events' attributes."""
    lines = [describe(event) for event, _ in SAMPLES]
    assert lines == [
        "run wf started",
        "run succeeded in 12.5 ms",
        "run failed after 3.0 ms: node 'a' failed: X",
        None,
        "node a done in 0.0 ms",
        "node a [x] failed: ValueError: v",
        "fan-out at s: 2 branches (process) -> j",
        None,
        "branch a failed (OSError: x); attempt 2 in 0.010 s",
        "branch a ok (4.5 ms)",
        "branch a/b failed: TimeoutError: branch timed out after 1 s (1000.0 ms)",
        "fan-in j: 3 results, 1 failed",
        None,
        None,
        None,
    ]


# --- the engine's sinks -------------------------------------------------------------------


def _fan_out_graph() -> tead.Graph:
    graph = tead.Graph("typed")
    graph.add_node("split")
    graph.add_node("a", lambda state: {"a": 1})
    graph.add_node("join", lambda state, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge("split", ["a"], fan_in="join")
    graph.add_edge("a", "join")
    return graph


def test_invoke_gives_sinks_typed_events_and_stream_their_json() -> None:
    """`invoke(on_event=...)` receives typed events; `stream()` yields each one's
    `to_json()`, the same kinds in the same order."""
    typed: list[Event] = []
    final = _fan_out_graph().compile().invoke(on_event=typed.append)
    assert final["n"] == 1
    assert all(isinstance(event, tuple(EVENT_TYPES.values())) for event in typed)
    assert [type(event) for event in typed] == [
        RunStarted,
        NodeStarted,
        NodeFinished,
        FanOutStarted,
        BranchStarted,
        NodeStarted,
        NodeFinished,
        BranchFinished,
        FanIn,
        NodeStarted,
        NodeFinished,
        RunFinished,
    ]
    streamed = list(_fan_out_graph().compile().stream())
    assert all(type(event) is dict for event in streamed)
    assert [e["event"] for e in streamed] == [event.kind for event in typed]
    assert [event_from_json(e).kind for e in streamed] == [event.kind for event in typed]


# --- the same events from every strategy -------------------------------------------------

PARITY_WORKFLOW = """
name: parity
settings:
  parallel: {strategy: STRATEGY, max_workers: 2}
initial_state: {n: 1}
nodes:
  - name: src
  - name: a1
    run: |
      return {"a": state["n"] + 1}
  - name: a2
    run: |
      return {"a": state["a"] * 10}
  - name: b1
    run: |
      return {"b": state["n"] + 2}
  - name: b2
    run: |
      return {"b": state["b"] * 10}
  - name: c1
  - name: x
    run: |
      return {"x": 1}
  - name: y
    run: |
      return {"y": 2}
  - name: c2
    run: |
      return {"c": [r.state["x" if r.branch == "x" else "y"] for r in parallel_results]}
  - name: join
    run: |
      return {"out": [r.state.get("a") or r.state.get("b") or r.state.get("c")
                      for r in parallel_results]}
edges:
  - {from: src, to: [a1, b1, c1], parallel: true, fan_in: join}
  - {from: a1, to: a2}
  - {from: a2, to: join}
  - {from: b1, to: b2}
  - {from: b2, to: join}
  - {from: c1, to: [x, y], parallel: true, fan_in: c2}
  - {from: x, to: c2}
  - {from: y, to: c2}
  - {from: c2, to: join}
"""

Trail = dict[str, list[tuple[str, str]]]


def _where(event: Event) -> tuple[str, str]:
    """(path the event belongs to, node or branch it names)."""
    match event:
        case RunStarted() | RunFinished():
            return "", ""
        case CircuitChanged():
            return "", event.name
        case BranchStarted() | BranchFinished() | BranchRetry():
            return event.path, event.branch
        case _:
            return event.path, event.node


def _trail(events: list[Event]) -> Trail:
    """Per path, the kinds and node/branch names of its events, in the order they came."""
    trail: Trail = defaultdict(list)
    for event in events:
        path, name = _where(event)
        trail[path].append((event.kind, name))
    return dict(trail)


@pytest.fixture(scope="module")
def trails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trail]:
    """`tead run --stream` of PARITY_WORKFLOW under thread and process: each line decoded."""
    folder = tmp_path_factory.mktemp("parity")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    found: dict[str, Trail] = {}
    for strategy in ("thread", "process"):
        path = folder / f"{strategy}.yaml"
        path.write_text(textwrap.dedent(PARITY_WORKFLOW).replace("STRATEGY", strategy))
        proc = subprocess.run(
            [sys.executable, "-m", "tead", "run", str(path), "--stream"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        events = [event_from_json(json.loads(line)) for line in proc.stdout.splitlines()]
        final = events[-1]
        assert isinstance(final, RunFinished) and final.state is not None
        assert final.state["out"] == [20, 30, [1, 2]]
        found[strategy] = _trail(events)
    return found


def test_the_thread_trail_is_the_expected_one(trails: dict[str, Trail]) -> None:
    """What the parity test compares against: every node of every branch, in order."""

    def branch(name: str, *nodes: str) -> list[tuple[str, str]]:
        steps = [(kind, node) for node in nodes for kind in ("node_started", "node_finished")]
        return [("branch_started", name), *steps, ("branch_finished", name)]

    thread = trails["thread"]
    assert thread["a1"] == branch("a1", "a1", "a2")
    assert thread["b1"] == branch("b1", "b1", "b2")
    assert thread["c1/x"] == branch("x", "x")
    assert thread["c1/y"] == branch("y", "y")
    assert thread["c1"] == [
        ("branch_started", "c1"),
        ("node_started", "c1"),
        ("node_finished", "c1"),
        ("fanout_started", "c1"),
        ("fan_in", "c2"),
        ("node_started", "c2"),
        ("node_finished", "c2"),
        ("branch_finished", "c1"),
    ]
    assert set(thread) == {"", "a1", "b1", "c1", "c1/x", "c1/y"}


def test_the_main_path_has_the_same_events_under_thread_and_process(
    trails: dict[str, Trail],
) -> None:
    """Outside the branches (run, main-path nodes, fan-out, fan-in) the strategies agree."""
    assert trails["process"][""] == trails["thread"][""]


def test_every_path_has_the_same_events_under_thread_and_process(
    trails: dict[str, Trail],
) -> None:
    """A node inside a process branch (or a nested fan-out there) appears in `--stream`
    exactly as it does in a thread branch."""
    assert trails["process"] == trails["thread"]


def test_the_readme_documents_every_kind_and_field() -> None:
    """The README's Events table has a row per kind naming each of its fields."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Events (") : text.index("## Python API")]
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in section.splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == set(EVENT_TYPES)
    for kind, cls in EVENT_TYPES.items():
        for item in dataclasses.fields(cls):
            if item.name != "ts":
                assert f"`{item.name}`" in rows[kind], (kind, item.name)
