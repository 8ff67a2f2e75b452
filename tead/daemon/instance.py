"""What one daemon holds while it runs: its state folder, private and locked, and the
API's listening socket."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tead.daemon.database import private_file
from tead.errors import UsageError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def instance_lock(state_dir: Path) -> Iterator[None]:
    """Hold `state_dir/tead.lock`; UsageError if another daemon holds it."""
    private_dir(state_dir)
    path = state_dir / "tead.lock"
    private_file(path)
    handle: IO[str] = open(path, "a+")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise UsageError(
            f"another tead daemon (pid {owner}) is using {state_dir}; stop it or use "
            "another --state-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    try:
        os.write(handle.fileno(), str(os.getpid()).encode())
    except OSError as exc:  # a full disk: the lock holds all the same
        log.warning("cannot write the pid into %s: %s", path, exc)
    try:
        yield
    finally:
        handle.close()


def private_dir(state_dir: Path) -> None:
    """Create `state_dir` 0700; an existing one that others may enter is tightened to its
    owner's bits, with a warning (the run history holds inputs and states)."""
    created = not state_dir.exists()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(state_dir.stat().st_mode)
    wanted = 0o700 if created else mode & 0o700
    if mode == wanted:
        return
    try:
        os.chmod(state_dir, wanted)
    except OSError as exc:
        log.warning(
            "state folder %s is mode %04o and cannot be made private: %s", state_dir, mode, exc
        )
        return
    if not created:
        log.warning("state folder %s was mode %04o; made it %04o", state_dir, mode, wanted)


@contextlib.contextmanager
def listening_socket(host: str, port: int) -> Iterator[socket.socket]:
    """The API's socket, bound before anything starts: a port in use is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says so (else Nagle adds ~40 ms to every small response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    with sock:
        yield sock
