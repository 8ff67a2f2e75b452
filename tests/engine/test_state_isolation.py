"""The contract's isolation rule under thread and process branches: whatever a branch does
to its state (in place, nested deep, through any dict method), no sibling sees it and the
fan-in's state is unchanged; `parallel_results[i].state` is the branch's full final state.

Branches run one at a time (max_workers 1) where a test checks what a branch *saw*, so
that a leak from an earlier sibling would show deterministically (a process worker runs
its fan-out's branches one after the other on the base it keeps)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tead import Executors, Graph, load_workflow_text

STRATEGIES = ["thread", "process"]


@pytest.fixture(scope="module")
def executors() -> Iterator[Executors]:
    with Executors() as shared:  # one warm process pool for the module
        yield shared


def run(
    text: str,
    strategy: str,
    executors: Executors,
    tmp_path: Path,
    state: dict[str, Any] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    settings = f"settings: {{parallel: {{strategy: {strategy}, max_workers: {workers}}}}}\n"
    workflow = load_workflow_text(settings + textwrap.dedent(text), str(tmp_path / "wf.yaml"))
    return workflow.invoke(state or {}, executors=executors)


IN_PLACE = """
initial_state:
  data: {list: [1, 2], dict: {a: 1}, deep: {deeper: [[0]]}}
  items: [0, 1, 2]
nodes:
  - name: src
    run: |
      return {"tags": {"x"}, "pair": ([1], {"k": [2]})}
  - name: work
    run: |
      i = state["item"]
      saw = {"list": list(state["data"]["list"]), "dict": dict(state["data"]["dict"]),
             "deeper": [list(x) for x in state["data"]["deep"]["deeper"]],
             "tags": sorted(state["tags"]), "pair": [list(state["pair"][0]),
                                                      list(state["pair"][1]["k"])]}
      state["data"]["list"].append(i)
      state["data"]["dict"][str(i)] = i
      state["data"]["deep"]["deeper"][0].append(i)
      state["tags"].add(i)
      state["pair"][0].append(i)
      state["pair"][1]["k"].append(i)
      return {"saw": saw}
  - name: join
    run: |
      return {"results": [r.state for r in parallel_results],
              "at_fan_in": {"data": state["data"], "tags": sorted(state["tags"]),
                            "pair": state["pair"]}}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""

