"""What a node writes, caught line by line with where it came from.

While a node runs, a `LogScope` (the run's `LogSink`, the node's name and its branch path)
is the current one in a context variable of the node's thread. `sys.stdout` and
`sys.stderr` are replaced, once per process, by `ScopedStream`s: text written to them in a
scope becomes the scope's lines, elsewhere it goes on to the stream they replaced. A
`logging` handler on the root logger does the same for records (stream `log`). So the
output of concurrent thread branches (and of concurrent runs in one process) never mixes:
each thread writes into its own scope.

A line is a plain tuple `(ts, node, branch, stream, line)` (`LogLine`): a node may print
100 000 lines, and a tuple costs least. A branch run elsewhere (a worker process, a host)
keeps its lines in a list that travels back with its result (`BranchReport.logs`), and the
calling run hands them to its own sink: the same lines, attributed the same way, from any
strategy. What is written below Python (file descriptors 1 and 2: C code, child
processes) is not seen here; whoever owns the descriptors attributes it (the daemon's run
worker does, to the node running at the time).
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

#: (unix time, node or None, branch path ("" for the run's main path), stream, text)
LogLine = tuple[float, str | None, str, str, str]
LogSink = Callable[[list[LogLine]], None]

MAX_LINE = 8192  # characters: a longer line (or text without a newline) is cut in pieces


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
        self.sink([(ts, node, branch, stream, line) for line in _pieces(lines)])

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


@contextmanager
def scope(sink: LogSink, node: str | None, branch: str) -> Iterator[None]:
    """Make what this thread writes meanwhile the lines of `node` (on `branch`)."""
    if not isinstance(sys.stdout, ScopedStream) or not isinstance(sys.stderr, ScopedStream):
        install()
    current = LogScope(sink, node, branch)
    token = _SCOPE.set(current)
    try:
        yield
    finally:
        _SCOPE.reset(token)
        current.close()


class LineList:
    """A sink that keeps lines in a list (a branch run elsewhere sends them back)."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []

    def __call__(self, lines: list[LogLine]) -> None:
        self.lines.extend(lines)  # one call: safe from several threads

    def take(self) -> list[LogLine]:
        lines, self.lines = self.lines, []
        return lines
