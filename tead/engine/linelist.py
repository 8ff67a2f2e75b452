"""What a branch run elsewhere (a worker process, a dask worker, a host) writes, kept to
travel back with its result (`BranchReport.logs`), at most `max_chars` of it where the
way back is a network (counted as a run's logs are: characters plus 40 a line). Past the
bound, one `log` line says the rest was cut, and nothing more is kept."""

from __future__ import annotations

import threading
import time

from tead.engine.logs import LogLine

LINE_COST = 40  # what each line counts for besides its characters (as in a run's logs)


class LineList:
    """A sink that keeps lines in a list, at most `max_chars` of them (None: no bound)."""

    def __init__(self, max_chars: int | None = None) -> None:
        self.lines: list[LogLine] = []
        self.max_chars = max_chars
        self.kept = 0
        self.cut = False
        self._lock = threading.Lock()

    def __call__(self, lines: list[LogLine]) -> None:
        if self.max_chars is None:
            self.lines.extend(lines)  # one call: safe from several threads
            return
        with self._lock:
            if self.cut:
                return
            size = self.kept + sum(len(t) + LINE_COST * (t.count("\n") + 1) for *_, t in lines)
            if size <= self.max_chars:
                self.kept = size
                self.lines.extend(lines)
                return
            self._until_full(lines, self.max_chars)

    def _until_full(self, lines: list[LogLine], limit: int) -> None:
        size = self.kept
        node, branch = lines[0][1], lines[0][2]
        for ts, node, branch, stream, text in lines:
            fits = []
            for one in text.split("\n"):
                size += len(one) + LINE_COST
                if size > limit:
                    break
                fits.append(one)
            if fits:
                self.lines.append((ts, node, branch, stream, "\n".join(fits)))
            if size > limit:
                break
        self.cut = True
        self.kept = limit
        note = (
            f"WARNING tead: output cut here: a branch run elsewhere sends back at most "
            f"{limit} bytes of output"
        )
        self.lines.append((time.time(), node, branch, "log", note))

    def take(self) -> list[LogLine]:
        with self._lock:
            lines, self.lines = self.lines, []
        return lines
