"""What the daemon and the CLI read from the workflow folder, and what errors show of it.

Only regular files are read (a FIFO, a device, a socket or a directory named `*.yaml` is
one error line each, never opened for reading); a symlink that leaves the folder is
refused by the daemon; load errors locate problems without quoting the file's content.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunTead
from tests.daemon_fixture import ROOT, DaemonProcess
from tests.helpers import timed_run

SECRET = "s3cr3t-Tr0ub4dor&3"  # must never appear in an API answer or CLI output
SHADOW = f"root:$6${SECRET}$xyz:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n"
PASSWD = "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
VALUES = f"""\
name: values
"{SECRET}": 1
{SECRET}-2: 2
timeout: "{SECRET}"
on:
  schedule:
    - cron: "{SECRET} * * * *"
    - {{cron: "0 0 * * *", timezone: "{SECRET}"}}
  watch: {{paths: ["[{SECRET}"]}}
  dispatch:
    inputs:
      "{SECRET} x": {{type: strin}}
      n: {{type: integer, default: "{SECRET}"}}
settings: {{parallel: {{remote: {{hosts: ["{SECRET} host"]}}}}}}
nodes:
  - name: a
    run: return {{}}
edges:
  - {{from: a, to: "{SECRET}"}}
"""
GOOD = """\
name: good
on: {dispatch: {}}
nodes:
  - name: a
    run: return {}
"""


def errors_by_file(daemon: DaemonProcess) -> dict[str, str | None]:
    listed = daemon.get("/api/v1/workflows").json()["workflows"]
    return {Path(w["path"]).name: w["error"] for w in listed}


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Bind a unix socket at a path (closed at the end)."""
    made: list[socket.socket] = []

    def bind(path: Path) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        made.append(sock)

    yield bind
    for sock in made:
        sock.close()


