"""One host as the client sees it: its address, and the link to its warm worker.

A `HostLink` is one asyncssh connection carrying one session: the worker process, whose
stdin and stdout speak length-prefixed JSON (protocol.py). It lives on the executor's event
loop: `connect()` and `close()` are coroutines; `send()` may be called from any thread.
Host keys are checked against the configured `known_hosts` file only (an unknown or changed
key is refused); keepalives (every `keepalive` seconds, 3 missed) notice a silent host, and
`connect_timeout` bounds a host that does not answer. The remote command is the configured
interpreter, quoted, and a fixed module name: nothing else reaches the host's shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tead.errors import RemoteHostError
from tead.executors.remote.protocol import HEADER, MAX_FRAME, PROTOCOL, frame, parse
from tead.parallel.config import RemoteConfig
from tead.version import __version__

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger(__name__)

WORKER_MODULE = "tead.executors.remote.worker"
HELLO_TIMEOUT_S = 60.0  # the worker's start on the host: an interpreter importing tead
STDERR_KEPT = 4096  # the tail of the worker's stderr, for error messages

_ADDRESS = re.compile(r"^(?:(?P<user>[^@]+)@)?(?P<host>[^:@]+)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostAddress:
    """`[user@]host[:port]` as configured; `label` is how breakers and metrics name it."""

    label: str
    user: str | None
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostAddress:
        match = _ADDRESS.match(text)
        if match is None or not 0 < int(match["port"] or 22) < 65536:
            raise ValueError(f"invalid host {text!r}: use host, user@host or user@host:port")
        return cls(
            label=text, user=match["user"], host=match["host"], port=int(match["port"] or 22)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSettings:
    """What a link to a host needs from the remote settings (one link per host and these)."""

    known_hosts: str
    identity: str | None
    python: str
    workdir: str
    cleanup: bool
    connect_timeout_s: float
    keepalive_s: float

    @classmethod
    def of(cls, config: RemoteConfig) -> LinkSettings:
        return cls(
            known_hosts=config.known_hosts,
            identity=config.identity,
            python=config.python,
            workdir=config.workdir,
            cleanup=config.cleanup,
            connect_timeout_s=config.connect_timeout_s,
            keepalive_s=config.keepalive_s,
        )


OnMessage = Callable[["HostLink", dict[str, Any]], None]
OnLost = Callable[["HostLink", str], None]


class HostLink:
    """The connection to one host's worker (see the module docstring)."""

    def __init__(
        self,
        address: HostAddress,
        settings: LinkSettings,
        *,
        on_message: OnMessage,
        on_lost: OnLost,
    ) -> None:
        self.address = address
        self.settings = settings
        self.cpus = 1  # as the worker reports it
        self.shipped: set[str] = set()  # bundle digests this worker has been sent
        self.alive = False
        self.lost = False  # it failed to connect or went away: the next fan-out makes a new one
        self.commands = 0  # tasks sent over this link
        self.bytes_sent = 0  # frames' bytes written to the worker
        self._bases: Counter[str] = Counter()  # base states held, by digest: fan-outs using it
        self._bases_lock = threading.Lock()
        self._on_message = on_message
        self._on_lost = on_lost
        self._conn: asyncssh.SSHClientConnection | None = None
        self._process: asyncssh.SSHClientProcess[bytes] | None = None
        self._stderr = bytearray()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[None] | None = None

    @property
    def label(self) -> str:
        return self.address.label

    async def ensure(self) -> None:
        """Connected on return (one attempt shared by concurrent callers), or
        RemoteHostError."""
        if self.alive:
            return
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            await asyncio.shield(self._connecting)
        except BaseException:
            self.lost = True
            raise
        finally:
            if self._connecting.done():
                self._connecting = None

    async def _connect(self) -> None:
        """Connect, start the worker and shake hands; RemoteHostError naming the problem."""
        self._loop = asyncio.get_running_loop()
        ssh = _asyncssh()
        settings, address = self.settings, self.address
        if not Path(settings.known_hosts).is_file():
            raise RemoteHostError(
                self.label, f"the known_hosts file {settings.known_hosts} cannot be read"
            )
        # with an identity: that key alone; else the SSH agent (and the default key files)
        keys: dict[str, Any] = (
            {"client_keys": [settings.identity], "agent_path": None} if settings.identity else {}
        )
        try:
            self._conn = await ssh.connect(
                address.host,
                port=address.port,
                username=address.user,
                known_hosts=settings.known_hosts,
                **keys,
                connect_timeout=settings.connect_timeout_s,
                login_timeout=settings.connect_timeout_s,
                keepalive_interval=settings.keepalive_s,
                keepalive_count_max=3,
            )
            command = f"{shlex.quote(settings.python)} -m {WORKER_MODULE}"
            self._process = await self._conn.create_process(command, encoding=None)
        except ssh.HostKeyNotVerifiable:
            raise RemoteHostError(
                self.label,
                f"its host key is not in {settings.known_hosts}, or it changed: tead never "
                "trusts a host key on first use (check the key, then add it to that file)",
            ) from None
        except ssh.PermissionDenied:
            how = f"the key {settings.identity}" if settings.identity else "the SSH agent"
            raise RemoteHostError(self.label, f"SSH login refused with {how}") from None
        except (ssh.Error, OSError, TimeoutError) as exc:
            raise RemoteHostError(self.label, f"cannot connect: {_describe(exc)}") from None
        self._tasks.append(asyncio.create_task(self._read_stderr()))
        hello = {
            "kind": "hello",
            "version": __version__,
            "protocol": PROTOCOL,
            "workdir": settings.workdir,
            "cleanup": settings.cleanup,
            "heartbeat_s": 3 * settings.keepalive_s + 2,
        }
        self._write(frame(hello))
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                reply = await self._read_message()
        except (asyncio.IncompleteReadError, ssh.Error, OSError, TimeoutError, ValueError):
            await asyncio.sleep(0.05)  # let the stderr reader catch the worker's last words
            self._drop()
            raise RemoteHostError(
                self.label,
                f"the tead worker did not start with {settings.python!r}"
                f"{self._stderr_tail()} (tead {__version__} must be installed for it)",
            ) from None
        if reply.get("kind") != "hello":
            self._drop()
            raise RemoteHostError(self.label, str(reply.get("error", "the worker refused")))
        self.cpus = int(reply.get("cpus") or 1)
        self.alive = True
        self._tasks.append(asyncio.create_task(self._read_loop()))
        self._tasks.append(asyncio.create_task(self._ping_loop()))
        log.info("remote host %s: connected, worker pid %s", self.label, reply.get("pid"))

    def send(self, message: dict[str, Any]) -> None:
        """Send a message (from any thread); a dead link drops it (its tasks end Lost)."""
        self._send_bytes(frame(message))

    def hold_base(self, digest: str, data: bytes) -> None:
        """A fan-out needs base state `digest` (its frame: `data`) on this host: sent when
        the first fan-out holding it asks, dropped there when the last one releases it."""
        with self._bases_lock:
            self._bases[digest] += 1
            if self._bases[digest] == 1:
                self._send_bytes(data)

    def release_base(self, digest: str) -> None:
        with self._bases_lock:
            self._bases[digest] -= 1
            if self._bases[digest] <= 0:
                del self._bases[digest]
                self._send_bytes(frame({"kind": "drop", "digest": digest}))

    def _send_bytes(self, data: bytes) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._write, data)

    def _write(self, data: bytes) -> None:
        if self._process is not None and not self._process.stdin.is_closing():
            self.bytes_sent += len(data)
            self._process.stdin.write(data)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Ask the worker to stop (cleaning up if configured), then drop the connection."""
        if self.alive and self._process is not None:
            self._closed = asyncio.get_running_loop().create_future()
            self._write(frame({"kind": "close", "cleanup": self.settings.cleanup}))
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(timeout_s):
                    await self._closed
        self.alive = False
        self._drop()

    async def _read_message(self) -> dict[str, Any]:
        assert self._process is not None
        header = await self._process.stdout.readexactly(HEADER.size)
        (size,) = HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes")
        return parse(await self._process.stdout.readexactly(size))

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await self._read_message()
                if message.get("kind") == "closed" and self._closed is not None:
                    if not self._closed.done():
                        self._closed.set_result(None)
                    return
                self._on_message(self, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # (not the worker's stderr: it carries the nodes' output, which errors must not)
            self._lose("the connection closed" if _is_eof(exc) else _describe(exc))

    async def _ping_loop(self) -> None:
        ping = frame({"kind": "ping"})
        while True:
            await asyncio.sleep(self.settings.keepalive_s)
            self._write(ping)

    async def _read_stderr(self) -> None:
        assert self._process is not None
        with contextlib.suppress(Exception):
            while data := await self._process.stderr.read(4096):
                self._stderr += data
                del self._stderr[:-STDERR_KEPT]

    def _stderr_tail(self) -> str:
        lines = bytes(self._stderr).decode("utf-8", "replace").strip().splitlines()
        return f": {lines[-1].strip()}" if lines else ""

    def _lose(self, reason: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self.lost = True
        log.warning("remote host %s: lost (%s)", self.label, reason)
        self._drop()
        self._on_lost(self, reason)

    def _drop(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks.clear()
        if self._conn is not None:
            self._conn.abort()
            self._conn = None


def _asyncssh() -> ModuleType:
    """asyncssh, imported when a host is first connected: with cryptography it costs about
    0.5 s, which neither a run without remote fan-outs nor a host's worker should pay."""
    import asyncssh  # deferred: 0.5 s of imports only a connecting client needs

    return asyncssh


def _is_eof(exc: BaseException) -> bool:
    lost = _asyncssh().ConnectionLost
    return isinstance(exc, asyncio.IncompleteReadError | lost | EOFError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    reason = getattr(exc, "reason", None) or str(exc)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
