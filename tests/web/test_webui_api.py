"""The API the web page needs, on a real daemon: the runs list paged by a `before` cursor
(newest first, filters kept), and a running run's node trace as it goes."""

from __future__ import annotations

from tests.daemon_fixture import DaemonProcess
from tests.helpers import naps, wait_loaded

QUICK = "name: quick\nnodes:\n  - name: a\n    run: |\n      return {}\n"
OTHER = "name: other\nnodes:\n  - name: a\n    run: |\n      return {}\n"


def test_runs_are_paged_with_a_before_cursor(daemon: DaemonProcess) -> None:
    daemon.write("quick.yaml", QUICK)
    daemon.write("other.yaml", OTHER)
    daemon.wait_for(lambda: len(daemon.get("/api/v1/workflows").json()["workflows"]) == 2)
    ids = []
    for n in range(5):
        ids.append(daemon.dispatch("quick" if n != 2 else "other")["id"])
        daemon.wait_run(ids[-1], timeout_s=60)
    newest_first = ids[::-1]
    page = daemon.runs(limit=2)
    assert [r["id"] for r in page] == newest_first[:2]
    page = daemon.runs(limit=2, before=page[-1]["id"])
    assert [r["id"] for r in page] == newest_first[2:4]
    assert [r["id"] for r in daemon.runs(before=page[-1]["id"])] == newest_first[4:]
    quick = [i for n, i in enumerate(ids) if n != 2][::-1]
    assert [r["id"] for r in daemon.runs(workflow="quick", before=quick[0])] == quick[1:]
    assert daemon.runs(status="succeeded", before=ids[0]) == []
    assert daemon.runs(before="no-such-run") == []  # pruned since: an empty page


def test_a_running_runs_nodes_are_shown_as_they_go(daemon: DaemonProcess) -> None:
    daemon.write("naps.yaml", naps(30))
    wait_loaded(daemon, {"naps"})
    run_id = daemon.dispatch("naps")["id"]

    def nodes() -> list[tuple[str, str]]:
        run = daemon.get(f"/api/v1/runs/{run_id}").json()
        return [(n["node"], n["status"]) for n in run["nodes"]]

    daemon.wait_for(lambda: len(nodes()) == 2, timeout_s=60, what="the nap to start")
    assert nodes() == [("first", "succeeded"), ("nap", "running")]
    assert daemon.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
    daemon.post(f"/api/v1/runs/{run_id}/cancel")
    assert daemon.wait_run(run_id, timeout_s=60)["status"] == "cancelled"
    assert nodes()[0] == ("first", "succeeded")
