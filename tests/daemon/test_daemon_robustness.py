"""What must never stop the daemon: odd states, a busy port, odd headers."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable

from tead.daemon.instance import listening_socket
from tests.daemon_fixture import ROOT, DaemonProcess


def test_a_state_with_a_lone_surrogate_is_recorded_and_the_daemon_lives(
    daemon: DaemonProcess,
) -> None:
    """Non-UTF-8 file names come back from os.listdir as lone surrogates."""
    daemon.write(
        "odd.yaml",
        """
        name: odd
        nodes:
          - name: a
            run: |
              return {"name": "caf" + chr(0xDCE9)}
        """,
    )
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    run = daemon.wait_run(daemon.dispatch("odd")["id"])
    assert run["status"] == "succeeded"
    assert run["final_state"]["name"] == "caf\udce9"
    assert daemon.get("/healthz").status_code == 200


def test_a_busy_port_is_one_line_and_exit_2(daemon_factory: Callable[..., DaemonProcess]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        daemon = daemon_factory(port=port)
        daemon.workflows.mkdir(parents=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tead",
                "serve",
                "--workflows",
                str(daemon.workflows),
                "--state-dir",
                str(daemon.state_dir),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=daemon.root,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            check=False,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"tead: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_non_ascii_authorization_header_is_401(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory(env={"TEAD_TOKEN": "secret"}).start()
    response = daemon.post(
        "/api/v1/runs/nope/cancel", headers={"Authorization": "Bearer s\u00e9cret".encode()}
    )
    assert response.status_code == 401
    assert "bearer token" in response.json()["error"]


def test_the_api_socket_says_tcp_so_that_responses_are_not_held_back() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only for an IPPROTO_TCP listener;
    without it every small response waited ~40 ms (Nagle and delayed ACKs)."""
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] > 0
