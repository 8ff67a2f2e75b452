"""A run worker kept for the next run of its workflow version: the workflow is built anew
for each run (ahead of its order when that runs no user code), and a run's last events
reach the daemon with its end, or before it when encoding the end may run user code.

End to end on a real daemon, and `plain`, which decides the latter, on its own."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tead.daemon.runprocess import PLAIN_ITEMS, plain
from tests.daemon.test_daemon_runs import end_of
from tests.daemon.test_run_isolation import error_of, node
from tests.daemon_fixture import DaemonProcess

Factory = Callable[..., DaemonProcess]

COUNTS = """
import os
seen = globals()
seen["runs"] = seen.get("runs", 0) + 1
state["kept"].append(seen["runs"])
return {"runs": seen["runs"], "pid": os.getpid(), "kept": state["kept"]}
"""

TWO_NODES = """name: {name}
nodes:
  - name: first
    run: |
      return {{"first": True}}
  - name: last
    run: |
      import collections
      return {{"kind": {kind!r}, "value": {value}}}
"""


def test_each_run_of_a_kept_worker_gets_a_fresh_build_of_its_workflow(
    daemon_factory: Factory,
) -> None:
    """What a run's `run:` code keeps in its globals or adds to its initial state is gone
    for the next run, though the same worker serves both (its workflow was built again,
    ahead of the second order, from the same parsed file)."""
    d = daemon_factory()
    d.write("counts.yaml", "name: counts\ninitial_state: {kept: []}\n" + node(COUNTS))
    d.start()
    states: list[dict[str, Any]] = []
    for _ in range(3):
        run = d.dispatch("counts")["id"]
        assert end_of(d, run, timeout_s=60) == "succeeded", error_of(d, run)
        states.append(d.get(f"/api/v1/runs/{run}").json()["final_state"])
    assert [s["runs"] for s in states] == [1, 1, 1]
    assert [s["kept"] for s in states] == [[1], [1], [1]]
    assert len({s["pid"] for s in states}) == 1  # one worker served the three runs


def test_a_runs_last_events_reach_the_daemon_whichever_way_its_end_is_encoded(
    daemon_factory: Factory,
) -> None:
    """A plain final state: the last node's events come with the end. One holding a dict
    subclass (its encoding could run the run's code): they come first, as "ending". Each
    run records both nodes as succeeded and its final state."""
    d = daemon_factory()
    d.write("plain.yaml", TWO_NODES.format(name="plain", kind="plain", value="[1, 2]"))
    d.write(
        "ordered.yaml",
        TWO_NODES.format(name="ordered", kind="ordered", value="collections.OrderedDict(a=1)"),
    )
    d.start()
    for name, value in (("plain", [1, 2]), ("ordered", {"a": 1})):
        run_id = d.dispatch(name)["id"]
        assert end_of(d, run_id, timeout_s=60) == "succeeded", error_of(d, run_id)
        run = d.get(f"/api/v1/runs/{run_id}").json()
        assert [(n["node"], n["status"]) for n in run["nodes"]] == [
            ("first", "succeeded"),
            ("last", "succeeded"),
        ], run["nodes"]
        assert run["final_state"]["value"] == value
        assert run["final_state"]["first"] is True


class _Text(str):
    pass


def test_plain_is_json_own_types_only_and_small() -> None:
    assert plain(None)
    assert plain({"a": [1, 2.5, None, True, "x", (3, 4)], "b": {"c": []}})
    assert not plain({"a": OrderedDict(b=1)})  # a subclass: its methods are user code
    assert not plain([_Text("x")])
    assert not plain({1: "a key that is not a string"})
    assert not plain({"a": object()})
    assert plain(list(range(PLAIN_ITEMS - 1)))
    assert not plain(list(range(PLAIN_ITEMS)))  # too big to look through
    looped: list[Any] = []
    looped.append(looped)
    assert not plain(looped)
