"""Real SSH hosts for the remote strategy's tests: one OpenSSH `sshd -D` per host, each on a
loopback address of its own (127.0.0.2, 127.0.0.3, ...), started by the tests.

Everything lives in a private folder under /run (0700, root's: StrictModes refuses keys
whose path crosses the world-writable /tmp): a host key per host, a client key, the
authorized keys and a `known_hosts` file listing each host's key. Login is root with that
key only, on loopback only (a dedicated user could not run the test interpreter, which lives
under root's 0700 home). If sshd cannot start, the fixture fails: it never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import descendants

SSHD = "/usr/sbin/sshd"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


@dataclass(eq=False)
class SshHost:
    """One sshd; `address` is how a workflow names it (`root@127.0.0.N:port`)."""

    ip: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    host_key: str = ""

    @property
    def address(self) -> str:
        return f"root@{self.ip}:{self.port}"

    def start(self) -> None:
        config = self.folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.ip}:{self.port}",
                    f"HostKey {self.folder / 'host_ed25519'}",
                    f"AuthorizedKeysFile {self.folder.parent / 'authorized_keys'}",
                    "PidFile none",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes yes",
                    "MaxStartups 200:30:400",
                    "MaxSessions 50",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        with open(self.folder / "sshd.log", "wb") as log_file:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log_file
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.folder / "sshd.log").read_text()
                raise RuntimeError(f"sshd on {self.ip}:{self.port} exited: {log}")
            with contextlib.suppress(OSError), socket.create_connection((self.ip, self.port), 1):
                return
            time.sleep(0.02)
        raise RuntimeError(f"sshd on {self.ip}:{self.port} did not listen within 15 s")

    def session_pids(self) -> set[int]:
        """Every process under this sshd: its sessions and what they run."""
        return descendants(self.process.pid) if self.process is not None else set()

    def processes(self) -> list[str]:
        """The command lines of the processes under this sshd (the `ps` of this host)."""
        found = []
        for pid in sorted(self.session_pids()):
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                found.append(raw.replace(b"\0", b" ").decode(errors="replace").strip())
        return found

    def kill(self) -> None:
        """The host dies: its sshd, its sessions and their processes, at once."""
        if self.process is None:
            return
        # stopped first, then killed: none of them sees another die (as when a machine
        # dies: its worker cannot report its branches' processes as crashed first)
        pids = {self.process.pid, *self.session_pids()}
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        self.process.wait()
        self.process = None

    def freeze(self, frozen: bool = True) -> None:
        """The host goes silent (SIGSTOP), or wakes up (SIGCONT)."""
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        for pid in {*self.session_pids(), *([self.process.pid] if self.process else [])}:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)


@dataclass(eq=False)
class SshLab:
    """`count` sshds sharing one client key and one known_hosts file."""

    count: int
    root: Path = field(init=False)
    hosts: list[SshHost] = field(default_factory=list)

    def __post_init__(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the remote tests start sshd: run them as root (CI does)")
        if not Path(SSHD).exists():
            raise RuntimeError(f"{SSHD} is missing: install openssh-server (.ci/run does)")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="tead-sshd-", dir="/run"))  # 0700
        client = _keygen(self.root / "id_ed25519")
        (self.root / "authorized_keys").write_text(client + "\n")
        lines = []
        for n in range(self.count):
            ip = f"127.0.0.{n + 2}"
            folder = self.root / f"host{n}"
            folder.mkdir(mode=0o700)
            host = SshHost(ip=ip, port=_free_port(ip), folder=folder)
            host.host_key = _keygen(folder / "host_ed25519")
            lines.append(f"[{ip}]:{host.port} {host.host_key}")
            self.hosts.append(host)
        self.known_hosts.write_text("\n".join(lines) + "\n")
        try:
            for host in self.hosts:
                host.start()
        except BaseException:
            self.close()
            raise

    @property
    def identity(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    def remote(
        self, workdir: Path, hosts: list[SshHost] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """`settings.parallel.remote` for these hosts (this interpreter runs the workers)."""
        return {
            "hosts": [h.address for h in (hosts or self.hosts)],
            "known_hosts": str(self.known_hosts),
            "identity": str(self.identity),
            "python": sys.executable,
            "workdir": str(workdir),
            "connect_timeout": 5,
            "keepalive": 1,
            **extra,
        }

    def close(self) -> None:
        for host in self.hosts:
            host.kill()
        shutil.rmtree(self.root, ignore_errors=True)
