"""Every workflow under examples/ validates and runs to its documented final state."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tead

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RunTead = Callable[..., subprocess.CompletedProcess[str]]  # the `tead_cli` fixture
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


class _Absent:
    """Marks a key that must not be in the final state."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()

EXPECTED: dict[str, dict[str, Any]] = {
    "hello.yaml": {"who": "world", "greeting": "HELLO, WORLD!"},
    "fanout_static.yaml": {
        "x": 4,
        "branches": ["square", "cube", "negate"],
        "values": [16, 64, -4],
        "value_in_main_state": False,
        "value": ABSENT,
    },
    "fanout_tea_style.yaml": {
        "order": ["count_words", "count_chars", "first_letters"],
        "summary": {"words": 9, "longest": "quick", "chars": 35, "initials": "tqbfjotld"},
        "words_count": ABSENT,
    },
    "fanout_nested.yaml": {
        "numbers": [1, 3, 4, 5, 6, 8],
        "outer_order": ["evens", "odds"],
        "inner_order": ["evens_sum", "evens_max"],
        "evens": {"sum": 18, "max": 8},
        "odds": [1, 3, 5],
        "picked_in_main_state": False,
    },
    "fanout_chained.yaml": {
        "count": 6,
        "low": [35, 58, 44],
        "high": [72, 90, 81],
        "second_order": ["total", "spread"],
        "totals": {"low": 137, "high": 243},
        "spreads": {"low": 23, "high": 18},
        "result": ABSENT,
    },
    "fanout_two_fan_ins.yaml": {
        "order_id": "A-17",
        "invoice": {"net": 42.5, "tax": 8.5, "total": 51.0},
        "invoice_branches": ["price", "tax"],
        "shipment": {"weight_g": 2000, "label": "A-17/2", "paid": 51.0},
        "shipment_branches": ["pack", "label"],
    },
    "fanout_for_each.yaml": {
        "numbers": [3, 1, 4, 2],
        "branches": ["square[0]", "square[1]", "square[2]", "square[3]"],
        "squares": [9, 1, 16, 4],
        "job_in_main_state": False,
    },
    "fanout_partial_failure.yaml": {
        "received": 4,
        "numbers": [10, 20, 40],
        "total": 70,
        "failed": [
            {
                "branch": "parse[2]",
                "error_type": "ValueError",
                "error": "invalid literal for int() with base 10: 'thirty'",
            }
        ],
    },
    "conditional.yaml": {
        "n": 1,
        "valid": True,
        "path": [7, 22, 11, 34, 17, 52, 26, 13, 40, 20, 10, 5, 16, 8, 4, 2, 1],
        "steps": 16,
        "label": "medium",
    },
    "uses_module.yaml": {
        "words": ["the", "fox", "saw", "the", "dog", "the", "dog", "saw", "the", "fox"],
        "word_counts": {"the": 4, "fox": 2, "cat": 0},
        "branches": ["count_the", "count_fox", "count_cat"],
        "total_words": 10,
    },
    "entry_exit.yaml": {
        "rows": [{"name": " grace ", "amount": "12.25"}, {"name": "alan", "amount": "  7.75"}],
        "checked": 2,
        "records": [{"name": "Grace", "cents": 1225}, {"name": "Alan", "cents": 775}],
        "loaded": 2,
        "total_cents": 2000,
        "message": "loaded 2 records, 2000 cents",
    },
    "thumbnails.yaml": {
        "size": 128,
        "files": ["inbox/beach.jpg", "inbox/broken.jpg", "inbox/cat.jpg"],
        "thumbs": ["thumbs/beach_128q85.jpg", "thumbs/cat_128q85.jpg"],
        "failed": ["resize[1]"],
    },
}


