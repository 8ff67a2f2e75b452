"""One run's log lines on their way into the store (the daemon side).

Lines come from the run's worker (`logs` messages, checked here: the worker runs user
code), from its file descriptors 1 and 2 (output below Python: C code, child processes),
or, for in-process runs, straight from the nodes' threads. Each line passes through
`mask` (the one redaction hook: every stored line goes through it; given the daemon's
`Secrets`, each piece is masked with the end of the previous one of its node, branch and
stream, so that a value cut in two by an 8 KiB line cut or a 64 KiB read is masked
whole: `Secrets.mask_piece`), then the run's bound
(characters plus 40 a line): once `max_bytes` of lines are kept, one marker line says
the rest was cut, and nothing more is kept. A thread of its own writes what came every
`FLUSH_S` (one row per batch), so `tead runs logs --follow` sees a running run's lines
within about that long.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from tead.daemon.secrets import Secrets
from tead.engine.logs import LogLine
from tead.errors import StorageFullError

log = logging.getLogger(__name__)

FLUSH_S = 0.25
STREAMS = frozenset({"stdout", "stderr", "log"})
Mask = Callable[[str], str]
CUT_STREAM = "tead"  # the stream of the marker line


def no_mask(line: str) -> str:
    return line


def _size(text: str) -> int:
    """What lines count against the bound: their characters, plus 40 for each line."""
    return len(text) + 40 * (text.count("\n") + 1)


class LogWriter(Protocol):
    def append_logs(self, run_id: str, lines: list[LogLine]) -> None: ...


class RunLogs:
    """Collects one run's lines (from any thread) and writes them (see the module)."""

    def __init__(
        self,
        run_id: str,
        store: LogWriter,
        *,
        max_bytes: int,
        mask: Mask = no_mask,
        secrets: Secrets | None = None,
    ) -> None:
        self.run_id = run_id
        self.store = store
        self.max_bytes = max_bytes
        self.mask = secrets.mask if secrets is not None else mask
        self.secrets = secrets
        self._tails: dict[tuple[str | None, str, str], str] = {}  # raw ends, for secrets
        self._masking = threading.Lock()
        self.kept = 0  # bytes of lines kept, about (text plus 40 per line)
        self.cut = False
        self._pending: list[LogLine] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"tead-logs-{run_id}", daemon=True)
        self._thread.start()

    def __call__(self, lines: list[LogLine]) -> None:
        """Take lines (a `tead.engine.logs.LogSink`)."""
        mask = self.mask
        if self.secrets is not None:
            lines = self._mask_pieces(self.secrets, lines)
        elif mask is not no_mask:
            lines = [(ts, n, b, s, mask(text)) for ts, n, b, s, text in lines]
        with self._lock:
            if self.cut:
                return
            size = self.kept + sum(_size(line[4]) for line in lines)
            if size > self.max_bytes:
                lines = self._until_full(lines)
                size = self.max_bytes
            self.kept = size
            self._pending += lines
        if self._closed.is_set():
            self.flush()

    def _mask_pieces(self, secrets: Secrets, lines: list[LogLine]) -> list[LogLine]:
        masked: list[LogLine] = []
        with self._masking:
            size = secrets.tail_size()
            for ts, node, branch, stream, text in lines:
                key = (node, branch, stream)
                tail = self._tails.get(key, "")
                masked.append((ts, node, branch, stream, secrets.mask_piece(tail, text)))
                if size:
                    self._tails[key] = f"{tail}\n{text}"[-size:] if tail else text[-size:]
        return masked

    def _until_full(self, lines: list[LogLine]) -> list[LogLine]:
        kept, size = [], self.kept
        for ts, node, branch, stream, text in lines:
            fits = []
            for one in text.split("\n"):
                size += len(one) + 40
                if size > self.max_bytes:
                    break
                fits.append(one)
            if fits:
                kept.append((ts, node, branch, stream, "\n".join(fits)))
            if size > self.max_bytes:
                break
        self.cut = True
        marker = (
            time.time(),
            None,
            "",
            CUT_STREAM,
            f"[tead: output cut here: the run's logs are limited to {self.max_bytes} bytes"
            " (max_log_bytes)]",
        )
        return [*kept, marker]

    def add_worker_batch(self, body: Any) -> None:
        """A `logs` message's lines; ValueError if they are not lines."""
        if not isinstance(body, list):
            raise ValueError("logs are a list")
        lines: list[LogLine] = []
        for item in body:
            if not (isinstance(item, list) and len(item) == 5):
                raise ValueError("a log line is a list of 5")
            ts, node, branch, stream, text = item
            if not (
                isinstance(ts, float | int)
                and math.isfinite(ts)
                and (node is None or isinstance(node, str))
                and isinstance(branch, str)
                and stream in STREAMS
                and isinstance(text, str)
            ):
                raise ValueError("a log line's fields have the wrong types")
            lines.append((float(ts), node, branch, stream, text))
        self(lines)

    def _loop(self) -> None:
        while not self._closed.wait(FLUSH_S):
            self.flush()

    def flush(self) -> None:
        """Write what came (one row); a full disk loses these lines (a warning says so)."""
        with self._writing:
            with self._lock:
                lines, self._pending = self._pending, []
            if not lines:
                return
            try:
                self.store.append_logs(self.run_id, lines)
            except StorageFullError as exc:
                log.warning("run %s: %d log lines not kept: %s", self.run_id, len(lines), exc)

    def close(self) -> None:
        """Write the rest; lines that come later are written at once."""
        self._closed.set()
        self.flush()