def test_odd_entries_are_one_error_line_each_and_never_stop_the_daemon(
    daemon_factory: Callable[..., DaemonProcess], unix_socket: Callable[[Path], None]
) -> None:
    """FIFOs, devices, sockets, directories and oversized files named *.yaml are listed
    with one clear line each; added while the daemon runs, they never block it (a FIFO
    blocked it forever, a symlink to /dev/zero made it read without end)."""
    daemon = daemon_factory()
    folder = daemon.workflows
    folder.mkdir(parents=True)
    daemon.write("good.yaml", GOOD)
    os.mkfifo(folder / "fifo.yaml")
    os.mknod(folder / "dev.yaml", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
    (folder / "adir.yaml").mkdir()
    unix_socket(folder / "sock.yaml")
    (folder / "big.yaml").write_bytes(b"# padding\n" * 600_000)  # 6 MB > the 5 MiB cap
    daemon.start()
    errors = errors_by_file(daemon)
    assert errors["good.yaml"] is None
    expected = {
        "fifo.yaml": "is a FIFO (named pipe), not a workflow file",
        "dev.yaml": "is a character device, not a workflow file",
        "adir.yaml": "is a directory, not a workflow file",
        "sock.yaml": "is a socket, not a workflow file",
        "big.yaml": "larger than 5242880 bytes",
    }
    for name, message in expected.items():
        assert errors[name] == f"{folder / name}: {message}"

    # the same things arriving while the daemon runs (through file events)
    os.mkfifo(folder / "fifo2.yaml")
    os.symlink("/dev/zero", folder / "zero.yaml")
    os.mknod(folder / "dev2.yaml", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    for _ in range(20):
        assert daemon.get("/healthz").status_code == 200
    errors = daemon.wait_for(
        lambda: (
            (e := errors_by_file(daemon))
            and {"fifo2.yaml", "zero.yaml", "dev2.yaml"} <= set(e)
            and e
        ),
        timeout_s=20,
        what="the new entries to be listed",
    )
    assert "is a FIFO" in errors["fifo2.yaml"]
    assert "is a character device" in errors["dev2.yaml"]
    assert "symlink to a file outside the workflow folder" in errors["zero.yaml"]
    assert httpx.get(f"{daemon.url}/healthz", timeout=2).status_code == 200
    assert daemon.wait_run(daemon.dispatch("good")["id"])["status"] == "succeeded"


def test_validate_and_run_refuse_a_fifo_at_once(tead_cli: RunTead, tmp_path: Path) -> None:
    """`tead validate` / `tead run` on a FIFO: one line, exit 2 (open() blocked forever)."""
    os.mkfifo(tmp_path / "pipe.yaml")
    for command in ("validate", "run"):
        proc, _ = timed_run(tead_cli, command, "pipe.yaml", limit=20)
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [
            "tead: pipe.yaml: is a FIFO (named pipe), not a workflow file"
        ] or proc.stderr.splitlines() == ["pipe.yaml: is a FIFO (named pipe), not a workflow file"]


def test_validate_follows_a_symlink_the_user_named_but_refuses_devices(
    tead_cli: RunTead, tmp_path: Path
) -> None:
    """The CLI reads the file the user named, symlink or not; /dev/zero is one line."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "real.yaml").write_text(GOOD)
    os.symlink(elsewhere / "real.yaml", tmp_path / "link.yaml")
    os.symlink("/dev/zero", tmp_path / "zero.yaml")
    ok, _ = timed_run(tead_cli, "validate", "link.yaml")
    assert ok.returncode == 0, ok.stderr
    zero, _ = timed_run(tead_cli, "validate", "zero.yaml")
    assert zero.returncode == 2
    assert zero.stderr.strip().endswith("zero.yaml: is a character device, not a workflow file")
    assert len(zero.stderr.strip().splitlines()) == 1


def test_load_errors_never_show_the_files_content(
    daemon_factory: Callable[..., DaemonProcess], tead_cli: RunTead, tmp_path: Path
) -> None:
    """A symlink to a secret file is refused; errors in files shaped like /etc/shadow,
    /etc/passwd or holding secrets in keys and values locate the problems without
    quoting them (the API showed every line of /etc/shadow as an "unknown key")."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text(SHADOW)
    daemon = daemon_factory()
    folder = daemon.workflows
    folder.mkdir(parents=True)
    os.symlink(outside / "shadow", folder / "x.yaml")
    daemon.write("shadow.yaml", SHADOW)
    daemon.write("passwd.yaml", PASSWD)
    daemon.write("values.yaml", VALUES)
    daemon.write("dup.yaml", f'"{SECRET}": 1\n"{SECRET}": 2\n')
    daemon.write("lib/real.yml", GOOD)
    os.symlink("lib/real.yml", folder / "linked.yaml")  # inside the folder: allowed
    daemon.start()

    answer = daemon.get("/api/v1/workflows")
    assert answer.status_code == 200
    assert SECRET not in answer.text
    assert "root:" not in answer.text and "/bin/bash" not in answer.text
    errors = errors_by_file(daemon)
    assert errors["linked.yaml"] is None
    assert errors["x.yaml"] == (
        f"{folder / 'x.yaml'}: refused: a symlink to a file outside the workflow folder "
        "(put the file itself in the folder)"
    )
    assert errors["shadow.yaml"] is not None
    assert f"{folder / 'shadow.yaml'}:1:1: unknown key" in errors["shadow.yaml"].splitlines()
    values = errors["values.yaml"]
    assert values is not None
    assert len(values.splitlines()) >= 8  # every problem is still reported, with its place
    assert f"{folder / 'values.yaml'}:4:10: timeout: invalid duration '…'" in values

    listing = subprocess.run(
        [sys.executable, "-m", "tead", "workflows", "--url", daemon.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert SECRET not in listing.stdout + listing.stderr

    names = ["x.yaml", "shadow.yaml", "passwd.yaml", "values.yaml", "dup.yaml"]
    proc, _ = timed_run(tead_cli, "validate", "--debug", *(str(folder / n) for n in names))
    assert proc.returncode == 2
    assert SECRET not in proc.stdout + proc.stderr
    assert "root:" not in proc.stderr


def test_a_typo_in_a_key_still_gets_a_hint(daemon: DaemonProcess) -> None:
    """Keys that look like typos are named, with the key they probably meant."""
    daemon.write("typo.yaml", GOOD.replace("nodes:", "nodse: []\nnodes:"))
    error = daemon.wait_for(
        lambda: errors_by_file(daemon).get("typo.yaml"), timeout_s=20, what="typo.yaml"
    )
    assert "unknown key 'nodse' (did you mean 'nodes'?)" in error
    assert httpx.get(f"{daemon.url}/healthz", timeout=2).status_code == 200
