"""Triggers and the workflow folder, end to end: watch and schedule triggers fire runs,
and the daemon follows the files as editors, scripts and half-finished writes change them."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.daemon_fixture import DaemonProcess

SETTLE_S = 0.5  # after a workflow (re)loads, let the watcher settle on its folders
WATCHER = """
name: {name}
on:
  watch:
    paths: ["{path}"]
nodes:
  - name: a
"""


def listed(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return list(daemon.get("/api/v1/workflows").json()["workflows"])


def by_name(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in listed(daemon)}


def by_file(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {Path(w["path"]).name: w for w in listed(daemon)}


def wait_valid(daemon: DaemonProcess, *names: str, description: str | None = None) -> None:
    """Until every workflow in `names` is listed as valid (with `description` if given)."""

    def ready() -> bool:
        found = by_name(daemon)
        return all(
            n in found
            and found[n]["valid"]
            and (description is None or found[n]["description"] == description)
            for n in names
        )

    daemon.wait_for(ready, what=f"{names} to be valid ({description})")


def finished_runs(daemon: DaemonProcess, workflow: str) -> list[dict[str, Any]]:
    return [
        r
        for r in daemon.runs(workflow=workflow, limit=1000)
        if r["status"] not in ("queued", "running")
    ]


def versioned(name: str, version: int, *, on: str = "") -> str:
    """A workflow whose description and result name its version (`on`: its triggers)."""
    return (
        f"name: {name}\ndescription: version {version}\n{on}"
        f"nodes:\n  - name: step\n    run: |\n      return {{'version': {version}}}\n"
    )


# --- watch triggers -------------------------------------------------------------------------


def test_watch_trigger_fires_on_a_new_matching_file_only(daemon: DaemonProcess) -> None:
    """A new inbox/*.txt fires with state["trigger"] = its change; other files fire nothing."""
    inbox = daemon.workflows / "inbox"
    inbox.mkdir()
    (daemon.workflows / "elsewhere").mkdir()
    daemon.write(
        "on_add.yaml",
        """
        name: on_add
        on:
          watch:
            paths: ["inbox/*.txt"]
        nodes:
          - name: look
            run: |
              return {"seen": state["trigger"]}
        """,
    )
    wait_valid(daemon, "on_add")
    assert by_name(daemon)["on_add"]["triggers"]["watch"]["paths"] == ["inbox/*.txt"]
    time.sleep(SETTLE_S)

    (inbox / "notes.log").write_text("wrong suffix")
    (daemon.workflows / "elsewhere" / "b.txt").write_text("wrong folder")
    (daemon.workflows / "c.txt").write_text("wrong folder")
    time.sleep(1.0)  # give those a chance to (wrongly) fire before the matching one
    target = inbox / "a.txt"
    target.write_text("hello")
    expected = {"path": str(target.resolve()), "event": "added"}

    runs = daemon.wait_for(
        lambda: [r for r in finished_runs(daemon, "on_add") if expected in r["trigger"]["changes"]],
        what="a watch run for inbox/a.txt",
    )
    run = daemon.get(f"/api/v1/runs/{runs[0]['id']}").json()
    assert run["status"] == "succeeded", run
    assert run["trigger"]["kind"] == "watch"
    assert run["final_state"]["seen"] == run["trigger"]  # state["trigger"] is the trigger
    every_path = {
        c["path"] for r in daemon.runs(workflow="on_add") for c in r["trigger"]["changes"]
    }
    assert every_path == {str(target.resolve())}


def test_watch_trigger_with_deleted_events_fires_on_delete_only(daemon: DaemonProcess) -> None:
    """`events: [deleted]` ignores the file's creation and fires when it is deleted."""
    trash = daemon.workflows / "trash"
    trash.mkdir()
    daemon.write(
        "on_any.yaml",
        """
        name: on_any
        on:
          watch:
            paths: ["trash/*.txt"]
        nodes:
          - name: a
        """,
    )
    daemon.write(
        "on_delete.yaml",
        """
        name: on_delete
        on:
          watch:
            paths: ["trash/*.txt"]
            events: [deleted]
        nodes:
          - name: a
            run: |
              return {"changes": state["trigger"]["changes"]}
        """,
    )
    wait_valid(daemon, "on_any", "on_delete")
    time.sleep(SETTLE_S)
    doomed = trash / "x.txt"
    doomed.write_text("soon gone")
    # on_any sees the same batch of file events as on_delete, so once on_any has run
    # for the new file, on_delete has had its chance to fire (and must not have).
    daemon.wait_for(lambda: daemon.runs(workflow="on_any"), what="on_any to fire on added")
    assert daemon.runs(workflow="on_delete") == []

    doomed.unlink()
    runs = daemon.wait_for(
        lambda: finished_runs(daemon, "on_delete"), what="on_delete to fire on deleted"
    )
    run = daemon.get(f"/api/v1/runs/{runs[-1]['id']}").json()
    assert run["status"] == "succeeded", run
    gone = {"path": str(doomed.resolve()), "event": "deleted"}
    assert run["trigger"] == {"kind": "watch", "changes": [gone]}
    assert run["final_state"]["changes"] == [gone]
    assert all(
        c["event"] in ("added", "modified")
        for r in daemon.runs(workflow="on_any")
        for c in r["trigger"]["changes"]
    )


def watch_fires(daemon: DaemonProcess, name: str, target: Path) -> None:
    """Create `target`; a run of `name` must see it added."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("x")
    expected = {"path": str(target.resolve()), "event": "added"}
    daemon.wait_for(
        lambda: [r for r in daemon.runs(workflow=name) if expected in r["trigger"]["changes"]],
        what=f"{name} to fire for {target}",
    )


def test_an_absolute_watch_path_whose_folder_appears_later(daemon: DaemonProcess) -> None:
    """An absolute glob outside the workflow folder, in a folder created after loading."""
    later = daemon.root / "later"
    daemon.write("absolute.yaml", WATCHER.format(name="absolute", path=later / "*.txt"))
    wait_valid(daemon, "absolute")
    time.sleep(SETTLE_S)
    later.mkdir()
    time.sleep(SETTLE_S)
    watch_fires(daemon, "absolute", later / "a.txt")


def test_a_relative_watch_path_may_leave_the_workflow_folder(daemon: DaemonProcess) -> None:
    """`../incoming/*.txt` is relative to the workflow file's folder, like any glob."""
    (daemon.root / "incoming").mkdir()
    daemon.write("outside.yaml", WATCHER.format(name="outside", path="../incoming/*.txt"))
    wait_valid(daemon, "outside")
    time.sleep(SETTLE_S)
    watch_fires(daemon, "outside", daemon.root / "incoming" / "a.txt")


def test_double_star_in_a_watch_path_matches_any_depth(daemon: DaemonProcess) -> None:
    """`inbox/**/*.txt` matches inbox/top.txt and inbox/a/b/deep.txt (as in GitHub Actions)."""
    (daemon.workflows / "inbox" / "a" / "b").mkdir(parents=True)
    daemon.write("deep.yaml", WATCHER.format(name="deep", path="inbox/**/*.txt"))
    wait_valid(daemon, "deep")
    time.sleep(SETTLE_S)
    watch_fires(daemon, "deep", daemon.workflows / "inbox" / "a" / "b" / "deep.txt")
    watch_fires(daemon, "deep", daemon.workflows / "inbox" / "top.txt")


def test_a_watch_path_in_a_missing_top_folder_does_not_stop_the_daemon(
    daemon: DaemonProcess,
) -> None:
    """One workflow file with a far-off watch path must not take the daemon down."""
    missing = f"/nonexistent-tead-{os.getpid()}-{time.time_ns()}/*.txt"
    daemon.write("far.yaml", WATCHER.format(name="far", path=missing))
    daemon.write("good.yaml", versioned("good", 1))
    daemon.wait_for(
        lambda: {"far", "good"} <= set(by_name(daemon)), what="both workflows to be listed"
    )
    time.sleep(3)  # the watcher has restarted on the new set of folders by now
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, daemon.logs()[-3000:]
    assert daemon.get("/healthz").status_code == 200
    run = daemon.wait_run(daemon.dispatch("good")["id"])
    assert run["status"] == "succeeded"


# --- schedules ------------------------------------------------------------------------------


def scheduled_times(runs: list[dict[str, Any]]) -> list[datetime]:
    return sorted(
        datetime.fromisoformat(r["trigger"]["scheduled_time"].replace("Z", "+00:00")) for r in runs
    )


def test_interval_and_six_field_cron_schedules_fire(daemon: DaemonProcess) -> None:
    body = textwrap.dedent(
        """
        nodes:
          - name: a
            run: |
              return {"kind": state["trigger"]["kind"], "at": state["trigger"]["scheduled_time"]}
        """
    )
    daemon.write("every.yaml", "name: every\non:\n  schedule:\n    - every: 1s" + body)
    daemon.write("cron.yaml", 'name: cron\non:\n  schedule:\n    - cron: "* * * * * *"' + body)
    for name in ("every", "cron"):
        runs = daemon.wait_for(
            lambda name=name: len(r := finished_runs(daemon, name)) >= 2 and r,
            timeout_s=20,
            what=f"two scheduled runs of {name}",
        )
        for summary in runs:
            run = daemon.get(f"/api/v1/runs/{summary['id']}").json()
            assert run["status"] == "succeeded", run
            assert run["trigger"]["kind"] == "schedule"
            assert run["final_state"] == {
                "trigger": run["trigger"],
                "kind": "schedule",
                "at": run["trigger"]["scheduled_time"],
            }
        times = scheduled_times(runs)
        assert len(set(times)) == len(times)  # one run per fire
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(gap >= 1 and round(gap, 3) == round(gap) for gap in gaps), gaps
        if name == "cron":
            assert all(t.microsecond == 0 for t in times)  # on whole seconds


def test_editing_a_workflow_changes_the_next_run_and_deleting_stops_it(
    daemon: DaemonProcess,
) -> None:
    """Edit a scheduled workflow (next run uses the new file), then delete it (it stops)."""
    on = "on:\n  schedule:\n    - every: 1s\n  dispatch: {}\n"
    path = daemon.write("ed.yaml", versioned("ed", 1, on=on))
    wait_valid(daemon, "ed", description="version 1")
    first_hash = by_name(daemon)["ed"]["content_hash"]
    first = daemon.wait_for(lambda: finished_runs(daemon, "ed"), what="a run of ed v1")[0]
    first = daemon.get(f"/api/v1/runs/{first['id']}").json()
    assert first["final_state"]["version"] == 1
    assert first["workflow_hash"] == first_hash

    daemon.write("ed.yaml", versioned("ed", 2, on=on))
    wait_valid(daemon, "ed", description="version 2")
    second_hash = by_name(daemon)["ed"]["content_hash"]
    assert second_hash != first_hash
    before = {r["id"] for r in daemon.runs(workflow="ed", limit=1000)}
    newer = daemon.wait_for(
        lambda: [r for r in finished_runs(daemon, "ed") if r["id"] not in before],
        what="a scheduled run of ed v2",
    )
    for summary in newer:
        run = daemon.get(f"/api/v1/runs/{summary['id']}").json()
        assert run["final_state"]["version"] == 2
        assert run["workflow_hash"] == second_hash
    dispatched = daemon.wait_run(daemon.dispatch("ed")["id"])
    assert dispatched["final_state"]["version"] == 2
    assert dispatched["workflow_hash"] == second_hash

    path.unlink()
    daemon.wait_for(lambda: "ed" not in by_name(daemon), what="ed to leave the list")
    count = len(daemon.runs(workflow="ed", limit=1000))
    assert count >= 3
    time.sleep(3)  # three intervals: no new scheduled run may appear
    assert len(daemon.runs(workflow="ed", limit=1000)) == count
    gone = daemon.post("/api/v1/workflows/ed/dispatch", json={"inputs": {}})
    assert gone.status_code == 404


# --- the workflow folder --------------------------------------------------------------------


def test_broken_and_binary_files_are_listed_with_errors_then_fixed(daemon: DaemonProcess) -> None:
    daemon.write("good.yaml", versioned("good", 1))
    daemon.write(
        "broken.yaml",
        """
        name: broken
        nodes:
          - name: a
            run: [unclosed
        """,
    )
    daemon.write(
        "typo.yaml",
        """
        name: typo
        nodes:
          - name: merge
        edges:
          - {from: __start__, to: mrege}
        """,
    )
    (daemon.workflows / "bin.yaml").write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 8)

    def all_listed() -> dict[str, dict[str, Any]] | None:
        found = by_file(daemon)
        wanted = {"good.yaml", "broken.yaml", "typo.yaml", "bin.yaml"}
        return found if wanted <= set(found) else None

    found = daemon.wait_for(all_listed, what="every file to be listed")
    assert found["good.yaml"]["valid"] is True
    for name in ("broken.yaml", "typo.yaml", "bin.yaml"):
        assert found[name]["valid"] is False, found[name]
        assert found[name]["error"].startswith(str(daemon.workflows / name)), found[name]
    assert re.search(r"broken\.yaml:\d+:\d+: .*YAML", found["broken.yaml"]["error"])
    assert re.search(r"typo\.yaml:5:\d+: .*'mrege'", found["typo.yaml"]["error"])
    assert "UTF-8" in found["bin.yaml"]["error"]

    run = daemon.wait_run(daemon.dispatch("good")["id"])  # the others keep working
    assert run["status"] == "succeeded"
    assert daemon.post("/api/v1/workflows/broken/dispatch").status_code == 409
    metrics = daemon.get("/metrics").text
    errors = re.search(r"^tead_workflow_load_errors_total (\S+)$", metrics, re.M)
    assert errors
    assert float(errors.group(1)) >= 3

    daemon.write("broken.yaml", versioned("broken", 2))
    daemon.write("typo.yaml", versioned("typo", 2))
    daemon.write("bin.yaml", versioned("bin", 2))
    wait_valid(daemon, "good", "broken", "typo", "bin")
    for name in ("broken", "typo", "bin"):
        run = daemon.wait_run(daemon.dispatch(name)["id"])
        assert run["final_state"]["version"] == 2, run
        assert by_name(daemon)[name]["error"] is None


DUP = "name: dup\nnodes:\n  - name: s\n    run: |\n      return {{'from': '{origin}'}}\n"


def test_two_files_with_one_name_the_later_one_is_an_error(daemon: DaemonProcess) -> None:
    """`b_dup.yaml` loads first, then `a_dup.yaml` (earlier in path order) takes the name."""
    daemon.write("b_dup.yaml", DUP.format(origin="b"))
    wait_valid(daemon, "dup")
    daemon.write("a_dup.yaml", DUP.format(origin="a"))

    def both() -> dict[str, dict[str, Any]] | None:
        found = by_file(daemon)
        return found if {"a_dup.yaml", "b_dup.yaml"} <= set(found) else None

    daemon.wait_for(both, what="both files to be listed")
    daemon.wait_for(lambda: not by_file(daemon)["b_dup.yaml"]["valid"], what="b_dup to fail")
    found = by_file(daemon)
    assert found["a_dup.yaml"]["valid"] is True
    assert found["a_dup.yaml"]["name"] == "dup"
    later = found["b_dup.yaml"]
    assert later["name"] == "dup"
    assert later["valid"] is False
    assert later["error"].startswith(str(daemon.workflows / "b_dup.yaml"))
    assert "'dup'" in later["error"]
    assert "a_dup.yaml" in later["error"]
    run = daemon.wait_run(daemon.dispatch("dup")["id"])
    assert run["final_state"]["from"] == "a"

    (daemon.workflows / "a_dup.yaml").unlink()
    daemon.wait_for(
        lambda: set(by_file(daemon)) == {"b_dup.yaml"} and by_file(daemon)["b_dup.yaml"]["valid"],
        what="b_dup to take the name back",
    )
    run = daemon.wait_run(daemon.dispatch("dup")["id"])
    assert run["final_state"]["from"] == "b"


def recreate_folder(daemon: DaemonProcess, name: str) -> None:
    daemon.workflows.mkdir()
    (daemon.workflows / "inbox").mkdir()
    daemon.write(f"{name}.yaml", WATCHER.format(name=name, path="inbox/*.txt"))


def check_watch_fires(daemon: DaemonProcess, name: str) -> None:
    """The watcher follows the (new) folder: a file in inbox/ fires `name`."""
    wait_valid(daemon, name)
    time.sleep(SETTLE_S)
    (daemon.workflows / "inbox" / f"for-{name}.txt").write_text("x")
    daemon.wait_for(
        lambda: [r for r in finished_runs(daemon, name) if r["status"] == "succeeded"],
        what=f"a watch run of {name} in the recreated folder",
    )


def test_workflow_folder_deleted_and_recreated_is_followed(daemon: DaemonProcess) -> None:
    """Replace the folder at once, then delete it for a while: files and watches come back."""
    daemon.write("first.yaml", versioned("first", 1))
    wait_valid(daemon, "first")

    shutil.rmtree(daemon.workflows)  # replaced at once, as `rm -rf && cp -r` does
    recreate_folder(daemon, "second")
    check_watch_fires(daemon, "second")
    assert set(by_name(daemon)) == {"second"}

    shutil.rmtree(daemon.workflows)  # gone for a while, then back
    daemon.wait_for(lambda: listed(daemon) == [], what="the list to empty")
    assert daemon.get("/healthz").status_code == 200
    time.sleep(1.5)
    recreate_folder(daemon, "third")
    check_watch_fires(daemon, "third")
    assert set(by_name(daemon)) == {"third"}
    assert daemon.runs(workflow="second", status="succeeded")  # history survives


def test_half_written_file_ends_valid(daemon: DaemonProcess) -> None:
    """A file seen half-written (not YAML yet) loads once the writer finishes it."""
    text = versioned("half", 1)
    cut = text.index("nodes:") + 3  # "...\nnod": not even YAML yet
    path = daemon.workflows / "half.yaml"
    with path.open("w") as handle:
        handle.write(text[:cut])
        handle.flush()
        os.fsync(handle.fileno())
        time.sleep(0.3)  # long enough for the watcher to see the first half
        handle.write(text[cut:])
    wait_valid(daemon, "half", description="version 1")
    run = daemon.wait_run(daemon.dispatch("half")["id"])
    assert run["final_state"]["version"] == 1


def test_vim_style_saves_end_with_the_right_content(daemon: DaemonProcess) -> None:
    """Saves as new file + delete original + rename, three in a row: the last one wins."""
    path = daemon.write("vim.yaml", versioned("vim", 1))
    wait_valid(daemon, "vim", description="version 1")
    for version in (2, 3, 4):  # write a new file, delete the original, rename
        fresh = path.with_name("vim.yaml~")
        fresh.write_text(versioned("vim", version))
        path.unlink()
        os.rename(fresh, path)
    wait_valid(daemon, "vim", description="version 4")
    assert [w["name"] for w in listed(daemon)] == ["vim"]
    run = daemon.wait_run(daemon.dispatch("vim")["id"])
    assert run["final_state"]["version"] == 4
