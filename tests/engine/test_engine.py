"""The engine through the Python API: walking, every fan-out shape, results, events."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tead import END, START, Graph, NodeError, ParallelConfig, ParallelFlowResult, RunError
from tead.parallel.config import ParallelFlowResult as Result


def collect(state: dict[str, Any], parallel_results: list[Result]) -> dict[str, Any]:
    return {
        "seen": [(r.branch, r.success, r.state and r.state.get("out")) for r in parallel_results]
    }


def test_implicit_chaining_runs_nodes_in_list_order() -> None:
    graph = Graph()
    graph.add_node("a", lambda s: {"trail": [*s.get("trail", []), "a"]})
    graph.add_node("b", lambda s: {"trail": [*s["trail"], "b"]})
    graph.add_node("c", lambda s: {"trail": [*s["trail"], "c"]})
    assert graph.compile().invoke()["trail"] == ["a", "b", "c"]


def test_input_is_merged_over_initial_state_and_initial_state_is_not_mutated() -> None:
    graph = Graph(initial_state={"x": 1, "y": {"deep": 1}})
    graph.add_node("a", lambda s: s["y"].update(deep=2))
    workflow = graph.compile()
    assert workflow.invoke({"x": 5}) == {"x": 5, "y": {"deep": 2}}
    assert workflow.graph.initial_state == {"x": 1, "y": {"deep": 1}}


def test_first_true_conditional_edge_in_order_wins_and_edge_to_end_is_conditional() -> None:
    graph = Graph()
    graph.add_node("count", lambda s: {"n": s.get("n", 0) + 1})
    graph.add_node("after", lambda s: {"after": True})
    graph.add_edge("count", END, when="state['n'] >= 3")
    graph.add_edge("count", "count", when="state['n'] < 3")
    graph.add_edge("count", "after")
    assert graph.compile().invoke() == {"n": 3}


def test_when_may_be_a_callable_and_no_matching_edge_fails_the_run() -> None:
    graph = Graph()
    graph.add_node("a")
    graph.add_node("b")
    graph.add_edge("a", "b", when=lambda s: s["go"])
    workflow = graph.compile()
    assert workflow.invoke({"go": True}) == {"go": True}
    with pytest.raises(RunError, match="no edge from 'a' matched"):
        workflow.invoke({"go": False})


def test_node_error_outside_fan_out_names_node_and_keeps_original() -> None:
    graph = Graph()

    def boom(state: dict[str, Any]) -> None:
        raise ValueError("bad value")

    graph.add_node("boom", boom)
    with pytest.raises(NodeError, match="node 'boom' failed: ValueError: bad value") as info:
        graph.compile().invoke()
    assert isinstance(info.value.error, ValueError)


def test_node_returning_non_dict_is_an_error() -> None:
    graph = Graph()
    graph.add_node("a", lambda s: [1, 2])
    with pytest.raises(NodeError, match="returned list, expected a dict or None"):
        graph.compile().invoke()


def _static_fanout(config: ParallelConfig | None = None) -> Graph:
    graph = Graph(initial_state={"base": 10})
    graph.add_node("split", lambda s: {"split": True})
    for name, delay in (("a", 0.03), ("b", 0.0), ("c", 0.015)):

        def work(state: dict[str, Any], name: str = name, delay: float = delay) -> dict[str, Any]:
            time.sleep(delay)
            state["base"] += 1  # mutate the branch's copy in place
            return {"out": f"{name}{state['base']}"}

        graph.add_node(name, work)
        graph.add_edge(name, "merge")
    graph.add_node("merge", collect)
    graph.add_parallel_edge("split", ["a", "b", "c"], fan_in="merge", config=config)
    return graph


def test_static_fan_out_results_in_declaration_order_not_completion_order() -> None:
    final = _static_fanout().compile().invoke()
    assert final["seen"] == [("a", True, "a11"), ("b", True, "b11"), ("c", True, "c11")]
    assert final["base"] == 10  # branches got deep copies; the fan-in sees the fan-out state
    assert "out" not in final and final["split"] is True


def test_branches_really_run_in_parallel() -> None:
    """Three branches wait on a barrier of three: only concurrent branches get through."""
    barrier = threading.Barrier(3, timeout=10)
    graph = Graph()
    graph.add_node("s")
    for name in "abc":
        graph.add_node(name, lambda s: {"waited": barrier.wait() >= 0})
        graph.add_edge(name, "m")
    graph.add_node("m", lambda s, parallel_results: {"ok": [r.success for r in parallel_results]})
    graph.add_parallel_edge("s", ["a", "b", "c"], fan_in="m", config={"max_workers": 3})
    assert graph.compile().invoke()["ok"] == [True, True, True]


def test_tea_style_parallel_edges_to_one_fan_in_form_one_fan_out() -> None:
    graph = Graph()
    graph.add_node("s")
    for name in ("x", "y"):
        graph.add_node(name, lambda s, name=name: {"out": name})
        graph.add_edge(name, "m")
        graph.add_parallel_edge("s", name, fan_in="m")
    graph.add_node("m", collect)
    assert graph.compile().invoke()["seen"] == [("x", True, "x"), ("y", True, "y")]


def test_failed_branch_is_a_result_and_the_run_goes_on() -> None:
    graph = Graph()
    graph.add_node("s")

    def bad(state: dict[str, Any]) -> None:
        raise KeyError("missing")

    graph.add_node("good", lambda s: {"out": 1})
    graph.add_node("bad", bad)
    graph.add_edge("good", "m")
    graph.add_edge("bad", "m")
    graph.add_node("m", lambda s, parallel_results: {"results": parallel_results})
    graph.add_node("after", lambda s: {"after": True})
    graph.add_parallel_edge("s", ["good", "bad"], fan_in="m")
    final = graph.compile().invoke()
    good, bad_result = final["results"]
    assert final["after"] is True
    assert good.success and good["state"] == {"out": 1}
    assert not bad_result.success
    assert bad_result.error_type == "KeyError"
    assert bad_result.get("error") == "'missing'"
    assert bad_result.state is None and bad_result.traceback is None


def test_include_traceback_records_the_branch_traceback() -> None:
    graph = Graph()
    graph.add_node("s")
    graph.add_node("bad", lambda s: 1 / 0)
    graph.add_node("m", lambda s, parallel_results: {"tb": parallel_results[0].traceback})
    graph.add_parallel_edge("s", "bad", fan_in="m", config={"include_traceback": True})
    assert "ZeroDivisionError" in graph.compile().invoke()["tb"]


def test_for_each_fan_out_one_branch_per_item_in_item_order() -> None:
    graph = Graph(initial_state={"items": [3, 1, 2]})
    graph.add_node("s")

    def square(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(state["x"] / 100)  # later items finish first
        return {"out": state["x"] ** 2}

    graph.add_node("sq", square)
    graph.add_node("m", collect)
    graph.add_parallel_edge("s", "sq", fan_in="m", for_each="state['items']", item_var="x")
    graph.add_edge("sq", "m")
    assert graph.compile().invoke()["seen"] == [
        ("sq[0]", True, 9),
        ("sq[1]", True, 1),
        ("sq[2]", True, 4),
    ]


def test_for_each_over_nothing_runs_the_fan_in_with_no_results() -> None:
    graph = Graph(initial_state={"items": []})
    graph.add_node("s")
    graph.add_node("sq")
    graph.add_node("m", lambda s, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge("s", "sq", fan_in="m", for_each="state['items']")
    assert graph.compile().invoke()["n"] == 0


def test_for_each_that_raises_fails_the_run_with_a_clear_message() -> None:
    graph = Graph()
    graph.add_node("s")
    graph.add_node("sq")
    graph.add_node("m")
    graph.add_parallel_edge("s", "sq", fan_in="m", for_each="state['nope']")
    with pytest.raises(RunError, match="fan-out at 's': for_each raised KeyError"):
        graph.compile().invoke()


def test_nested_fan_out_inside_a_branch() -> None:
    graph = Graph()
    graph.add_node("s")
    graph.add_node("outer_a", lambda s: {"trail": "A"})
    graph.add_node("inner_x", lambda s: {"out": s["trail"] + "x"})
    graph.add_node("inner_y", lambda s: {"out": s["trail"] + "y"})
    graph.add_node(
        "inner_m",
        lambda s, parallel_results: {"out": "+".join(r.state["out"] for r in parallel_results)},
    )
    graph.add_node("outer_b", lambda s: {"out": "B"})
    graph.add_node("m", collect)
    graph.add_parallel_edge("s", ["outer_a", "outer_b"], fan_in="m")
    graph.add_parallel_edge("outer_a", ["inner_x", "inner_y"], fan_in="inner_m")
    graph.add_edge("inner_x", "inner_m")
    graph.add_edge("inner_y", "inner_m")
    graph.add_edge("inner_m", "m")
    graph.add_edge("outer_b", "m")
    assert graph.compile().invoke()["seen"] == [("outer_a", True, "Ax+Ay"), ("outer_b", True, "B")]


def test_chained_fan_out_from_a_fan_in_uses_fresh_results() -> None:
    graph = Graph()
    graph.add_node("s")
    graph.add_node("a", lambda s: {"out": "a"})
    graph.add_node("b", lambda s: {"out": "b"})
    graph.add_node(
        "m1", lambda s, parallel_results: {"first": [r.state["out"] for r in parallel_results]}
    )
    graph.add_node("c", lambda s: {"out": "c" + str(len(s["first"]))})
    graph.add_node("d", lambda s: {"out": "d"})
    graph.add_node("e", lambda s: {"out": "e"})
    graph.add_node(
        "m2", lambda s, parallel_results: {"second": [r.state["out"] for r in parallel_results]}
    )
    graph.add_parallel_edge("s", ["a", "b"], fan_in="m1")
    graph.add_parallel_edge("m1", ["c", "d", "e"], fan_in="m2")
    for name, to in (("a", "m1"), ("b", "m1"), ("c", "m2"), ("d", "m2"), ("e", "m2")):
        graph.add_edge(name, to)
    graph.add_edge("m2", END)
    final = graph.compile().invoke()
    assert final["first"] == ["a", "b"]
    assert final["second"] == ["c2", "d", "e"]


def test_one_node_fanning_out_to_two_fan_ins_keeps_both_sets() -> None:
    started: list[str] = []
    both = threading.Barrier(2, timeout=10)

    def branch(name: str) -> Any:
        def run(state: dict[str, Any]) -> dict[str, Any]:
            started.append(name)
            if name in ("a", "c"):
                both.wait()  # a (set 1) and c (set 2) must be running at the same time
            return {"out": name}

        return run

    graph = Graph()
    graph.add_node("s")
    for name in "abcd":
        graph.add_node(name, branch(name))
    graph.add_node(
        "m1", lambda s, parallel_results: {"one": [r.state["out"] for r in parallel_results]}
    )
    graph.add_node(
        "m2", lambda s, parallel_results: {"two": [r.state["out"] for r in parallel_results]}
    )
    graph.add_parallel_edge("s", ["a", "b"], fan_in="m1")
    graph.add_parallel_edge("s", ["c", "d"], fan_in="m2")
    for name, to in (("a", "m1"), ("b", "m1"), ("c", "m2"), ("d", "m2"), ("m1", "m2")):
        graph.add_edge(name, to)
    final = graph.compile().invoke()
    assert final["one"] == ["a", "b"]
    assert final["two"] == ["c", "d"]
    assert sorted(started) == ["a", "b", "c", "d"]


def test_fan_out_from_start() -> None:
    graph = Graph()
    graph.add_node("a", lambda s: {"out": 1})
    graph.add_node("b", lambda s: {"out": 2})
    graph.add_node("m", collect)
    graph.add_parallel_edge(START, ["a", "b"], fan_in="m")
    graph.add_edge("a", "m")
    graph.add_edge("b", "m")
    assert graph.compile().invoke()["seen"] == [("a", True, 1), ("b", True, 2)]


def _scoped_graph() -> Graph:
    graph = Graph()
    for name in ("first", "split", "a", "b", "m", "last"):
        graph.add_node(
            name, lambda s, parallel_results=None, name=name: {"trail": [*s.get("trail", []), name]}
        )
    graph.add_parallel_edge("split", ["a", "b"], fan_in="m")
    graph.add_edge("a", "m")
    graph.add_edge("b", "m")
    return graph


def test_scoped_run_executes_entry_and_stops_before_exit_and_fans_out_inside() -> None:
    workflow = _scoped_graph().compile()
    assert workflow.invoke(entry_point="split", exit_point="last")["trail"] == ["split", "m"]
    assert workflow.invoke(entry_point="a", exit_point="m")["trail"] == ["a"]
    assert workflow.invoke(exit_point="split")["trail"] == ["first"]


@pytest.mark.parametrize(
    ("entry", "exit", "message"),
    [
        ("nope", END, "--entry-point: unknown node 'nope'"),
        (START, "lsat", "--exit-point: unknown node 'lsat' (did you mean 'last'?)"),
        ("a", "a", "are the same node 'a'"),
        ("last", "first", "no path from 'last' to 'first'"),
    ],
)
def test_bad_scopes_are_rejected(entry: str, exit: str, message: str) -> None:
    import re

    from tead import ScopeError

    with pytest.raises(ScopeError, match=re.escape(message)):
        _scoped_graph().compile().invoke(entry_point=entry, exit_point=exit)


def test_stream_yields_every_kind_of_event_with_timestamps() -> None:
    events = list(_static_fanout().compile().stream())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"node_started", "node_finished", "fanout_started", "branch_finished", "fan_in"} <= set(
        kinds
    )
    assert kinds.count("branch_finished") == 3
    assert all(e["ts"].endswith("Z") for e in events)
    assert events[-1]["status"] == "succeeded" and events[-1]["state"]["split"] is True
    branch_paths = {e["path"] for e in events if e["event"] == "node_finished" and e["path"]}
    assert branch_paths == {"a", "b", "c"}


def test_stream_re_raises_a_failed_run_after_its_last_event() -> None:
    graph = Graph()
    graph.add_node("boom", lambda s: 1 / 0)
    events: list[dict[str, Any]] = []
    with pytest.raises(NodeError):
        events.extend(graph.compile().stream())
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "failed"


def test_closing_a_stream_early_stops_the_run_before_its_next_node() -> None:
    """`close()` on the generator cancels the run and waits for it: the running node
    finishes, no later node runs, and no run thread is left behind."""
    go = threading.Event()
    ran: list[str] = []
    graph = Graph()
    graph.add_node("slow", lambda s: ran.append("slow") if go.wait(5) else None)
    graph.add_node("later", lambda s: ran.append("later"))
    graph.add_edge("slow", "later")
    stream = graph.compile().stream()
    for event in stream:
        if event["event"] == "node_started":
            break
    threading.Timer(0.3, go.set).start()  # lets `slow` return while close() waits
    stream.close()
    assert ran == ["slow"]
    assert "tead-stream" not in {t.name for t in threading.enumerate()}


def test_parallel_flow_result_reads_as_a_mapping() -> None:
    result = ParallelFlowResult(branch="a", success=True, state={"x": 1}, timing_ms=1.5)
    assert result["state"] == {"x": 1}
    assert result.get("nope", 7) == 7
    assert dict(result)["branch"] == "a"
    assert result.to_dict()["attempt_errors"] == []
    with pytest.raises(KeyError):
        result["nope"]


def test_cancel_token_stops_a_run_inside_a_fan_out_at_once() -> None:
    """Cancelling abandons the stuck branch and raises RunCancelled with the reason."""
    from tead import RunCancelled
    from tead.parallel.cancel import CancelToken

    token = CancelToken()
    graph = Graph()
    graph.add_node("s")
    graph.add_node("stuck", lambda s: time.sleep(30))
    graph.add_node("quick", lambda s: token.cancel("timed_out"))
    graph.add_node("m")
    graph.add_parallel_edge("s", ["stuck", "quick"], fan_in="m")
    graph.add_edge("stuck", "m")
    graph.add_edge("quick", "m")
    started = time.monotonic()
    with pytest.raises(RunCancelled, match="run timed out") as info:
        graph.compile().invoke(cancel=token)
    assert info.value.reason == "timed_out"
    assert time.monotonic() - started < 10


def test_cancel_token_stops_between_nodes_and_results_hook_sees_fan_outs() -> None:
    from tead import RunCancelled
    from tead.parallel.cancel import CancelToken

    token = CancelToken()
    seen: list[tuple[str, str, list[str]]] = []
    graph = Graph()
    graph.add_node("s")
    graph.add_node("a", lambda s: {"out": 1})
    graph.add_node("m", lambda s, parallel_results: token.cancel() and None)
    graph.add_node("never", lambda s: {"ran": True})
    graph.add_parallel_edge("s", "a", fan_in="m")
    graph.add_edge("a", "m")
    with pytest.raises(RunCancelled, match="run cancelled"):
        graph.compile().invoke(
            cancel=token,
            on_results=lambda path, src, join, rs: seen.append((src, join, [r.branch for r in rs])),
        )
    assert seen == [("s", "m", ["a"])]