PRISTINE_SAW = {
    "list": [1, 2],
    "dict": {"a": 1},
    "deeper": [[0]],
    "tags": ["x"],
    "pair": [[1], [2]],
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_in_place_mutation_of_nested_lists_dicts_and_sets_stays_in_the_branch(
    strategy, executors, tmp_path
):
    final = run(IN_PLACE, strategy, executors, tmp_path)
    fan_in = final["at_fan_in"]
    assert fan_in["data"] == {"list": [1, 2], "dict": {"a": 1}, "deep": {"deeper": [[0]]}}
    assert fan_in["tags"] == ["x"]
    assert fan_in["pair"] == ([1], {"k": [2]})
    assert final["data"]["list"] == [1, 2] and final["tags"] == {"x"}
    for i, result in enumerate(final["results"]):
        assert result["saw"] == PRISTINE_SAW  # no earlier sibling's write shows
        assert result["data"]["list"] == [1, 2, i]
        assert result["data"]["dict"] == {"a": 1, str(i): i}
        assert result["data"]["deep"]["deeper"] == [[0, i]]
        assert result["tags"] == {"x", i}
        assert result["pair"] == ([1, i], {"k": [2, i]})
        # the full final state: untouched keys, the item and the node's output too
        assert set(result) == {"data", "items", "tags", "pair", "item", "saw"}
        assert result["items"] == [0, 1, 2] and result["item"] == i


THROUGH_METHODS = """
initial_state:
  a: [0]
  b: {k: [0]}
  c: [0]
  d: [0]
  e: [0]
  f: [0]
  g: [0]
  h: [0]
  i: [0]
  j: [0]
  items: [0, 1]
nodes:
  - name: src
  - name: work
    run: |
      import copy
      n = state["item"] + 1
      state.get("a").append(n)
      for key, value in state.items():
          if key == "b":
              value["k"].append(n)
      for value in state.values():
          if isinstance(value, list) and value and value[0] == 0 and len(value) == 1:
              pass
      dict(state)["c"].append(n)
      {**state}["d"].append(n)
      state.copy()["e"].append(n)
      (state | {})["f"].append(n)
      copy.copy(state)["g"].append(n)
      state.setdefault("h", []).append(n)
      popped = state.pop("i")
      popped.append(n)
      state["i"] = popped
      def take(**kwargs):
          kwargs["j"].append(n)
      take(**state)
      return {"n": n}
  - name: join
    run: |
      keys = "abcdefghij"
      return {"fan_in": {k: state[k] for k in keys},
              "branches": [{k: r.state[k] for k in keys} for r in parallel_results]}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_values_reached_through_any_dict_method_are_the_branch_s_own(strategy, executors, tmp_path):
    """get, items, dict(), {**}, copy, |, copy.copy, setdefault, pop and **kwargs all hand
    out the branch's own values: mutating them never reaches the base or a sibling."""
    final = run(THROUGH_METHODS, strategy, executors, tmp_path)
    assert final["fan_in"] == {
        "a": [0],
        "b": {"k": [0]},
        **{k: [0] for k in "cdefghij"},
    }
    for n, branch in enumerate(final["branches"], start=1):
        assert branch["a"] == [0, n]  # read and mutated
        assert branch["b"] == {"k": [0, n]}
        # shallow copies share values with the state, as with a plain dict
        assert branch["c"] == branch["d"] == branch["e"] == branch["f"] == [0, n]
        assert branch["g"] == branch["h"] == branch["i"] == branch["j"] == [0, n]


REPLACE_DELETE = """
initial_state: {keep: [1], swap: [1], drop: {x: 1}, items: [0, 1, 2]}
nodes:
  - name: src
  - name: work
    run: |
      saw = sorted(state)
      if state["item"] == 0:
          state["swap"] = ["mine"]
      if state["item"] == 1:
          del state["drop"]
      if state["item"] == 2:
          state.clear()
          state["alone"] = True
      return {"saw": saw}
  - name: join
    run: |
      return {"states": [r.state for r in parallel_results], "fan_in": dict(state)}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_branch_that_replaces_deletes_or_clears_keys(strategy, executors, tmp_path):
    final = run(REPLACE_DELETE, strategy, executors, tmp_path)
    base_keys = ["drop", "item", "items", "keep", "swap"]
    first, second, third = final["states"]
    assert first["swap"] == ["mine"] and first["drop"] == {"x": 1}
    assert "drop" not in second and second["swap"] == [1]
    assert third == {"alone": True, "saw": base_keys}
    assert first["saw"] == second["saw"] == base_keys
    assert final["fan_in"] == {"keep": [1], "swap": [1], "drop": {"x": 1}, "items": [0, 1, 2]}


MUTABLE_ITEMS = """
initial_state:
  items: [{name: a, tags: []}, {name: b, tags: []}, {name: c, tags: []}]
nodes:
  - name: src
  - name: work
    run: |
      saw = [dict(x, tags=list(x["tags"])) for x in state["items"]]
      state["item"]["tags"].append("seen")
      state["item"]["name"] += "!"
      state["items"][0]["tags"].append(state["item"]["name"])
      state["items"].append("more")
      return {"saw": saw}
  - name: join
    run: |
      return {"fan_in_items": state["items"],
              "branch_items": [r.state["item"] for r in parallel_results],
              "saw": [r.state["saw"] for r in parallel_results],
              "lists": [r.state["items"] for r in parallel_results]}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_for_each_items_that_are_mutable_stay_per_branch(strategy, executors, tmp_path):
    final = run(MUTABLE_ITEMS, strategy, executors, tmp_path)
    original = [{"name": n, "tags": []} for n in "abc"]
    assert final["fan_in_items"] == original
    assert final["items"] == original
    assert final["saw"] == [original] * 3
    # In a branch the item *is* its entry of the list (identity is kept, as in the fan-out
    # state), so a branch's edits of its item show in its own copy of the list.
    for j, (n, items) in enumerate(zip("abc", final["lists"], strict=True)):
        expected: list[Any] = [{"name": m, "tags": []} for m in "abc"]
        expected[j] = {"name": f"{n}!", "tags": ["seen"]}
        expected[0]["tags"].append(f"{n}!")
        assert final["branch_items"][j] == expected[j]
        assert items == [*expected, "more"]


NESTED = """
initial_state: {shared: {hits: []}, outer: [0, 1], inner: [0, 1]}
nodes:
  - name: src
  - name: outer_work
    run: |
      state["shared"]["hits"].append(f"outer{state['o']}")
      return {"mark": state["o"]}
  - name: inner_work
    run: |
      state["shared"]["hits"].append(f"inner{state['o']}.{state['i']}")
      return {"inner_saw": list(state["shared"]["hits"])}
  - name: inner_join
    run: |
      return {"outer_after_inner": list(state["shared"]["hits"]),
              "inner_results": [r.state["inner_saw"] for r in parallel_results],
              "inner_full": sorted(parallel_results[0].state)}
  - name: outer_join
    run: |
      return {"fan_in": state["shared"],
              "outer_results": [[r.state["outer_after_inner"], r.state["inner_results"],
                                 r.state["inner_full"]] for r in parallel_results]}
edges:
  - {from: src, to: outer_work, parallel: true, for_each: "state['outer']", item_var: o,
     fan_in: outer_join}
  - {from: outer_work, to: inner_work, parallel: true, for_each: "state['inner']", item_var: i,
     fan_in: inner_join}
  - {from: inner_work, to: inner_join}
  - {from: inner_join, to: outer_join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nested_fan_outs_are_isolated_at_every_level(strategy, executors, tmp_path):
    final = run(NESTED, strategy, executors, tmp_path, workers=2)
    assert final["fan_in"] == {"hits": []}
    assert final["shared"] == {"hits": []}
    for o, (after_inner, inner, full) in enumerate(final["outer_results"]):
        assert after_inner == [f"outer{o}"]  # the inner branches' writes stayed theirs
        assert inner == [[f"outer{o}", f"inner{o}.{i}"] for i in range(2)]
        assert full == ["i", "inner", "inner_saw", "mark", "o", "outer", "shared"]


FAN_IN_MUTATES = """
initial_state: {box: [0], items: [0, 1]}
nodes:
  - name: src
  - name: work
  - name: join
    run: |
      parallel_results[0].state["box"].append("via result 0")
      return {"seen_by_1": list(parallel_results[1].state["box"]),
              "fan_in_box": list(state["box"])}
  - name: after
    run: |
      state["box"].append("main path, later")
      return {}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: join, to: after}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_results_and_the_main_path_do_not_share_what_they_mutate(strategy, executors, tmp_path):
    """The fan-in mutating one result's state changes neither the main state nor another
    result; the main path mutating its state later does not change the results kept."""
    kept: list[Any] = []
    settings = f"settings: {{parallel: {{strategy: {strategy}, max_workers: 1}}}}\n"
    workflow = load_workflow_text(settings + FAN_IN_MUTATES, str(tmp_path / "wf.yaml"))
    final = workflow.invoke({}, executors=executors, on_results=lambda *args: kept.extend(args[3]))
    assert final["seen_by_1"] == [0] and final["fan_in_box"] == [0]
    assert final["box"] == [0, "main path, later"]
    assert kept[0].state["box"] == [0, "via result 0"]
    assert kept[1].state["box"] == [0]