def subset(state: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The keys of `expected` as found in `state` (ABSENT where missing), for one `==`."""
    return {key: state.get(key, ABSENT) for key in expected}


def run_cli(tead_cli: RunTead, tmp_path: Path, example: str, *args: str) -> dict[str, Any]:
    """Run an example with `tead run ... --output`, assert success, return the final state."""
    out = tmp_path / "out.json"
    proc = tead_cli("run", str(EXAMPLES / example), "--output", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    state: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return state


def test_examples_exist() -> None:
    assert len(EXAMPLE_FILES) >= 12
    assert (EXAMPLES / "example_ops.py").is_file()


def test_every_example_has_an_expected_state() -> None:
    assert set(EXPECTED) == {path.name for path in EXAMPLE_FILES}


def test_validate_accepts_every_example(tead_cli: RunTead) -> None:
    proc = tead_cli("validate", *map(str, EXAMPLE_FILES))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    ok_lines = [line for line in proc.stdout.splitlines() if ": ok (" in line]
    assert len(ok_lines) == len(EXAMPLE_FILES)


@pytest.mark.parametrize("example", [path.name for path in EXAMPLE_FILES])
def test_example_runs_to_expected_state(tead_cli: RunTead, tmp_path: Path, example: str) -> None:
    expected = EXPECTED[example]
    assert subset(run_cli(tead_cli, tmp_path, example), expected) == expected


def test_hello_quick_start(tead_cli: RunTead, tmp_path: Path) -> None:
    """The README's quick start prints exactly this state."""
    state = run_cli(tead_cli, tmp_path, "hello.yaml", "--input", '{"who": "tead"}')
    assert state == {"who": "tead", "greeting": "HELLO, TEAD!"}


def test_entry_exit_scoped_run(tead_cli: RunTead, tmp_path: Path) -> None:
    """Starting at `check` and stopping before `load` still fans out, and runs nothing else."""
    rows = [{"name": " ada ", "amount": "1.50"}, {"name": "bob", "amount": "2"}]
    state = run_cli(
        tead_cli,
        tmp_path,
        "entry_exit.yaml",
        "--entry-point",
        "check",
        "--exit-point",
        "load",
        "--input",
        json.dumps({"rows": rows}),
    )
    expected = {
        "rows": rows,
        "checked": 2,
        "records": [{"name": "Ada", "cents": 150}, {"name": "Bob", "cents": 200}],
        "loaded": ABSENT,
        "total_cents": ABSENT,
        "message": ABSENT,
    }
    assert subset(state, expected) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, {"n": 0, "valid": False, "path": [0], "steps": ABSENT, "label": ABSENT}),
        (27, {"n": 1, "valid": True, "steps": 111, "label": "long"}),
        (3, {"n": 1, "valid": True, "path": [3, 10, 5, 16, 8, 4, 2, 1], "label": "short"}),
    ],
)
def test_conditional_takes_each_route(
    tead_cli: RunTead, tmp_path: Path, n: int, expected: dict[str, Any]
) -> None:
    """n=0 takes the conditional edge to __end__; other n pick the first true `when:`."""
    state = run_cli(tead_cli, tmp_path, "conditional.yaml", "--input", json.dumps({"n": n}))
    assert subset(state, expected) == expected


def _run_api(example: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    final = tead.load_workflow(EXAMPLES / example).invoke(on_event=events.append)
    return final, events


def _finished_paths(events: list[dict[str, Any]]) -> list[str]:
    return [e["path"] for e in events if e["event"] == "branch_finished"]


def test_for_each_results_in_item_order_through_api() -> None:
    """Branches finish last-to-first, yet `parallel_results` is in item order."""
    final, events = _run_api("fanout_for_each.yaml")
    assert _finished_paths(events) == ["square[3]", "square[2]", "square[1]", "square[0]"]
    expected = EXPECTED["fanout_for_each.yaml"]
    assert subset(final, expected) == expected


def test_for_each_with_other_numbers_through_api() -> None:
    """The README's Python API call: the input replaces the initial numbers."""
    final = tead.load_workflow(EXAMPLES / "fanout_for_each.yaml").invoke({"numbers": [1, 2, 3]})
    assert final["squares"] == [1, 4, 9]
    assert final["branches"] == ["square[0]", "square[1]", "square[2]"]


def test_nested_results_in_declaration_order_through_api() -> None:
    """Inner and outer fan-ins get declaration order although later branches finish first."""
    final, events = _run_api("fanout_nested.yaml")
    finished = _finished_paths(events)
    assert finished.index("evens/evens_max") < finished.index("evens/evens_sum")
    assert finished.index("odds") < finished.index("evens")
    assert sorted(finished) == ["evens", "evens/evens_max", "evens/evens_sum", "odds"]
    expected = EXPECTED["fanout_nested.yaml"]
    assert subset(final, expected) == expected
