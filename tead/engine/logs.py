"""What a node writes, caught line by line with where it came from.

While a node runs, a `LogScope` (the run's `LogSink`, the node's name and its branch
path) is the current one in a context variable of the node's thread. `sys.stdout` and
`sys.stderr` are replaced by `ScopedStream`s (unless the process's descriptors are
captured and one scope alone is active: see `scope`): text written to them in a scope
becomes the scope's lines, elsewhere it goes on to the stream they replaced. A `logging`
handler on the root logger does the same for records (stream `log`). So the output of
concurrent thread branches (and of concurrent runs in one process) never mixes: each
thread writes into its own scope.

Lines travel as plain tuples `(ts, node, branch, stream, text)` (`LogLine`), the lines
written together (a write, a chunk read from a descriptor) in one tuple, joined by "\n":
a node may print 100 000 lines, and a few hundred tuples cost far less than 100 000. A
branch run elsewhere (a worker process, a host) keeps its lines in a list that travels
back with its result (`BranchReport.logs`), and the calling run hands them to its own
sink: the same lines, attributed the same way, from any strategy.

What is written below Python (file descriptors 1 and 2: C code, child processes) is
caught by an `FdCapture`, in the processes that install one (the daemon's run workers
and process branch workers): the descriptors point at pipes that a thread of the process
reads, and each line goes to the one scope active in the process (or, with several, to
the run alone: which thread wrote it cannot be told). A scope that ends first waits
until what is in the pipes has been read, so a node's lines are never counted as its
successor's.
"""

from __future__ import annotations

import array
import contextlib
import contextvars
import fcntl
import io
import logging
import os
import selectors
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

#: (unix time, node or None, branch path ("" for the run's main path), stream, text): the
#: text is one line or several written together, joined by "\n" (never ending with one)
LogLine = tuple[float, str | None, str, str, str]
LogSink = Callable[[list[LogLine]], None]

MAX_LINE = 8192  # characters: a longer line (or text without a newline) is cut in pieces
FLUSH_S = 0.1  # a captured process's buffered stdout is flushed this often


