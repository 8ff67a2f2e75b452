"""A fan-out's base state in the process strategy: sent once to each worker that takes a
branch of it, kept there for the fan-out, dropped after; branches carry only their own
part and send back only what they changed."""

from __future__ import annotations

import pickle
from typing import Any

from tead import Executors, load_workflow_text
from tead.executors.worker import BaseCache
from tead.executors.workerpool import SharedBase, WorkerPool
from tead.parallel.outcomes import Finished


def report_base(payload: bytes, bases: BaseCache) -> tuple[int, int, Any]:
    """A job: (id of the base object this worker keeps, how many bases it keeps, the
    task's own value)."""
    key, own = pickle.loads(payload)
    base = bases.get(key) if key else None
    return (id(base) if base is not None else 0, len(bases), own)


def test_a_worker_gets_a_base_once_keeps_it_for_the_fan_out_and_drops_it_after():
    pool = WorkerPool(1, report_base)
    try:
        shared = SharedBase("k1", pickle.dumps({"big": list(range(1000))}))
        futures = [pool.submit(pickle.dumps(("k1", i)), None, shared) for i in range(3)]
        answers = [f.result(timeout=30) for f in futures]
        assert all(isinstance(a, Finished) for a in answers)
        ids = {a.result[0] for a in answers}  # type: ignore[union-attr]
        assert len(ids) == 1  # unpickled once, the same object for every task
        assert [a.result[1:] for a in answers] == [(1, 0), (1, 1), (1, 2)]  # type: ignore[union-attr]
        pool.release("k1")
        after = pool.submit(pickle.dumps((None, "after"))).result(timeout=30)
        assert after.result[1] == 0  # type: ignore[union-attr]
        # a new fan-out's base is sent again
        again = SharedBase("k2", pickle.dumps({"big": []}))
        second = pool.submit(pickle.dumps(("k2", 0)), None, again).result(timeout=30)
        assert second.result[1] == 1  # type: ignore[union-attr]
    finally:
        pool.close()


WIDE = """
settings:
  parallel: {strategy: process, max_workers: 2}
nodes:
  - name: src
    run: |
      return {"big": list(range(100_000)), "items": list(range(6))}
  - name: work
    run: |
      if state["item"] % 2:
          state["big"].append(state["item"])   # takes out (and changes) one big value
      return {"mine": state["item"] * 10}
  - name: join
    run: |
      return {"sizes": [len(r.state["big"]) for r in parallel_results],
              "last": [r.state["big"][-1] for r in parallel_results],
              "mine": [r.state["mine"] for r in parallel_results],
              "keys": [sorted(r.state) for r in parallel_results],
              "fan_in_size": len(state["big"])}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


def test_process_results_read_as_full_states_merged_from_deltas(tmp_path):
    workflow = load_workflow_text(WIDE, str(tmp_path / "wf.yaml"))
    with Executors() as executors:
        final = workflow.invoke({}, executors=executors)
    assert final["sizes"] == [100_000, 100_001] * 3
    assert final["last"] == [99_999, 1, 99_999, 3, 99_999, 5]
    assert final["mine"] == [0, 10, 20, 30, 40, 50]
    assert final["keys"] == [["big", "item", "items", "mine"]] * 6
    assert final["fan_in_size"] == 100_000


READS = """
settings:
  parallel: {strategy: process, max_workers: 2}
nodes:
  - name: src
    run: |
      return {"big": [{"i": i} for i in range(10_000)], "small": [1]}
  - name: work
    run: |
      state["small"].append(state["item"])
      return {"n": len(state["big"])}     # takes out "big", leaves it as it was
  - name: join
    run: |
      return {"n": [r.state["n"] for r in parallel_results],
              "big_came_back": [dict.__getitem__(r.state, "big")
                                is not dict.__getitem__(state, "big")
                                for r in parallel_results],
              "small": [r.state["small"] for r in parallel_results]}
edges:
  - {from: src, to: work, parallel: true, for_each: "range(3)", fan_in: join}
"""


def test_a_value_a_process_branch_only_read_is_not_sent_back(tmp_path):
    """Its result shares the fan-out's own value (nothing came back for it); a value it
    changed did come back."""
    workflow = load_workflow_text(READS, str(tmp_path / "wf.yaml"))
    with Executors() as executors:
        final = workflow.invoke({}, executors=executors)
    assert final["n"] == [10_000] * 3
    assert final["big_came_back"] == [False] * 3
    assert final["small"] == [[1, 0], [1, 1], [1, 2]]
