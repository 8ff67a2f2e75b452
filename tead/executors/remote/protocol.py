"""What the client and a host's worker say to each other: length-prefixed JSON, never pickle.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one object with a
`kind`). Nothing in a frame is ever evaluated or handed to a shell: the worker reads the
task's fields as data (`BranchTask.from_json`), the workflow arrives as a bundle checked
against its digest, and the branch's environment travels inside the task message.

    client -> worker                          worker -> client
    hello {version, protocol, workdir}        hello {version, python, cpus, pid} | refused {error}
    bundle {bundle}                           (nothing: a bad bundle fails its tasks)
    base {digest, state}                      (nothing: a fan-out's base state, base.py)
    drop {digest}                             (nothing: that base is no longer needed)
    task {id, task, env, timeout, base?, ...} result {id, report} | timeout {id}
                                              | crashed {id, detail} | error {id, error}
    cancel {id}                               cancelled {id} (its process group is dead)
    ping {}                                   (nothing: the worker's heartbeat watch)
    close {cleanup}                           closed {}

A branch's report (`BranchReport`) goes back as JSON too: its result, its events (their own
JSON encoding), the breaker states it changed, its nested fan-outs' results and what its
nodes wrote (its log lines, at most `MAX_REPORT_LOG_CHARS`: `bounded_logs`). A task sent
over a base (`base` names it) has its own part as its state, and its report carries what
the branch changed (`delta`) instead of its final state.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

from tead.engine.events import event_from_json
from tead.engine.logs import LogLine
from tead.engine.seam import BranchReport
from tead.engine.state import StateDelta
from tead.parallel.breaker import BreakerSnapshot, CircuitState
from tead.parallel.config import ParallelFlowResult

PROTOCOL = 1
HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # a larger frame is a broken or hostile peer
#: what one branch's log lines may weigh in its report (characters plus 40 a line, as the
#: daemon counts a run's logs): the rest is cut, with a line that says so
MAX_REPORT_LOG_CHARS = 16 * 1024 * 1024
LOG_STREAMS = frozenset({"stdout", "stderr", "log"})


class ProtocolError(Exception):
    """A peer sent something that is not a frame of this protocol."""


def frame(message: dict[str, Any]) -> bytes:
    """One message as a frame (compact JSON; non-ASCII kept as UTF-8)."""
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    body = data.encode("utf-8", "surrogatepass")
    return HEADER.pack(len(body)) + body


def parse(body: bytes) -> dict[str, Any]:
    """The message of a frame's body; ProtocolError if it is not a JSON object with a kind."""
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"a frame is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise ProtocolError("a frame is not an object with a kind")
    return message


class FrameBuffer:
    """Bytes in, whole messages out (for a reader that gets bytes in arbitrary pieces)."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._data += data
        while len(self._data) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._data)
            if size > MAX_FRAME:
                raise ProtocolError(f"a frame of {size} bytes is over the limit")
            end = HEADER.size + size
            if len(self._data) < end:
                return
            body = bytes(self._data[HEADER.size : end])
            del self._data[:end]
            yield parse(body)


# --- results and reports -----------------------------------------------------------------


def result_to_json(result: ParallelFlowResult) -> dict[str, Any]:
    data = result.to_dict()
    data["error_mro"] = list(result.error_mro)
    return data


def result_from_json(data: dict[str, Any]) -> ParallelFlowResult:
    values = dict(data)
    values["attempt_errors"] = tuple(values.get("attempt_errors") or ())
    values["error_mro"] = tuple(values.get("error_mro") or ())
    return ParallelFlowResult(**values)


def bounded_logs(
    lines: tuple[LogLine, ...], limit: int = MAX_REPORT_LOG_CHARS
) -> tuple[LogLine, ...]:
    """`lines` up to `limit` (characters plus 40 a line); past it, the part that fits and
    one line saying the rest of the branch's output was cut."""
    size = 0
    for index, line in enumerate(lines):
        text = line[4]
        weight = len(text) + 40 * (text.count("\n") + 1)
        if size + weight > limit:
            kept = text[: max(0, limit - size - 40)]
            cut = (
                line[0],
                line[1],
                line[2],
                "stderr",
                f"[tead: output cut here: a remote branch sends back at most {limit} "
                "characters of output]",
            )
            head: tuple[LogLine, ...] = ((*line[:4], kept),) if kept else ()
            return (*lines[:index], *head, cut)
        size += weight
    return lines


def report_to_json(report: BranchReport) -> dict[str, Any]:
    return {
        "result": result_to_json(report.result),
        "events": [event.to_json() for event in report.events],
        "breakers": [[s.name, str(s.state), s.failure_count, s.opened_at] for s in report.breakers],
        "fanouts": [
            [path, source, fan_in, [result_to_json(r) for r in results]]
            for path, source, fan_in, results in report.fanouts
        ],
        "logs": [list(line) for line in bounded_logs(report.logs)],
        "delta": None
        if report.delta is None
        else [report.delta.changed, list(report.delta.deleted)],
    }


def report_from_json(data: dict[str, Any]) -> BranchReport:
    """The report `report_to_json` made; ProtocolError if it is not one."""
    try:
        breakers = tuple(
            BreakerSnapshot(
                name=name, state=CircuitState(state), failure_count=count, opened_at=opened
            )
            for name, state, count, opened in data["breakers"]
        )
        fanouts = tuple(
            (path, source, fan_in, [result_from_json(r) for r in results])
            for path, source, fan_in, results in data["fanouts"]
        )
        return BranchReport(
            result_from_json(data["result"]),
            tuple(event_from_json(e) for e in data["events"]),
            breakers,
            fanouts,
            logs=tuple(_log_line(line) for line in data.get("logs") or ()),
            delta=_delta(data.get("delta")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"a branch report cannot be read: {exc!r}") from None


def _log_line(data: Any) -> LogLine:
    """A log line of a report; ValueError if it is not one."""
    if not isinstance(data, list) or len(data) != 5:
        raise ValueError("a log line is a list of 5")
    ts, node, branch, stream, text = data
    if not (
        isinstance(ts, int | float)
        and (node is None or isinstance(node, str))
        and isinstance(branch, str)
        and stream in LOG_STREAMS
        and isinstance(text, str)
    ):
        raise ValueError("a log line's fields have the wrong types")
    return (float(ts), node, branch, stream, text)


def _delta(data: Any) -> StateDelta | None:
    if data is None:
        return None
    changed, deleted = data
    if not isinstance(changed, dict) or not all(isinstance(k, str) for k in deleted):
        raise ValueError("a report's delta is [changed values, deleted keys]")
    return StateDelta(changed=changed, deleted=tuple(deleted))
