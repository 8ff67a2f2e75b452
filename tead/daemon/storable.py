"""What of a run's end can be stored: its final state and branch results as JSON text,
each state at most `max_state_bytes`.

Encoding runs on a worker thread, never on the event loop, and in small pieces (the C
encoder holds the GIL for a whole call, so a big state is cut into parts of ~64 KiB
that it encodes one by one, and the loop gets the GIL between them); a string longer
than the limit is refused unencoded, and encoding stops as soon as the limit is passed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tead.errors import RunError, TeadError
from tead.jsonable import json_default

MIB = 1024 * 1024


class TooLarge(Exception):
    """A value's JSON is over the limit (internal: becomes a recorded error)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StorableEnd:
    """A run's end, encoded: what the store writes."""

    final_state: str | None
    branches: tuple[str, ...]
    problem: str | None = None  # why the final state could not be stored
    failure: str | None = None  # JSON: where and why the run failed (tead.daemon.failure)
    nodes: str | None = None  # JSON: each node's status and timings

    def columns(self) -> tuple[str | None, str | None, str | None]:
        """The final state's, the failure's and the nodes' JSON."""
        return (self.final_state, self.failure, self.nodes)


def branch_rows(
    path: str, source: str, fan_in: str, results: Sequence[Any]
) -> list[dict[str, Any]]:
    """A fan-out's results (ParallelFlowResults) as the run's branch rows."""
    return [{"fan_out": source, "fan_in": fan_in, "path": path, **r.to_dict()} for r in results]


def size_text(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size} bytes"


def encode_end(
    final: dict[str, Any] | None, branches: Sequence[dict[str, Any]], max_state_bytes: int
) -> StorableEnd:
    """The final state's JSON (None with a `problem` if it is over the limit or has no JSON
    form) and each branch result's JSON; branch states share one budget of
    `max_state_bytes`: a branch whose state does not fit keeps its result without it."""
    state_text, problem = None, None
    if final is not None:
        try:
            state_text = encode(final, max_state_bytes)
        except TooLarge:
            problem = (
                f"the run's nodes finished, but its final state is over max_state_bytes "
                f"({size_text(max_state_bytes)}) as JSON, so it was not stored"
            )
        except TeadError as exc:
            problem = str(exc)
    budget = max_state_bytes
    rows = []
    for branch in branches:
        state = branch.get("state")
        try:
            state_json = encode(state, budget) if state is not None else "null"
        except (TooLarge, TeadError) as exc:
            note = (
                f"state not stored: branch states are over max_state_bytes "
                f"({size_text(max_state_bytes)}) in total"
                if isinstance(exc, TooLarge)
                else f"state not stored: {exc}"
            )
            rest = {k: v for k, v in branch.items() if k != "state"}
            rows.append(encode({**rest, "state": None, "state_note": note}, None))
            budget = 0 if isinstance(exc, TooLarge) else budget
            continue
        budget -= len(state_json)
        rest = {k: v for k, v in branch.items() if k != "state"}
        rows.append(encode(rest, None)[:-1] + f',"state":{state_json}}}')
    return StorableEnd(final_state=state_text, branches=tuple(rows), problem=problem)


def encode(value: Any, limit: int | None) -> str:
    """ASCII JSON of `value`; TooLarge once it passes `limit` characters; a RunError if it
    has no JSON form (a cycle)."""
    if limit is not None and _at_least(value, limit) > limit:
        raise TooLarge
    parts, size = [], 0
    try:
        for part in _pieces(value, limit):
            size += len(part)
            if limit is not None and size > limit:
                raise TooLarge
            parts.append(part)
    except (ValueError, TypeError, RecursionError) as exc:
        raise RunError(f"the state cannot be written as JSON: {exc}") from None
    return "".join(parts)


_C_ENCODE = json.JSONEncoder(
    ensure_ascii=True, default=json_default, separators=(",", ":")
).encode  # the C encoder: fast, but it holds the GIL for its whole call
PIECE = 64 * 1024  # at most this much (as counted by _at_least) per call of the C encoder
SLICE = 256  # list items looked at together
_NATIVE = (str, int, float, bool, type(None), dict, list, tuple)


def _pieces(value: Any, limit: int | None) -> Iterator[str]:
    """`value`'s JSON in pieces, each from one short call of the C encoder (so the event
    loop's thread gets the GIL between them). A string longer than `limit` is refused
    before it is encoded."""
    if not isinstance(value, _NATIVE):
        value = json_default(value)
    if isinstance(value, str):
        if limit is not None and len(value) + 2 > limit:
            raise TooLarge
        yield _C_ENCODE(value)
    elif not isinstance(value, dict | list | tuple) or _at_least(value, PIECE) <= PIECE:
        yield _C_ENCODE(value)
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            head = _C_ENCODE({key: 0})[1:-2]  # `"key":` as json writes it (1 -> "1")
            yield f",{head}" if index else head
            yield from _pieces(item, limit)
        yield "}"
    else:
        yield "["
        for start in range(0, len(value), SLICE):
            batch = list(value[start : start + SLICE])
            if start:
                yield ","
            if _at_least(batch, PIECE) <= PIECE:
                yield _C_ENCODE(batch)[1:-1]
                continue
            for index, item in enumerate(batch):
                if index:
                    yield ","
                yield from _pieces(item, limit)
        yield "]"


_FLAT = frozenset({int, float, bool, type(None)})  # each at least one character


def _at_least(value: Any, limit: int) -> int:
    """A lower bound of the length of `value`'s JSON, counted until it passes `limit`."""
    total, stack, seen = 0, [value], set()
    while stack and total <= limit:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes:
            total += len(item) + 2
        elif kind in _FLAT:
            total += 1
        elif id(item) in seen:  # shared or cyclic: counted once (still a lower bound)
            continue
        elif isinstance(item, dict):
            seen.add(id(item))
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend([v for v in item.values() if type(v) not in _FLAT])
        elif isinstance(item, list | tuple | set | frozenset):
            seen.add(id(item))
            total += 1 + 2 * len(item)  # each item is at least one character and a comma
            stack.extend([v for v in item if type(v) not in _FLAT])
        else:
            total += 1
    return total
