"""A real Dask cluster for the dask strategy's tests: a `dask scheduler` and two
`dask worker` processes (each under its nanny, one process of 2 threads) on loopback
ports chosen free, started from an empty folder with no path to the tests' files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from distributed import Client

from tests.daemon_fixture import free_port

START_TIMEOUT_S = 60


@dataclass
class DaskProcesses:
    """A scheduler and its workers, started by the tests."""

    address: str
    folder: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        with (self.folder / log).open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                cwd=self.folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def add_worker(self, name: str) -> None:
        self.start(
            "worker",
            self.address,
            "--nthreads",
            "2",
            "--nworkers",
            "1",
            "--name",
            name,
            "--no-dashboard",
            log=f"{name}.log",
        )

    def workers(self) -> int:
        """How many workers the scheduler has now."""
        with Client(self.address, timeout=10, set_as_default=False) as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])

    def wait_for_workers(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.workers() < count:
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text() for p in self.folder.glob("*.log"))
                pytest.fail(f"the dask cluster did not get {count} workers:\n{logs}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the nanny, its worker, their children
            proc.wait()


@contextlib.contextmanager
def dask_cluster_in(folder: Path) -> Iterator[DaskProcesses]:
    """A scheduler and two workers on loopback, started in `folder` (for a module's fixture)."""
    port = free_port()
    cluster = DaskProcesses(address=f"tcp://127.0.0.1:{port}", folder=folder)
    cluster.start(
        "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard", log="sched.log"
    )
    try:
        for name in ("w1", "w2"):
            cluster.add_worker(name)
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop()
