"""The dask strategy's settings and setup: validation of `settings.parallel.dask`, the
missing extra, an unreachable scheduler, and `address: local` (a LocalCluster tead owns)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RunTead
from tests.daemon_fixture import free_port
from tests.executors.dask_common import for_each_flow
from tests.helpers import tead_env, timed_run

WORKFLOW = for_each_flow(
    "dask_setup",
    settings="settings:\n  parallel:\n    strategy: dask\n    $dask\n",
    start='return {"items": [1, 2, 3]}',
    node="double",
    work='return {"twice": state["item"] * 2}',
    join='return {"twice": [r.state["twice"] for r in parallel_results]}',
)


def flow(write_workflow: Callable[..., Path], dask: str) -> Path:
    path: Path = write_workflow(WORKFLOW.replace("$dask", dask))
    return path


def test_address_local_runs_on_a_local_cluster_tead_owns(
    tead_cli: RunTead, write_workflow: Callable[..., Path]
) -> None:
    """`address: local` starts a LocalCluster for the command and shuts it down with it."""
    path = flow(write_workflow, "dask: {address: local}\n    max_workers: 2")
    proc, _ = timed_run(tead_cli, "run", str(path), "-q", limit=90)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["twice"] == [2, 4, 6]
    assert "Traceback" not in proc.stderr


def test_an_unreachable_scheduler_fails_the_run_within_the_connect_timeout(
    tead_cli: RunTead, write_workflow: Callable[..., Path]
) -> None:
    """Nobody listens at the address: the run fails with one line naming it and the key,
    after about `connect_timeout`."""
    address = f"tcp://127.0.0.1:{free_port()}"
    path = flow(write_workflow, f"dask: {{address: '{address}', connect_timeout: 2s}}")
    proc, took = timed_run(tead_cli, "run", str(path), "-q", limit=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"tead: dask: cannot reach the scheduler at {address} within 2 s "
        "(settings.parallel.dask.address)"
    ]
    assert took < 20


@pytest.mark.parametrize(
    ("dask", "message"),
    [
        ("", "strategy 'dask' needs `dask: {address: ...}` in its parallel settings"),
        ("dask: {address: 'scheduler:8786'}", "settings.parallel.dask.address: invalid dask"),
        ("dask: {address: local, workers: 2}", "workers"),
        ("dask: {address: local, connect_timeout: 0}", "connect_timeout"),
    ],
)
def test_bad_dask_settings_fail_validation(
    tead_cli: RunTead, write_workflow: Callable[..., Path], dask: str, message: str
) -> None:
    """Each mistake in `settings.parallel.dask` is one error at load, naming it."""
    proc = tead_cli("validate", str(flow(write_workflow, dask)))
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_per_edge_dask_address_is_used(
    tead_cli: RunTead, write_workflow: Callable[..., Path]
) -> None:
    """`dask:` on a fan-out edge overrides the settings' (here: an unreachable default)."""
    text = WORKFLOW.replace("$dask", "dask: {address: 'tcp://127.0.0.1:9', connect_timeout: 1s}")
    text = text.replace("fan_in: join}", "fan_in: join, dask: {address: local}, max_workers: 2}")
    proc, _ = timed_run(tead_cli, "run", str(write_workflow(text)), "-q", limit=90)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["twice"] == [2, 4, 6]


BLOCKED = (
    "import sys\n"
    "sys.modules['distributed'] = None  # as if the dask extra were not installed\n"
    "from tead.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_without_the_extra_one_line_names_it(
    tmp_path: Path, write_workflow: Callable[..., Path], command: str
) -> None:
    """Without `distributed` importable, loading a dask workflow fails with one line that
    names the extra to install."""
    path = flow(write_workflow, "dask: {address: local}")
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, command, str(path)],
        cwd=tmp_path,
        env=tead_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].endswith(": strategy 'dask' needs the dask extra (install tead[dask])")
