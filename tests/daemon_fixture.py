"""A real `tead serve` process on a temporary folder and a free port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaemonProcess:
    """One daemon: its folders, its process, and an HTTP client for its API."""

    root: Path
    port: int
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent by get/post unless given
    log_path: Path | None = None
    # how tead is started (the console script, say, to run it from any folder)
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "tead"])

    @property
    def workflows(self) -> Path:
        return self.root / "workflows"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, name: str, text: str) -> Path:
        """Write a (dedented) workflow file atomically (temp file + rename)."""
        path = self.workflows / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        os.replace(temp, path)
        return path

    def start(self, *, wait: bool = True) -> DaemonProcess:
        self.workflows.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / f"daemon-{int(time.time() * 1000)}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TEAD_RESCAN_INTERVAL": "1", **self.env}
        args = [
            *self.command,
            "serve",
            "--workflows",
            str(self.workflows),
            "--state-dir",
            str(self.state_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            *self.extra_args,
        ]
        with self.log_path.open("w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                args, cwd=self.root, env=env, stdout=log, stderr=log, text=True
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"daemon not ready after {timeout_s} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self.headers)
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self.headers)
        return httpx.post(f"{self.url}{path}", timeout=30, **kwargs)

    def dispatch(self, workflow: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.post(
            f"/api/v1/workflows/{workflow}/dispatch", json={"inputs": inputs or {}}
        )
        assert response.status_code == 202, response.text
        return dict(response.json())

    def wait_run(self, run_id: str, *, timeout_s: float = 30) -> dict[str, Any]:
        """Poll until the run has finished; returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.get(f"/api/v1/runs/{run_id}").json()
            if run["status"] not in ("queued", "running"):
                return dict(run)
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish in {timeout_s} s")

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/runs", params=params).json()["runs"])

    def wait_for(self, check: Callable[[], Any], *, timeout_s: float = 15, what: str = "it") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.logs()[-3000:]}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, *, timeout_s: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """kill -9."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Make daemons (not started); every one still running is killed at the end."""
    made: list[DaemonProcess] = []

    def make(**kwargs: Any) -> DaemonProcess:
        root = kwargs.pop("root", tmp_path)
        daemon = DaemonProcess(root=root, port=kwargs.pop("port", free_port()), **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)


@pytest.fixture
def daemon(daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A started daemon with an empty workflow folder."""
    return daemon_factory().start()
