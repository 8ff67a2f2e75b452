"""BranchState on its own: copy-on-access, what reads the storage without copying, the
delta a branch sends back and the full state merged from it."""

from __future__ import annotations

import copy
import json
import pickle
import threading
from typing import Any

import pytest

from tead.engine.state import BranchState, StateDelta
from tead.errors import StateCopyError


def make() -> tuple[dict[str, Any], BranchState]:
    base = {"a": [1], "b": {"c": [2]}, "n": 1, "s": "x"}
    return base, BranchState.over(base, {"item": {"i": [0]}})


def test_untouched_values_are_shared_and_taken_ones_copied_once():
    base, state = make()
    assert dict.__getitem__(state, "a") is base["a"]  # shared until taken out
    first = state["a"]
    assert first is not base["a"] and first == base["a"]
    assert state["a"] is first  # copied once: now the state's own
    first.append(2)
    assert base["a"] == [1]
    assert state["n"] == 1 and state["s"] == "x"


def test_values_shared_between_keys_stay_shared_in_the_copies():
    inner = [1]
    state = BranchState.over({"x": inner, "y": {"z": inner}})
    assert state["x"] is state["y"]["z"]
    assert inner == [1]


def keywords(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@pytest.mark.parametrize(
    "take",
    [
        lambda s: s.get("a"),
        lambda s: dict(s)["a"],
        lambda s: {**s}["a"],
        lambda s: s.copy()["a"],
        lambda s: copy.copy(s)["a"],
        lambda s: (s | {})["a"],
        lambda s: ({} | s)["a"],
        lambda s: dict(s.items())["a"],
        lambda s: next(v for v in s.values() if isinstance(v, list)),
        lambda s: s.setdefault("a", None),
        lambda s: s.pop("a"),
        lambda s: keywords(**s)["a"],
    ],
)
def test_every_way_out_hands_the_state_s_own_value(take):
    base, state = make()
    take(state).append("changed")
    assert base["a"] == [1]


def test_it_reads_as_a_plain_dict_everywhere():
    base, state = make()
    plain = {**base, "item": {"i": [0]}}
    assert isinstance(state, dict)
    assert state == plain and len(state) == 5 and list(state) == list(plain)
    assert json.loads(json.dumps(state)) == plain
    assert json.loads(json.dumps(state, indent=1)) == plain
    unpickled = pickle.loads(pickle.dumps(state))
    assert type(unpickled) is dict and unpickled == plain
    deep = copy.deepcopy(state)
    assert type(deep) is dict and deep == plain and deep["a"] is not base["a"]
    assert "{n}".format_map(state) == "1"


def test_reading_without_copying_copies_nothing():
    base, state = make()
    assert state.raw()["a"] is base["a"]
    assert pickle.loads(pickle.dumps(state))["a"] == [1]
    assert dict.__getitem__(state, "a") is base["a"]  # pickling took nothing out


def test_delta_holds_what_was_taken_set_or_dropped_and_merges_back():
    base, state = make()
    own = {"item": {"i": [0]}}
    state = BranchState.over(base, own)
    state["b"]["c"].append(3)
    state["new"] = 1
    del state["s"]
    delta = state.delta(base, own)
    assert delta == StateDelta(changed={"b": {"c": [2, 3]}, "new": 1}, deleted=("s",))
    full = BranchState.merged(base, delta, own=own)
    assert full == {"a": [1], "b": {"c": [2, 3]}, "n": 1, "item": {"i": [0]}, "new": 1}
    full["a"].append("x")  # a merged state copies on access too
    assert base["a"] == [1]


def test_share_freezes_the_values_for_everyone():
    state = BranchState({"a": [1]})
    mine = state["a"]
    base = state.share()
    assert base["a"] is mine
    state["a"].append(2)
    assert mine == [1] and state["a"] == [1, 2]


def test_an_uncopyable_value_names_its_key():
    state = BranchState.over({"lock": threading.Lock()})
    with pytest.raises(StateCopyError, match="state key 'lock' cannot be copied"):
        state["lock"]
