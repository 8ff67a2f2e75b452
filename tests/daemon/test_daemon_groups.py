"""End to end: a concurrency group stays held until a stopped run's work has really stopped
(cancel, whole-run timeout; thread and process work), and a node that never returns holds
it only for `stop_grace`.

Most of these run the daemon with `isolation: thread` (runs in its own process), where a
stopped run's node goes on until it returns; with the default `isolation: process` the
run's worker is killed instead (test_run_isolation.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon.test_daemon_runs import end_of
from tests.daemon_fixture import DaemonProcess
from tests.helpers import alive, wait_status

Factory = Callable[..., DaemonProcess]
IN_PROCESS = {"TEAD_ISOLATION": "thread"}

# `run:` code that records when it started and ended, and its pid (in files named after the
# run's tag).
NOTE_RUN = """\
    run: |
      import json, os, time
      def note(what):
          path = os.path.join(state["dir"], f"{state['tag']}.{what}")
          with open(path + ".tmp", "w") as f:
              json.dump({"t": time.time(), "pid": os.getpid()}, f)
          os.replace(path + ".tmp", path)
      note("start")
      time.sleep(state["sleep"])
      note("end")
"""

# One node that records when it started and ended.
TIMED_NODE = (
    """\
name: $name
$header
initial_state: {sleep: 0, tag: x}
nodes:
  - name: work
"""
    + NOTE_RUN
)

# The same node as a branch of a fan-out (one branch) on processes or threads.
PROCESS_NODE = (
    """\
name: $name
initial_state: {sleep: 0, tag: x, items: [0]}
settings:
  parallel: {strategy: $strategy, max_workers: 1}
nodes:
  - name: plan
  - name: work
"""
    + NOTE_RUN
    + """  - name: join
edges:
  - {from: plan, to: work, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: work, to: join}
"""
)


def workflow(template: str, name: str, header: str = "", strategy: str = "process") -> str:
    return template.replace("$name", name).replace("$header", header).replace("$strategy", strategy)


def note(folder: Path, tag: str, what: str) -> dict[str, Any] | None:
    path = folder / f"{tag}.{what}"
    return json.loads(path.read_text()) if path.exists() else None


def wait_note(d: DaemonProcess, folder: Path, tag: str, what: str) -> dict[str, Any]:
    return d.wait_for(lambda: note(folder, tag, what), timeout_s=60, what=f"{tag} {what}")  # type: ignore[no-any-return]


def test_a_cancelled_run_holds_its_group_until_its_node_returns(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """Run 1's node sleeps 3 s; it is cancelled 0.3 s in, and run 2 of the same group is
    dispatched at once: run 2's node starts only after run 1's node has ended."""
    d = daemon_factory(env=IN_PROCESS)
    d.write("g.yaml", workflow(TIMED_NODE, "g"))
    d.start()
    first = d.dispatch("g", {"sleep": 3, "tag": "first", "dir": str(tmp_path)})["id"]
    wait_note(d, tmp_path, "first", "start")
    time.sleep(0.3)
    cancelled = d.post(f"/api/v1/runs/{first}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    second = d.dispatch("g", {"sleep": 0, "tag": "second", "dir": str(tmp_path)})["id"]
    assert end_of(d, second, timeout_s=60) == "succeeded"
    first_end = wait_note(d, tmp_path, "first", "end")
    second_start = wait_note(d, tmp_path, "second", "start")
    assert second_start["t"] >= first_end["t"]


def test_a_timed_out_run_holds_its_group_until_its_node_returns(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """`timeout: 1s`, a node that sleeps 3 s, and a second run queued behind it: the first
    is timed_out after ~1 s, but the second's node starts only after the first's ended."""
    d = daemon_factory(env=IN_PROCESS)
    d.write("t.yaml", workflow(TIMED_NODE, "t", "timeout: 1s"))
    d.start()
    first = d.dispatch("t", {"sleep": 3, "tag": "first", "dir": str(tmp_path)})["id"]
    second = d.dispatch("t", {"sleep": 0, "tag": "second", "dir": str(tmp_path)})["id"]
    assert end_of(d, first, timeout_s=60) == "timed_out"
    assert end_of(d, second, timeout_s=60) == "succeeded"
    first_end = wait_note(d, tmp_path, "first", "end")
    second_start = wait_note(d, tmp_path, "second", "start")
    assert second_start["t"] >= first_end["t"]


def test_a_cancelled_process_branch_is_dead_before_the_group_moves_on(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """A process branch sleeping 30 s, cancelled: by the time the group's next run starts
    its node, the first run's worker process is gone (it never reaches its end)."""
    d = daemon_factory()
    d.write("p.yaml", workflow(PROCESS_NODE, "p"))
    d.start()
    first = d.dispatch("p", {"sleep": 30, "tag": "first", "dir": str(tmp_path)})["id"]
    worker = wait_note(d, tmp_path, "first", "start")["pid"]
    assert d.post(f"/api/v1/runs/{first}/cancel").json()["status"] == "cancelled"
    second = d.dispatch("p", {"sleep": 0, "tag": "second", "dir": str(tmp_path)})["id"]
    assert end_of(d, second, timeout_s=60) == "succeeded"
    assert note(tmp_path, "first", "end") is None
    assert not alive(worker) or worker == note(tmp_path, "second", "start")["pid"]


def test_a_node_that_never_returns_holds_its_group_for_stop_grace_only(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """With `stop_grace: 1s`, a cancelled run whose node sleeps 30 s holds its group for
    about a second; then the group moves on and the log says why."""
    d = daemon_factory(env={**IN_PROCESS, "TEAD_STOP_GRACE": "1s"})
    d.write("s.yaml", workflow(TIMED_NODE, "s"))
    d.start()
    first = d.dispatch("s", {"sleep": 30, "tag": "first", "dir": str(tmp_path)})["id"]
    wait_note(d, tmp_path, "first", "start")
    cancelled_at = time.time()
    assert d.post(f"/api/v1/runs/{first}/cancel").json()["status"] == "cancelled"
    second = d.dispatch("s", {"sleep": 0, "tag": "second", "dir": str(tmp_path)})["id"]
    wait_status(d, second, "succeeded", timeout_s=30)
    started = wait_note(d, tmp_path, "second", "start")["t"]
    assert 0.9 <= started - cancelled_at < 10
    assert "releasing its concurrency group" in d.logs()


def test_a_cancelled_thread_branch_holds_the_group_until_it_returns(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """A thread branch sleeping 3 s, its run cancelled: the fan-out gives up on the thread at
    once, but the group's next run starts its node only after that branch's node ended."""
    d = daemon_factory(env=IN_PROCESS)
    d.write("tb.yaml", workflow(PROCESS_NODE, "tb", strategy="thread"))
    d.start()
    first = d.dispatch("tb", {"sleep": 3, "tag": "first", "dir": str(tmp_path)})["id"]
    wait_note(d, tmp_path, "first", "start")
    assert d.post(f"/api/v1/runs/{first}/cancel").json()["status"] == "cancelled"
    second = d.dispatch("tb", {"sleep": 0, "tag": "second", "dir": str(tmp_path)})["id"]
    assert end_of(d, second, timeout_s=60) == "succeeded"
    first_end = wait_note(d, tmp_path, "first", "end")
    assert wait_note(d, tmp_path, "second", "start")["t"] >= first_end["t"]
