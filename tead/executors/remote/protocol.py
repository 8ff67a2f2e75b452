"""What the client and a host's worker say to each other: length-prefixed JSON, never pickle.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one object with a
`kind`). Nothing in a frame is ever evaluated or handed to a shell: the worker reads the
task's fields as data (`BranchTask.from_json`), the workflow arrives as a bundle checked
against its digest, and the branch's environment travels inside the task message.

    client -> worker                          worker -> client
    hello {version, protocol, workdir}        hello {version, python, cpus, pid} | refused {error}
    bundle {bundle}                           (nothing: a bad bundle fails its tasks)
    task {id, task, env, timeout, ...}        result {id, report} | timeout {id}
                                              | crashed {id, detail} | error {id, error}
    cancel {id}                               cancelled {id} (its process group is dead)
    ping {}                                   (nothing: the worker's heartbeat watch)
    close {cleanup}                           closed {}

A branch's report (`BranchReport`) goes back as JSON too: its result, its events (their own
JSON encoding), the breaker states it changed and its nested fan-outs' results.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

from tead.engine.events import event_from_json
from tead.engine.seam import BranchReport
from tead.parallel.breaker import BreakerSnapshot, CircuitState
from tead.parallel.config import ParallelFlowResult

PROTOCOL = 1
HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # a larger frame is a broken or hostile peer


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


def report_to_json(report: BranchReport) -> dict[str, Any]:
    return {
        "result": result_to_json(report.result),
        "events": [event.to_json() for event in report.events],
        "breakers": [[s.name, str(s.state), s.failure_count, s.opened_at] for s in report.breakers],
        "fanouts": [
            [path, source, fan_in, [result_to_json(r) for r in results]]
            for path, source, fan_in, results in report.fanouts
        ],
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
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"a branch report cannot be read: {exc!r}") from None
