"""A run worker's log lines on their way to the daemon (the worker side).

The run's nodes write into a `LogForwarder` (a `tead.engine.logs.LogSink`); a thread of
its own flushes the process's (block-buffered) stdout and sends what came, every
`FLUSH_S` or once `BATCH_CHARS` characters wait, as `["logs", [[ts, node, branch,
stream, line], ...]]` messages: 100 000 lines make a few dozen messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tead.engine.logs import LogLine, flush_streams

FLUSH_S = 0.1
BATCH_CHARS = 256 * 1024  # characters of lines per message, about


class LogForwarder:
    """Collects lines from any thread and sends them in batches (see the module)."""

    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        self._send = send
        self._lines: list[LogLine] = []
        self._taking = threading.Lock()  # guards `_lines`
        self._lock = threading.Lock()  # one flush at a time: batches keep their order
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="tead-logs", daemon=True)
        self._thread.start()

    def __call__(self, lines: list[LogLine]) -> None:
        with self._taking:
            self._lines += lines

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_S)
            flush_streams()  # a node's buffered output reaches the descriptors' capture
            self.flush()

    def flush(self) -> None:
        """Send what waits (the caller's thread; safe alongside the flushing thread)."""
        with self._lock:
            with self._taking:
                lines, self._lines = self._lines, []
            batch: list[LogLine] = []
            size = 0
            for line in lines:
                batch.append(line)
                size += len(line[4]) + 40
                if size >= BATCH_CHARS:
                    self._send(("logs", batch))
                    batch, size = [], 0
            if batch:
                self._send(("logs", batch))

    def close(self) -> None:
        """Send the rest; the thread has stopped on return (a worker whose run left no
        thread may serve the next run)."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()