class LogScope:
    """One node's place to write: its lines go to `sink`."""

    __slots__ = ("branch", "node", "partial", "sink")

    def __init__(self, sink: LogSink, node: str | None, branch: str) -> None:
        self.sink = sink
        self.node = node
        self.branch = branch
        self.partial: dict[str, str] = {}

    def write(self, stream: str, text: str) -> None:
        if "\n" not in text:
            rest = self.partial.get(stream, "") + text
            if len(rest) <= MAX_LINE:
                self.partial[stream] = rest
                return
            text = rest
        else:
            text = self.partial.pop(stream, "") + text
        *lines, rest = text.split("\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.partial[stream] = rest
        ts = time.time()
        node, branch = self.node, self.branch
        self.sink([(ts, node, branch, stream, "\n".join(_pieces(lines)))])

    def close(self) -> None:
        """Emit what was written without a final newline."""
        ts = time.time()
        left = [(ts, self.node, self.branch, s, t) for s, t in self.partial.items() if t]
        self.partial.clear()
        if left:
            self.sink(left)


def _pieces(lines: list[str]) -> list[str]:
    if all(len(line) <= MAX_LINE for line in lines):
        return lines
    return [line[i : i + MAX_LINE] for line in lines for i in range(0, len(line) or 1, MAX_LINE)]


_SCOPE: contextvars.ContextVar[LogScope | None] = contextvars.ContextVar(
    "tead_log_scope", default=None
)


class ScopedStream(io.TextIOBase):
    """`sys.stdout` or `sys.stderr`: into the current scope, else on to `fallback`."""

    def __init__(self, name: str, fallback: TextIO) -> None:
        self.name_ = name
        self.fallback = fallback

    def write(self, text: str) -> int:
        scope = _SCOPE.get()
        if scope is None:
            return self.fallback.write(text)
        scope.write(self.name_, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _SCOPE.get() is None:
            self.fallback.flush()

    def fileno(self) -> int:  # subprocess and faulthandler write to the descriptor
        return self.fallback.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8") or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.fallback, "errors", None)

    @property
    def buffer(self) -> Any:  # binary writes go below the scope, to the descriptor
        return self.fallback.buffer


class ScopedLogHandler(logging.Handler):
    """Log records made in a scope become its lines (stream `log`)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        scope = _SCOPE.get()
        if scope is None:
            return
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        scope.write("log", text + "\n")


_INSTALL = threading.Lock()


def install() -> None:
    """Put scoped streams in place of `sys.stdout` / `sys.stderr` and the scoped handler on
    the root logger, once per process (again if someone replaced the streams since)."""
    with _INSTALL:
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if not isinstance(current, ScopedStream):
                setattr(sys, name, ScopedStream(name, current))
        root = logging.getLogger()
        if not any(isinstance(h, ScopedLogHandler) for h in root.handlers):
            root.addHandler(ScopedLogHandler())


#: the scopes active in this process, for lines written below Python (FdCapture)
_ACTIVE: dict[int, LogScope] = {}
_FD_CAPTURE: list[FdCapture] = []  # the process's, once installed
_SWITCH = threading.Lock()
_CONCURRENT = [0]  # in-process branches running now (`concurrent`)


@contextmanager
def scope(sink: LogSink, node: str | None, branch: str) -> Iterator[None]:
    """Make what this thread writes meanwhile the lines of `node` (on `branch`).

    Where the process's descriptors are captured (`FdCapture`) and no in-process branch
    runs (`concurrent`), `sys.stdout` / `sys.stderr` are the process's own C streams:
    their output is caught at the descriptors and is all this scope's, at no cost per
    write. Else (or if scopes overlap anyway) scoped streams are in place."""
    current = LogScope(sink, node, branch)
    token = _SCOPE.set(current)
    with _SWITCH:
        if _FD_CAPTURE and not _ACTIVE and not _CONCURRENT[0]:
            _direct_streams()
        elif not isinstance(sys.stdout, ScopedStream):
            if _FD_CAPTURE and len(_ACTIVE) == 1:  # the one scope that wrote directly
                _FD_CAPTURE[0].settle(next(iter(_ACTIVE.values())))
            install()
        _ACTIVE[id(current)] = current
    try:
        yield
    finally:
        for capture in _FD_CAPTURE:
            capture.settle(current)
        with _SWITCH:
            del _ACTIVE[id(current)]
        _SCOPE.reset(token)
        current.close()


@contextmanager
def concurrent() -> Iterator[None]:
    """An in-process branch runs meanwhile (a thread branch): scoped streams are in place
    from its start to the end of the last such branch, so that the streams never change
    under a node that is writing."""
    with _SWITCH:
        _CONCURRENT[0] += 1
        if not isinstance(sys.stdout, ScopedStream):
            install()
    try:
        yield
    finally:
        with _SWITCH:
            _CONCURRENT[0] -= 1
            if _FD_CAPTURE and not _CONCURRENT[0] and not _ACTIVE:
                _direct_streams()


def _direct_streams() -> None:
    """The process's own streams back in place of scoped ones (the handler stays)."""
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, ScopedStream):
            setattr(sys, name, current.fallback)
    root = logging.getLogger()
    if not any(isinstance(h, ScopedLogHandler) for h in root.handlers):
        root.addHandler(ScopedLogHandler())


def flush_streams() -> None:
    """Flush the process's own stdout and stderr (what they buffer reaches the pipes)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        with contextlib.suppress(Exception):
            getattr(stream, "fallback", stream).flush()


def _flush_often() -> None:
    """What a node printed reaches its run's logs within FLUSH_S, even while it sleeps."""
    while True:
        time.sleep(FLUSH_S)
        flush_streams()


def _fionread(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    return buf[0]


class FdCapture:
    """Catches what is written to file descriptors 1 and 2 of this process (see the
    module): each line goes to the one active scope, else to `default` (a sink, with no
    node), else on to what the descriptors were before (`install` saves them)."""

    SETTLE_S = 1.0  # a scope waits at most this long for the pipes to be read
    PIPE_BYTES = 1024 * 1024  # the pipes' capacity (Linux), where allowed
    BUFFER_BYTES = 256 * 1024  # stdout's buffer: a node printing much makes few writes

    def __init__(self) -> None:
        self.default: LogSink | None = None
        self._reads: dict[int, tuple[str, int]] = {}  # read end -> (stream, saved fd)
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._busy = False

    @classmethod
    def install(cls) -> FdCapture:
        """Point this process's descriptors 1 and 2 at pipes read by a thread (once), and
        make `sys.stdout` block-buffered (whatever PYTHONUNBUFFERED says; a scope's end
        flushes it, and a thread every FLUSH_S) with a large buffer."""
        if _FD_CAPTURE:
            return _FD_CAPTURE[0]
        capture = cls()
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            for name in ("stdout", "stderr"):
                with contextlib.suppress(Exception):
                    getattr(sys, name).flush()
            saved = os.dup(fd)
            os.set_inheritable(saved, False)
            read, write = os.pipe()
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(read, fcntl.F_SETPIPE_SZ, cls.PIPE_BYTES)
            os.dup2(write, fd)
            os.close(write)
            capture._reads[read] = (stream, saved)
        old = sys.stdout
        raw = io.FileIO(1, "w", closefd=False)
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(raw, buffer_size=cls.BUFFER_BYTES),
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors=getattr(old, "errors", None) or "strict",
            write_through=False,
        )
        threading.Thread(target=capture._read, name="tead-fd-capture", daemon=True).start()
        threading.Thread(target=_flush_often, name="tead-flush", daemon=True).start()
        _FD_CAPTURE.append(capture)
        return capture

    def _read(self) -> None:
        selector = selectors.DefaultSelector()
        for fd in self._reads:
            selector.register(fd, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                self._busy = True  # before the pipe is emptied: `settle` waits for it
                try:
                    data = os.read(key.fd, 65536)
                    with self._lock:
                        self._take(key.fd, data)
                finally:
                    self._busy = False

    def _take(self, fd: int, data: bytes) -> None:
        stream, saved = self._reads[fd]
        if not data:  # no writer left (the process is ending)
            return
        *lines, rest = (self._partial.pop(stream, b"") + data).split(b"\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        if rest:
            self._partial[stream] = rest
        if lines:
            self._emit(stream, saved, lines)

    def _emit(self, stream: str, saved: int, lines: list[bytes]) -> None:
        active = list(_ACTIVE.values())
        sink, node, branch = self.default, None, ""
        if len(active) == 1:
            sink, node, branch = active[0].sink, active[0].node, active[0].branch
        elif active and all(s.sink is active[0].sink for s in active):
            sink = active[0].sink
        if sink is None:
            with contextlib.suppress(OSError):
                os.write(saved, b"".join(line + b"\n" for line in lines))
            return
        ts = time.time()
        sink([(ts, node, branch, stream, b"\n".join(lines).decode("utf-8", "replace"))])

    def settle(self, ending: LogScope) -> None:
        """Flush the process's streams and wait until what is in the pipes has been read
        (at most SETTLE_S), then emit the unfinished lines as `ending`'s."""
        flush_streams()
        deadline = time.monotonic() + self.SETTLE_S
        while self._busy or any(_fionread(fd) for fd in self._reads):
            if time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        with self._lock:
            if not self._partial:
                return
            partial, self._partial = self._partial, {}
            ts = time.time()
            node, branch = ending.node, ending.branch
            lines = [
                (ts, node, branch, s, t.decode("utf-8", "replace")) for s, t in partial.items()
            ]
        ending.sink(lines)


def echo(lines: list[LogLine]) -> None:
    """Write lines to this process's `sys.stdout` / `sys.stderr` (stream `log` to stderr),
    for a run that keeps no logs: a branch run elsewhere shows its output here."""
    for _, _, _, stream, text in lines:
        (sys.stdout if stream == "stdout" else sys.stderr).write(text + "\n")
