"""ParallelFlowResult's dict access falls through to the branch's state (TEA's idioms),
with the result's own fields taking precedence."""

from __future__ import annotations

import pickle

import pytest

from tead.jsonable import dumps
from tead.parallel.config import ParallelFlowResult


def results() -> list[ParallelFlowResult]:
    return [
        ParallelFlowResult(branch="a", success=True, state={"v": 2, "label": "a"}),
        ParallelFlowResult(branch="b", success=True, state={"v": 3}),
        ParallelFlowResult(branch="c", success=False, error="boom", error_type="ValueError"),
    ]


def test_teas_sum_idiom_reads_branch_state():
    """`sum(r.get("v", 0) for r in parallel_results)` sums the branches' `v`."""
    assert sum(r.get("v", 0) for r in results()) == 5


def test_item_access_and_membership_fall_through_to_state():
    a, b, c = results()
    assert a["v"] == 2
    assert a["label"] == "a"
    assert "label" in a
    assert "label" not in b
    assert "v" not in c  # a failed branch has no state
    assert c.get("v") is None
    with pytest.raises(KeyError):
        b["label"]


def test_result_fields_take_precedence_over_state_keys():
    """A state key named like a field is read through `r.state`, not `r[...]`."""
    r = ParallelFlowResult(branch="x", success=True, state={"error": "in state", "branch": 7})
    assert r["error"] is None
    assert r["branch"] == "x"
    assert r.state is not None
    assert r.state["error"] == "in state"
    assert r["state"] == {"error": "in state", "branch": 7}


def test_iteration_gives_fields_then_other_state_keys():
    r = ParallelFlowResult(branch="x", success=True, state={"v": 1, "success": "shadowed"})
    keys = list(r)
    assert keys[:3] == ["branch", "success", "state"]
    assert keys[-1] == "v"
    assert keys.count("success") == 1
    assert len(r) == len(keys)
    assert dict(r)["v"] == 1


def test_json_and_pickle_keep_the_result_shape():
    """Serialised results are still the fields, with the state nested (not flattened)."""
    r = results()[0]
    assert '"state": {"v": 2, "label": "a"}' in dumps(r)
    assert '"v": 2, "label"' not in dumps(r).split('"state"')[0]
    assert pickle.loads(pickle.dumps(r))["v"] == 2
