"""A run worker's events and log lines on their way to the daemon (the worker side).

Each message costs the daemon a wake-up, so all go in batches. `EventBatch`: a run's
events and its journal's completed steps, sent a few at a time (a node's start at once).
`LogForwarder`: the run's nodes write into it (a `tead.engine.logs.LogSink`); a thread
of its own sends what came, every `FLUSH_S` or once `BATCH_CHARS` characters wait, as
`["logs", [[ts, node, branch, stream, line], ...]]` messages: 100 000 lines make a few
dozen messages.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tead.engine.events import Event, NodeStarted
from tead.engine.logs import LogLine

Send = Callable[[tuple[str, Any]], None]

FLUSH_S = 0.1
BATCH_CHARS = 256 * 1024  # characters of lines per message, about


class LogForwarder:
    """Collects lines from any thread and sends them in batches (see the module)."""

    def __init__(self, send: Send) -> None:
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


class EventBatch:
    """A run's events, sent a few at a time: each message costs the daemon a wake-up. An
    event waits at most `FLUSH_S` (a thread of the worker's own sends what waited, every
    `FLUSH_S`: adding an event wakes no thread), and a node's start goes at once with
    what waited before it, so that a run that dies names the node it was in. Completed
    steps for the run's journal travel the same way, each encoded as it is added (its
    value may change afterwards)."""

    FLUSH_S = 0.1

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._steps: list[tuple[str, str]] = []
        self._steps_size = 0  # characters of the steps' results not sent yet
        threading.Thread(target=self._flush_late, name="tead-events", daemon=True).start()

    def add(self, event: Event) -> None:
        with self._lock:
            self._pending.append(event.to_json())
            if isinstance(event, NodeStarted):
                self._send_events()  # the steps wait: they need no wake-up of their own

    def add_step(self, key: str, value: Any, *, limit: int) -> None:
        """A completed step (tead.engine.journal): its key and result (strict JSON). A
        result longer than `limit` (the run's max_state_bytes) is not recorded: the step
        runs again when the run is resumed; a message holds at most `limit` of them."""
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        if len(text) > limit:
            return
        with self._lock:
            if self._steps_size + len(text) > limit:
                self._send(("journal", self._steps))
                self._steps, self._steps_size = [], 0
            self._steps.append((key, text))
            self._steps_size += len(text)

    def take_steps(self) -> list[tuple[str, str]]:
        """The completed steps not sent yet."""
        with self._lock:
            steps, self._steps, self._steps_size = self._steps, [], 0
        return steps

    def take(self) -> list[dict[str, Any]]:
        """The events not sent yet."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def _send_events(self) -> None:
        if self._pending:
            self._send(("events", self._pending))
            self._pending = []

    def _flush_late(self) -> None:
        while True:
            time.sleep(self.FLUSH_S)
            with self._lock:
                if self._steps:
                    self._send(("journal", self._steps))
                    self._steps, self._steps_size = [], 0
                self._send_events()