RETRIED = """
initial_state: {box: [0], items: [0]}
nodes:
  - name: src
  - name: work
    run: |
      state["box"].append(len(state["box"]))
      if len(state["box"]) < 3:
          raise ValueError(f"saw {state['box']}")
      return {}
  - name: join
    run: |
      return {"results": [[r.success, r.retry_count, r.error] for r in parallel_results]}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_retried_attempt_starts_from_the_fan_out_state_again(strategy, executors, tmp_path):
    """Each attempt mutates `box` in place and fails: every attempt saw [0] (so all fail)."""
    settings = (
        f"settings:\n  parallel:\n    strategy: {strategy}\n    max_workers: 1\n"
        "    retry: {max_retries: 2, base_delay: 0, jitter: 0}\n"
    )
    workflow = load_workflow_text(settings + RETRIED, str(tmp_path / "wf.yaml"))
    final = workflow.invoke({}, executors=executors)
    assert final["results"] == [[False, 2, "saw [0, 1]"]]
    assert final["box"] == [0]


DICT_LIKE = """
initial_state: {data: {x: [1, 2]}, n: 3, items: [0]}
nodes:
  - name: src
  - name: work
    run: |
      import copy, json, pickle
      def kw(**kwargs):
          return sorted(kwargs)
      checks = {
          "isinstance": isinstance(state, dict),
          "json": json.loads(json.dumps(state)) == {"data": {"x": [1, 2]}, "n": 3,
                                                    "items": [0], "item": 0},
          "pickle": pickle.loads(pickle.dumps(state)) == state,
          "pickled_type": type(pickle.loads(pickle.dumps(state))).__name__,
          "kwargs": kw(**state),
          "dict": dict(state) == state,
          "iter": sorted(state),
          "items": sorted(k for k, _ in state.items()),
          "copy": copy.copy(state) == state and copy.deepcopy(state) == state,
          "deepcopy_type": type(copy.deepcopy(state)).__name__,
          "len": len(state),
          "in": "data" in state and "nope" not in state,
          "eq": state == {"data": {"x": [1, 2]}, "n": 3, "items": [0], "item": 0},
          "format": "{n}".format_map(state),
      }
      return {"checks": checks}
  - name: join
    run: |
      import json
      return {"checks": parallel_results[0].state["checks"],
              "result_json": json.loads(json.dumps(parallel_results[0].state))["n"]}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_branch_state_behaves_as_a_dict(strategy, executors, tmp_path):
    final = run(DICT_LIKE, strategy, executors, tmp_path)
    assert final["checks"] == {
        "isinstance": True,
        "json": True,
        "pickle": True,
        "pickled_type": "dict",
        "kwargs": ["data", "item", "items", "n"],
        "dict": True,
        "iter": ["data", "item", "items", "n"],
        "items": ["data", "item", "items", "n"],
        "copy": True,
        "deepcopy_type": "dict",
        "len": 4,
        "in": True,
        "eq": True,
        "format": "3",
    }
    assert final["result_json"] == 3


