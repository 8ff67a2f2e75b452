"""Encoding a run's end for the store: the same JSON as the json module, in pieces,
under max_state_bytes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tead.daemon.storable import TooLarge, encode, encode_end
from tead.errors import RunError


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.3:
        return rng.choice([1, 2.5, None, True, -7, "é\ud800x", "y" * rng.randint(0, 3_000)])
    if roll < 0.6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 120))]
    keys = ["a", "b", 1, 2.5, None, "c"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 12))}


def test_pieces_make_exactly_the_json_modules_text() -> None:
    """Cut into pieces or not, the text is json.dumps's (ASCII, compact), for random
    nested values with big strings, lone surrogates and non-string keys."""
    rng = random.Random(7)
    pieces = 0
    for _ in range(40):
        value = _random_value(rng)
        pieces += len(json.dumps(value)) > 64 * 1024
        assert encode(value, None) == json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    assert pieces >= 10  # most are big enough to be cut into pieces


def test_a_value_over_the_limit_is_refused_and_a_cycle_is_a_run_error() -> None:
    with pytest.raises(TooLarge):
        encode({"blob": "x" * 10_000_000}, 1_000)
    with pytest.raises(TooLarge):
        encode({"many": list(range(100_000))}, 1_000)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(RunError, match="cannot be written as JSON"):
        encode({"loop": loop}, None)


def test_a_final_state_over_the_limit_is_a_problem_and_branch_states_share_a_budget() -> None:
    """The final state over max_state_bytes is not stored and says why; branch results
    are all kept, their states while the shared budget lasts."""
    branches = [{"branch": f"b[{i}]", "state": {"pad": "p" * 400}} for i in range(5)]
    end = encode_end({"pad": "p" * 2_000}, branches, 1_000)
    assert end.final_state is None
    assert end.problem is not None and "max_state_bytes (1000 bytes)" in end.problem
    stored = [json.loads(text) for text in end.branches]
    assert [b["branch"] for b in stored] == [f"b[{i}]" for i in range(5)]
    assert [b["state"] is not None for b in stored] == [True, True, False, False, False]
    assert "over max_state_bytes" in stored[2]["state_note"]
    fits = encode_end({"ok": 1}, [], 1_000)
    assert fits.final_state == '{"ok":1}' and fits.problem is None
