"""Counters born at zero (issue 13, item 5): a real daemon's /metrics shows, for each
loaded workflow, the series its runs, branches, breakers and schedules can move, at 0,
before any of them moved, so that Prometheus' rate() and increase() see the first event."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon_fixture import DaemonProcess, free_port
from tests.helpers import samples, wait_loaded

GUARDED = """
name: guarded
on:
  schedule:
    - every: 1h
  catchup: skip
  watch:
    paths: ['inbox/*.txt']
settings:
  parallel:
    strategy: process
    circuit_breaker: {failure_threshold: 1, reset_timeout: 1h}
nodes:
  - name: start
  - name: a
    run: |
      raise ConnectionError("down")
  - name: b
  - name: merge
edges:
  - {from: __start__, to: start}
  - {from: start, to: [a, b], parallel: true, fan_in: merge}
  - {from: a, to: merge}
  - {from: b, to: merge}
  - {from: merge, to: __end__}
"""

PLAIN = "name: plain\nnodes:\n  - name: a\n"

ENDS = ("succeeded", "failed", "cancelled", "timed_out", "interrupted")
OUTCOMES = ("success", "error", "timeout", "circuit_open", "cancelled")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for both tests (a start costs seconds on a loaded machine)."""
    daemon = DaemonProcess(root=tmp_path_factory.mktemp("zero"), port=free_port())
    (daemon.workflows / "inbox").mkdir(parents=True)
    daemon.start()
    yield daemon
    try:
        assert daemon.stop() == 0, daemon.logs()[-3000:]
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()


def metric_values(daemon: DaemonProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (name, frozenset(labels.items())): value
        for name, labels, value in samples(daemon.get("/metrics").text)
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


def test_loaded_workflows_have_their_series_at_zero_before_any_run(
    daemon: DaemonProcess,
) -> None:
    """Each trigger kind x run end, each strategy x branch outcome, retries, breaker
    transitions and state, missed schedules under the workflow's policy: all 0 at load."""
    daemon.write("guarded.yaml", GUARDED)
    wait_loaded(daemon, {"guarded"})
    found = metric_values(daemon)
    expected = [
        *(
            key("tead_runs_total", workflow="guarded", trigger=kind, status=status)
            for kind in ("dispatch", "schedule", "catchup", "watch")
            for status in ENDS
        ),
        *(
            key("tead_parallel_flows_total", workflow="guarded", strategy="process", outcome=o)
            for o in OUTCOMES
        ),
        key("tead_parallel_flow_retries_total", workflow="guarded", strategy="process"),
        key("tead_parallel_flow_duration_seconds_count", workflow="guarded", strategy="process"),
        key("tead_parallel_flows_in_flight", strategy="process"),
        key("tead_parallel_fanout_width_count", workflow="guarded"),
        key("tead_missed_schedules_total", workflow="guarded", policy="skip"),
        key("tead_runs_in_progress", workflow="guarded"),
        key("tead_runs_queued", workflow="guarded"),
        key("tead_run_queue_wait_seconds_count", workflow="guarded"),
        key("tead_schedule_delay_seconds_count", workflow="guarded"),
        key("tead_trigger_latency_seconds_count", kind="watch"),
        *(
            key("tead_circuit_breaker_transitions_total", breaker=f"guarded:{b}", to=to)
            for b in ("a", "b")
            for to in ("closed", "half_open", "open")
        ),
        key("tead_circuit_breaker_state", breaker="guarded:a"),
        key("tead_circuit_breaker_state", breaker="guarded:b"),
    ]
    for series in expected:
        assert found.get(series) == 0, f"{series} is {found.get(series)}, not 0"

    # The first failure moves the series that was there, at 0, to 1; the breaker opens.
    run = daemon.wait_run(daemon.dispatch("guarded")["id"])
    assert run["status"] == "succeeded", run  # branch failures are results, not run failures
    found = metric_values(daemon)
    assert (
        found[key("tead_runs_total", workflow="guarded", trigger="dispatch", status="succeeded")]
        == 1
    )
    assert (
        found[key("tead_runs_total", workflow="guarded", trigger="dispatch", status="failed")] == 0
    )
    outcome = key(
        "tead_parallel_flows_total", workflow="guarded", strategy="process", outcome="error"
    )
    assert found[outcome] == 1
    assert found[key("tead_circuit_breaker_state", breaker="guarded:a")] == 2
    assert found[key("tead_circuit_breaker_transitions_total", breaker="guarded:a", to="open")] == 1


def test_a_workflow_added_later_is_born_at_zero_and_only_with_its_own_series(
    daemon: DaemonProcess,
) -> None:
    """A workflow that arrives while the daemon runs gets its series on load; one without
    schedules, watches or fan-outs gets no series for them."""
    daemon.write("plain.yaml", PLAIN)
    wait_loaded(daemon, {"plain"})
    found = metric_values(daemon)
    for status in ENDS:
        assert (
            found[key("tead_runs_total", workflow="plain", trigger="dispatch", status=status)] == 0
        )
    plain = [(name, dict(labels)) for name, labels in found if ("workflow", "plain") in labels]
    kinds = {labels.get("trigger") for name, labels in plain if name == "tead_runs_total"}
    assert kinds == {"dispatch"}
    names = {name for name, _ in plain}
    assert not any(
        n.startswith(("tead_parallel_", "tead_missed_", "tead_schedule_")) for n in names
    )


REMOTE = """
name: farmed
settings:
  parallel:
    strategy: remote
    remote: {hosts: [gpu1.example, {host: "ops@gpu2.example:2222", slots: 2}], known_hosts: /k}
nodes:
  - name: start
  - name: work
  - name: merge
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "[1, 2]", fan_in: merge}
  - {from: work, to: merge}
  - {from: merge, to: __end__}
"""


def test_the_hosts_of_a_remote_fan_out_have_their_command_counter_at_zero(
    daemon: DaemonProcess,
) -> None:
    """`tead_remote_commands_total` of each host a remote fan-out names, labelled as the
    workflow writes it (the executor's label), is 0 at load: nothing was connected."""
    daemon.write("farmed.yaml", REMOTE)
    wait_loaded(daemon, {"farmed"})
    found = metric_values(daemon)
    for host in ("gpu1.example", "ops@gpu2.example:2222"):
        assert found.get(key("tead_remote_commands_total", host=host)) == 0, host
    assert not any(name == "tead_remote_host_up" for name, _ in found)  # not known until tried