SIBLINGS_CONCURRENT = """
initial_state: {counter: {n: 0}, items: [0, 1, 2, 3, 4, 5, 6, 7]}
nodes:
  - name: src
  - name: work
    run: |
      import time
      before = state["counter"]["n"]
      state["counter"]["n"] += 1
      time.sleep(0.02)
      return {"before": before, "after": state["counter"]["n"]}
  - name: join
    run: |
      return {"pairs": [[r.state["before"], r.state["after"]] for r in parallel_results]}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_concurrent_siblings_never_see_each_other(strategy, executors, tmp_path):
    final = run(SIBLINGS_CONCURRENT, strategy, executors, tmp_path, workers=4)
    assert final["pairs"] == [[0, 1]] * 8
    assert final["counter"] == {"n": 0}


UNCOPYABLE = """
nodes:
  - name: src
    run: |
      import threading
      return {"lock": threading.Lock(), "n": 1}
  - name: a
    run: |
      return {"doubled": state["n"] * 2}
  - name: b
    run: |
      with state["lock"]:
          return {}
  - name: join
    run: |
      return {"results": [[r.branch, r.success, r.error_type, r.error]
                          for r in parallel_results]}
edges:
  - {from: src, to: [a, b], parallel: true, fan_in: join}
  - {from: a, to: join}
  - {from: b, to: join}
"""


def test_a_thread_branch_pays_only_for_what_it_takes_out(executors, tmp_path):
    """A value that cannot be deep-copied (a lock) fails only the branch that takes it
    out, with a message naming the key; a sibling that never touches it runs."""
    final = run(UNCOPYABLE, "thread", executors, tmp_path)
    (a, b) = final["results"]
    assert a == ["a", True, None, None]
    assert b[:3] == ["b", False, "StateCopyError"]
    assert b[3].startswith("state key 'lock' cannot be copied for the branch (TypeError: ")
    assert "keep such values (locks, open files, connections) out of the state" in b[3]


def test_the_run_never_changes_its_input_nor_its_initial_state():
    """Neither is copied up front: a value the run takes out is copied then; one it never
    touches reaches the final state as the object passed in (the initial state's are
    copied, so that the next run starts from them unchanged)."""
    graph = Graph(initial_state={"init": [0], "init_untouched": {"k": []}})
    graph.add_node("edit", lambda s: s["a"].append(2) or s["init"].append(1))
    workflow = graph.compile()
    given = {"a": [1], "b": [2]}
    final = workflow.invoke(given)
    assert given == {"a": [1], "b": [2]}
    assert final["a"] == [1, 2] and final["init"] == [0, 1]
    assert final["b"] is given["b"]
    assert final["init_untouched"] == {"k": []}
    assert final["init_untouched"] is not workflow.graph.initial_state["init_untouched"]
    assert workflow.graph.initial_state == {"init": [0], "init_untouched": {"k": []}}


CHANGE_THEN_FAN_OUT = """
initial_state: {box: [0], items: [0, 1], inner: [0, 1]}
nodes:
  - name: src
  - name: outer_work
    run: |
      state["box"].append(state["o"])
      return {}
  - name: inner_work
  - name: inner_join
    run: |
      return {"inner_n": len(parallel_results)}
  - name: outer_join
    run: |
      return {"boxes": [r.state["box"] for r in parallel_results],
              "inner_n": [r.state["inner_n"] for r in parallel_results]}
edges:
  - {from: src, to: outer_work, parallel: true, for_each: "state['items']", item_var: o,
     fan_in: outer_join}
  - {from: outer_work, to: inner_work, parallel: true, for_each: "state['inner']",
     item_var: i, fan_in: inner_join, parallel_strategy: thread}
  - {from: inner_work, to: inner_join}
  - {from: inner_join, to: outer_join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_what_a_branch_changed_before_its_own_fan_out_stays_in_its_result(
    strategy, executors, tmp_path
):
    """A branch edits a value, then fans out again (its values are shared with its own
    branches from then on): its result still holds the edit."""
    final = run(CHANGE_THEN_FAN_OUT, strategy, executors, tmp_path, workers=2)
    assert final["boxes"] == [[0, 0], [0, 1]]
    assert final["inner_n"] == [2, 2]
    assert final["box"] == [0]
