"""The warm worker on a host: `python -m tead.executors.remote.worker`, started once per host
and connection, speaking length-prefixed JSON on its stdin and stdout (protocol.py).

It is one thread around a selector: it reads messages, receives workflow bundles (written
once per content hash under `workdir/code/<hash>/`, with an atomic rename) and hands each
branch to a child (child.py): a forked process leading a process group of its own, which
runs the branch with the same engine code as every other strategy (`run_branch_elsewhere`)
and writes its report back. Children are kept for the next branches; a child's group is
killed with SIGKILL when its branch's deadline passes or the client cancels it, and every
group is killed, and the worker exits, when its stdin closes or the client's heartbeat
stops. Children die with the worker (PR_SET_PDEATHSIG).

Node code must not write to the protocol: the worker keeps the real stdin and stdout for
itself and gives fd 0 `/dev/null` and fd 1 the stream of fd 2. Each child catches its own
descriptors 1 and 2 (`tead.engine.logs.FdCapture`): what a branch writes (print, logging,
C code, its subprocesses) goes back in its report as log lines of its nodes; only what is
written outside any node reaches the SSH session's stderr.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tead.engine.bundle import LoadedWorkflows, WorkflowBundle
from tead.engine.task import BranchTask
from tead.errors import TeadError
from tead.executors.remote.child import child_main, parse_breakers, parse_env
from tead.executors.remote.protocol import (
    HEADER,
    PROTOCOL,
    FrameBuffer,
    ProtocolError,
    frame,
)
from tead.executors.remote.workdir import Workdir
from tead.version import __version__

READ_SIZE = 1 << 16
MAX_IDLE = 64  # idle children kept for the next branches


@dataclass(eq=False, slots=True)
class _Child:
    """A forked child: its pid (and pidfd), the pipes to it, and the task it runs."""

    pid: int
    pidfd: int
    tasks: int  # write end: task messages (and bundles) to it
    results: int  # read end: its result frames
    known: set[str]  # digests of the bundles it has loaded
    bases: set[str] = field(default_factory=set)  # digests of the base states it has
    id: int | None = None  # the task it runs
    deadline: float | None = None
    data: bytearray = field(default_factory=bytearray)


class Worker:
    """Serves one client: see the module docstring."""

    def __init__(self, proto_in: int, proto_out: int) -> None:
        self._in = proto_in
        self._out = proto_out
        self._frames = FrameBuffer()
        self._selector = selectors.DefaultSelector()
        self._children: dict[int, _Child] = {}  # busy ones, by task id
        self._idle: list[_Child] = []
        self._bundles: dict[str, dict[str, Any]] = {}  # received bundles (for children)
        self._bases: dict[str, bytes] = {}  # fan-outs' base states, as frames (for children)
        self._workflows: LoadedWorkflows | None = None
        self._bad_bundles: dict[str, str] = {}
        self._workdir: Workdir | None = None  # what it created there (for cleanup)
        self._cleanup = False
        self._heartbeat_s: float | None = None
        self._heard = time.monotonic()
        self._running = True

    # --- the loop ------------------------------------------------------------------------

    def serve(self) -> None:
        self._selector.register(self._in, selectors.EVENT_READ, None)
        try:
            while self._running:
                for key, _ in self._selector.select(self._wait_s()):
                    if key.data is None:
                        self._read_messages()
                    else:
                        self._child_event(key.data, key.fd)
                self._expire()
        finally:
            self._stop_all()
            if self._cleanup:
                self._clean()

    def _wait_s(self) -> float | None:
        now = time.monotonic()
        due = [c.deadline for c in self._children.values() if c.deadline is not None]
        if self._heartbeat_s is not None:
            due.append(self._heard + self._heartbeat_s)
        return max(0.0, min(due) - now) if due else None

    def _expire(self) -> None:
        now = time.monotonic()
        if self._heartbeat_s is not None and now - self._heard > self._heartbeat_s:
            self._running = False  # the client is silent: it is gone
            return
        for child in list(self._children.values()):
            if child.deadline is not None and now >= child.deadline:
                self._end(child)
                self._send({"kind": "timeout", "id": child.id})

    def _read_messages(self) -> None:
        try:
            data = os.read(self._in, READ_SIZE)
        except OSError:
            data = b""
        if not data:  # the client closed the channel
            self._running = False
            return
        self._heard = time.monotonic()
        try:
            for message in self._frames.feed(data):
                self._handle(message)
        except ProtocolError as exc:
            print(f"tead worker: {exc}; exiting", file=sys.stderr)
            self._running = False

    def _send(self, message: dict[str, Any]) -> None:
        self._write(frame(message))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._out, view)
            except OSError:  # the client is gone
                self._running = False
                return
            view = view[written:]

    # --- messages ------------------------------------------------------------------------

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind == "hello":
            self._hello(message)
        elif kind == "ping":
            pass
        elif self._workflows is None:
            self._send({"kind": "refused", "error": "no hello before " + kind})
            self._running = False
        elif kind == "bundle":
            self._bundle(message.get("bundle"))
        elif kind == "base" and isinstance(digest := message.get("digest"), str):
            self._bases[digest] = frame(message)  # its children get it with its first task
        elif kind == "drop":
            self._drop_base(message.get("digest"))
        elif kind == "task":
            self._task(message)
        elif kind == "cancel":
            child = self._children.get(message.get("id"))  # type: ignore[arg-type]
            if child is not None:
                self._end(child)
                self._send({"kind": "cancelled", "id": child.id})
        elif kind == "close":
            self._cleanup = bool(message.get("cleanup"))
            self._stop_all()
            if self._cleanup:
                self._clean()
                self._cleanup = False
            self._send({"kind": "closed"})
            self._running = False

    def _hello(self, message: dict[str, Any]) -> None:
        version, workdir = message.get("version"), message.get("workdir")
        if message.get("protocol") != PROTOCOL or version != __version__:
            self._send(
                {
                    "kind": "refused",
                    "error": f"the host has tead {__version__} (protocol {PROTOCOL}), the "
                    f"client {version} (protocol {message.get('protocol')}): install the "
                    "same version on both",
                }
            )
            self._running = False
            return
        if not isinstance(workdir, str) or not workdir.startswith("/"):
            self._send({"kind": "refused", "error": "the workdir must be an absolute path"})
            self._running = False
            return
        heartbeat = message.get("heartbeat_s")
        self._heartbeat_s = float(heartbeat) if isinstance(heartbeat, int | float) else None
        self._cleanup = bool(message.get("cleanup"))
        try:
            self._workdir = Workdir(Path(workdir))
            os.chdir(self._workdir.path)
            self._workflows = LoadedWorkflows(root=self._workdir.code)
        except OSError as exc:
            self._send({"kind": "refused", "error": f"cannot create workdir {workdir}: {exc}"})
            self._running = False
            return
        self._send(
            {
                "kind": "hello",
                "version": __version__,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count() or 1,
                "pid": os.getpid(),
            }
        )

    def _bundle(self, data: Any) -> None:
        assert self._workflows is not None
        digest = data.get("digest") if isinstance(data, dict) else None
        try:
            bundle = WorkflowBundle.from_json(data)
            folder = self._workdir.code / bundle.digest if self._workdir else None
            new = folder is not None and not folder.exists()
            self._workflows.receive(bundle)
            self._bundles[bundle.digest] = data
            if new and folder is not None and folder.exists() and self._workdir:
                self._workdir.wrote(folder)
        except Exception as exc:  # a bad bundle, or its workflow fails to load here
            if isinstance(digest, str):
                self._bad_bundles[digest] = f"{type(exc).__name__}: {exc}"
            print(f"tead worker: a workflow bundle was refused: {exc}", file=sys.stderr)

    def _task(self, message: dict[str, Any]) -> None:
        assert self._workflows is not None
        task_id = message.get("id")
        if not isinstance(task_id, int) or task_id in self._children:
            self._send({"kind": "refused", "error": f"task id {task_id!r} is not a new integer"})
            self._running = False
            return
        try:
            data = message.get("task")
            digest = data.get("workflow") if isinstance(data, dict) else None
            if isinstance(digest, str) and digest in self._bad_bundles:
                raise ValueError(f"its workflow bundle was refused: {self._bad_bundles[digest]}")
            base = message.get("base")
            if base is not None and base not in self._bases:
                raise ValueError(f"its base state {base!r} was not sent")
            BranchTask.from_json(data, self._workflows.get)  # checked before a child has it
            parse_env(message.get("env"))
            parse_breakers(message.get("breakers"))
            timeout = message.get("timeout")
            deadline = (
                time.monotonic() + float(timeout) if isinstance(timeout, int | float) else None
            )
        except (TeadError, ValueError, TypeError) as exc:
            self._send({"kind": "error", "id": task_id, "error": str(exc)})
            return
        child = self._idle.pop() if self._idle else self._fork()
        child.id, child.deadline = task_id, deadline
        self._children[task_id] = child
        try:
            if digest not in child.known and isinstance(digest, str):
                _write_all(child.tasks, frame({"kind": "bundle", "bundle": self._bundles[digest]}))
                child.known.add(digest)
            if base is not None and base not in child.bases:
                _write_all(child.tasks, self._bases[base])
                child.bases.add(base)
            _write_all(child.tasks, frame(message))
        except OSError:  # it died meanwhile: its pidfd says so next (crashed)
            pass

    def _drop_base(self, digest: Any) -> None:
        """Forget a base state, here and in the children that have it."""
        if self._bases.pop(digest, None) is None:
            return
        drop = frame({"kind": "drop", "digest": digest})
        for child in [*self._children.values(), *self._idle]:
            if digest in child.bases:
                child.bases.discard(digest)
                with contextlib.suppress(OSError):  # it died: its pidfd says so next
                    _write_all(child.tasks, drop)

    # --- children ------------------------------------------------------------------------

    def _fork(self) -> _Child:
        assert self._workflows is not None
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        others = [fd for c in (*self._children.values(), *self._idle) for fd in _fds(c)]
        pid = os.fork()
        if pid == 0:  # the child: never returns
            inherited = (task_w, result_r, self._in, self._out, self._selector.fileno(), *others)
            child_main(task_r, result_w, self._workflows, close=inherited)
        os.close(task_r)
        os.close(result_w)
        with contextlib.suppress(OSError):  # the child may have done it (or exited) first
            os.setpgid(pid, pid)
        os.set_blocking(result_r, False)
        child = _Child(pid, os.pidfd_open(pid), task_w, result_r, set(self._bundles))
        self._selector.register(result_r, selectors.EVENT_READ, child)
        self._selector.register(child.pidfd, selectors.EVENT_READ, child)
        return child

    def _child_event(self, child: _Child, fd: int) -> None:
        self._drain(child)
        if len(child.data) >= HEADER.size:
            size: int = HEADER.unpack_from(child.data)[0]
            end = HEADER.size + size
            if len(child.data) >= end:  # its result: forward it, and the child is idle
                result, child.data = bytes(child.data[:end]), child.data[end:]
                if child.id is not None and self._children.pop(child.id, None) is child:
                    self._write(result)
                child.id, child.deadline = None, None
                if len(self._idle) < MAX_IDLE:
                    self._idle.append(child)
                else:
                    self._end(child)
                return
        if fd == child.pidfd:  # it died: a crash, os._exit, a signal
            task_id = child.id
            status = self._end(child)
            if task_id is not None:
                self._send({"kind": "crashed", "id": task_id, "detail": status})

    def _drain(self, child: _Child) -> bool:
        """Read what the child wrote; whether its pipe is still open."""
        while True:
            try:
                data = os.read(child.results, READ_SIZE)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(child.results)
                return False
            child.data += data

    def _end(self, child: _Child) -> str:
        """Kill the child's process group, reap the child, forget it; how it ended."""
        if child.id is not None:
            self._children.pop(child.id, None)
        if child in self._idle:
            self._idle.remove(child)
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        for fd in _fds(child):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            _, status = os.waitpid(child.pid, 0)
        except ChildProcessError:
            return "its process could not be reaped"
        if os.WIFSIGNALED(status):
            return f"the branch's process was killed by {signal.Signals(os.WTERMSIG(status)).name}"
        return f"the branch's process exited with code {os.waitstatus_to_exitcode(status)}"

    def _stop_all(self) -> None:
        for child in [*self._children.values(), *self._idle]:
            self._end(child)

    def _clean(self) -> None:
        """Remove what this worker created (workdir.py)."""
        if self._workdir is not None:
            self._workdir.clean()


def _fds(child: _Child) -> tuple[int, ...]:
    return (child.results, child.pidfd, child.tasks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> None:
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # never into the protocol (children catch their own 1 and 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Worker(proto_in, proto_out).serve()


if __name__ == "__main__":
    main()
