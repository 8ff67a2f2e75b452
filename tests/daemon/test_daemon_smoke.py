"""The smallest end-to-end check of the daemon: start, dispatch, history, stop."""

from __future__ import annotations

from tests.daemon_fixture import DaemonProcess


def test_dispatch_runs_and_the_run_is_recorded(daemon: DaemonProcess) -> None:
    daemon.write(
        "hello.yaml",
        """
        name: hello
        on:
          dispatch:
            inputs:
              who: {type: string, default: world}
        nodes:
          - name: greet
            run: |
              return {"greeting": "hello " + state["who"], "kind": state["trigger"]["kind"]}
        """,
    )
    daemon.wait_for(
        lambda: any(
            w["name"] == "hello" and w["valid"]
            for w in daemon.get("/api/v1/workflows").json()["workflows"]
        ),
        what="the workflow to load",
    )
    run = daemon.wait_run(daemon.dispatch("hello", {"who": "tead"})["id"])
    assert run["status"] == "succeeded"
    assert run["final_state"]["greeting"] == "hello tead"
    assert run["final_state"]["kind"] == "dispatch"
    assert daemon.stop() == 0
