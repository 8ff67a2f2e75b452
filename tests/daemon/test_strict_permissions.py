"""strict_permissions (on by default, like sshd's StrictModes): whoever can write the
workflow folder or a workflow file can run code as the daemon's user, so the daemon
refuses a folder, or a file, that group, others or another user could change."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.daemon_fixture import DaemonProcess

GOOD = """\
name: {name}
on: {{dispatch: {{}}}}
nodes:
  - name: a
    run: return {{}}
"""


def refused_start(daemon: DaemonProcess) -> str:
    """Start the daemon, expect exit 2; its one line of output."""
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=60) == 2, daemon.logs()
    lines = daemon.logs().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def errors_by_file(daemon: DaemonProcess) -> dict[str, str | None]:
    listed = daemon.get("/api/v1/workflows").json()["workflows"]
    return {Path(w["path"]).name: w["error"] for w in listed}


def test_a_group_writable_folder_stops_the_daemon_unless_opted_out(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Folder mode 0775: one line, exit 2; TEAD_STRICT_PERMISSIONS=false starts and runs."""
    daemon = daemon_factory()
    daemon.write("good.yaml", GOOD.format(name="good"))
    daemon.workflows.chmod(0o775)
    line = refused_start(daemon)
    assert line == (
        f"tead: workflow folder {daemon.workflows} is writable by group (mode 0775); "
        "anyone who can write there runs code as tead (chmod go-w it, or set "
        "strict_permissions: false)"
    )
    relaxed = daemon_factory(root=daemon.root, env={"TEAD_STRICT_PERMISSIONS": "false"})
    relaxed.start()
    assert relaxed.wait_run(relaxed.dispatch("good")["id"])["status"] == "succeeded"


def test_a_folder_above_must_be_safe_too_unless_sticky(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """A world-writable folder above the workflow folder lets anyone swap the folder:
    refused, unless it has the sticky bit (as /tmp does)."""
    above = tmp_path / "shared"
    daemon = daemon_factory(root=above)
    daemon.write("good.yaml", GOOD.format(name="good"))
    above.chmod(0o777)
    line = refused_start(daemon)
    assert line.startswith(f"tead: folder {above} above the workflow folder is writable by")
    above.chmod(0o1777)
    daemon.start()
    assert daemon.wait_run(daemon.dispatch("good")["id"])["status"] == "succeeded"


def test_a_symlinked_folder_is_judged_by_its_target(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """workflows -> a world-writable folder elsewhere is refused like the folder itself."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    target.chmod(0o777)
    daemon = daemon_factory(root=tmp_path / "d")
    daemon.root.mkdir()
    os.symlink(target, daemon.workflows)
    line = refused_start(daemon)
    assert "is writable by group and others (mode 0777)" in line


def test_a_writable_or_foreign_file_is_listed_invalid_and_the_rest_runs(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A workflow file writable by others or owned by another user is refused with the
    reason; chmod fixes it while the daemon runs; the opt-out accepts both."""
    daemon = daemon_factory()
    daemon.write("good.yaml", GOOD.format(name="good"))
    loose = daemon.write("loose.yaml", GOOD.format(name="loose"))
    loose.chmod(0o666)
    foreign = daemon.write("foreign.yaml", GOOD.format(name="foreign"))
    os.chown(foreign, 12345, 12345)  # the tests run as root
    daemon.start()
    errors = errors_by_file(daemon)
    assert errors["good.yaml"] is None
    assert errors["loose.yaml"] == (
        f"{loose}: refused: the file is writable by group and others (mode 0666) "
        "(strict_permissions)"
    )
    assert errors["foreign.yaml"] == (
        f"{foreign}: refused: the file is owned by another user (uid 12345) (strict_permissions)"
    )
    assert daemon.wait_run(daemon.dispatch("good")["id"])["status"] == "succeeded"
    assert daemon.post("/api/v1/workflows/loose/dispatch", json={}).status_code in (404, 409)

    loose.chmod(0o644)
    daemon.wait_for(
        lambda: errors_by_file(daemon)["loose.yaml"] is None, timeout_s=20, what="loose ok"
    )
    assert daemon.wait_run(daemon.dispatch("loose")["id"])["status"] == "succeeded"
    daemon.stop()

    loose.chmod(0o666)
    relaxed = daemon_factory(root=daemon.root, env={"TEAD_STRICT_PERMISSIONS": "false"})
    relaxed.start()
    assert errors_by_file(relaxed) == {"good.yaml": None, "loose.yaml": None, "foreign.yaml": None}


def test_a_folder_made_writable_while_running_unloads_its_workflows(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """After `chmod o+w` on the folder, the next rescan lists every file as refused (no
    code from there is loaded any more); chmod back and they load again."""
    daemon = daemon_factory()
    daemon.write("good.yaml", GOOD.format(name="good"))
    daemon.start()
    daemon.workflows.chmod(0o757)
    error = daemon.wait_for(
        lambda: errors_by_file(daemon)["good.yaml"], timeout_s=20, what="the refusal"
    )
    assert "is writable by others (mode 0757)" in error
    assert daemon.post("/api/v1/workflows/good/dispatch", json={}).status_code in (404, 409)
    daemon.workflows.chmod(0o755)
    daemon.wait_for(
        lambda: errors_by_file(daemon)["good.yaml"] is None, timeout_s=20, what="reload"
    )


def test_a_link_into_a_writable_subfolder_is_refused(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """linked.yaml -> lib/real.yml is followed, but not if lib/ is writable by others."""
    daemon = daemon_factory()
    daemon.write("lib/real.yml", GOOD.format(name="linked"))
    os.symlink("lib/real.yml", daemon.workflows / "linked.yaml")
    (daemon.workflows / "lib").chmod(0o777)
    daemon.start()
    error = errors_by_file(daemon)["linked.yaml"]
    assert error is not None
    assert f"the link's target folder {daemon.workflows / 'lib'} is writable by" in error
