"""`on.workflow_run` against a real daemon: runs that trigger runs, the loop guard, and the
shipped webhook example posting to a local HTTP server."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.daemon_fixture import DaemonProcess

Factory = Callable[..., DaemonProcess]
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"

FAILING = """\
name: nightly-import
nodes:
  - name: load
    run: |
      raise ConnectionError("database unreachable")
"""

FOLLOWER = """\
name: after-import
on:
  workflow_run: {workflows: [nightly-import], status: [failed]}
nodes:
  - name: note
    run: |
      return {"seen": state["trigger"]}
"""

ON_SUCCESS_ONLY = """\
name: on-success
on:
  workflow_run: {workflows: [nightly-import], status: [succeeded]}
nodes:
  - name: a
"""


def test_a_failed_run_triggers_its_follower_with_the_run_in_its_trigger(
    daemon_factory: Factory,
) -> None:
    daemon = daemon_factory()
    daemon.write("import.yaml", FAILING)
    daemon.write("after.yaml", FOLLOWER)
    daemon.write("success.yaml", ON_SUCCESS_ONLY)
    daemon.start()
    failed = daemon.wait_run(daemon.dispatch("nightly-import")["id"])
    assert failed["status"] == "failed"
    follower = daemon.wait_for(lambda: daemon.runs(workflow="after-import"), what="follower")[0]
    done = daemon.wait_run(follower["id"])
    assert done["status"] == "succeeded"
    assert done["trigger"] == {
        "kind": "workflow_run",
        "run": {
            "id": failed["id"],
            "workflow": "nightly-import",
            "status": "failed",
            "error": failed["error"],
        },
        "chain": ["nightly-import"],
    }
    assert done["final_state"]["seen"] == done["trigger"]
    time.sleep(1.0)
    assert daemon.runs(workflow="on-success") == []  # its status did not match


PING_PONG = """\
name: {name}
on:
  workflow_run: {{workflows: [{other}]}}
nodes:
  - name: a
"""

SELF = """\
name: self-loop
on:
  workflow_run: {workflows: [self-loop]}
nodes:
  - name: a
"""


def test_the_loop_guard_stops_workflows_triggering_each_other(daemon_factory: Factory) -> None:
    """ping -> pong -> (ping is in the chain: not started); a workflow triggering itself
    runs once."""
    daemon = daemon_factory()
    daemon.write("ping.yaml", PING_PONG.format(name="ping", other="pong"))
    daemon.write("pong.yaml", PING_PONG.format(name="pong", other="ping"))
    daemon.write("self.yaml", SELF)
    daemon.start()
    daemon.dispatch("ping")
    daemon.dispatch("self-loop")
    pong = daemon.wait_for(lambda: daemon.runs(workflow="pong"), what="pong")[0]
    assert daemon.wait_run(pong["id"])["trigger"]["chain"] == ["ping"]
    time.sleep(2.0)
    assert len(daemon.runs(workflow="ping")) == 1
    assert len(daemon.runs(workflow="pong")) == 1
    assert len(daemon.runs(workflow="self-loop")) == 1
    assert "already in the chain ping -> pong (loop guard)" in daemon.logs()


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).received.append({"path": self.path, "body": body})
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server; its URL and the requests it received."""
    received: ClassVar[list[dict[str, Any]]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook/x", received
    server.shutdown()
    server.server_close()


def test_the_webhook_example_posts_when_an_import_fails(
    daemon_factory: Factory, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """examples/notify_webhook.yaml, its URL a secret, posts to a local server."""
    url, received = webhook
    daemon = daemon_factory(env={"TEAD_SECRET_WEBHOOK_URL": url})
    daemon.workflows.mkdir(parents=True)
    shutil.copy(EXAMPLES / "notify_webhook.yaml", daemon.workflows / "notify_webhook.yaml")
    daemon.write("import.yaml", FAILING)
    daemon.start()
    failed = daemon.wait_run(daemon.dispatch("nightly-import")["id"])
    notify = daemon.wait_for(lambda: daemon.runs(workflow="notify-webhook"), what="notify")[0]
    assert daemon.wait_run(notify["id"])["status"] == "succeeded"
    message = f"nightly-import run {failed['id']} failed: {failed['error']}"
    assert received == [{"path": "/hook/x", "body": {"text": message}}]
    assert url not in daemon.get(f"/api/v1/runs/{notify['id']}").text


def test_a_chain_of_workflow_runs_stops_at_four_runs(daemon_factory: Factory) -> None:
    """a -> b -> c -> d, and e (after d) is not started: workflows that follow each other
    cannot start runs without end (GitHub Actions stops at three levels too)."""
    daemon = daemon_factory()
    names = ["a", "b", "c", "d", "e"]
    daemon.write("a.yaml", "name: a\nnodes:\n  - name: n\n")
    for before, name in itertools.pairwise(names):
        daemon.write(
            f"{name}.yaml",
            f"name: {name}\non:\n  workflow_run: {{workflows: [{before}]}}\nnodes:\n  - name: n\n",
        )
    daemon.start()
    daemon.dispatch("a")
    last = daemon.wait_for(lambda: daemon.runs(workflow="d"), what="the run of d")[0]
    assert daemon.wait_run(last["id"])["trigger"]["chain"] == ["a", "b", "c"]
    daemon.wait_for(
        lambda: "the chain a -> b -> c -> d is 4 runs long" in daemon.logs(),
        what="the skipped start logged",
    )
    time.sleep(1.0)
    assert daemon.runs(workflow="e") == []
