"""What of a run's end can be stored: its final state and branch results as JSON text,
each state at most `max_state_bytes`.

Encoding runs on a worker thread, never on the event loop, and in small steps (the
json module's pure-Python encoder yields between tokens, so the loop keeps getting the
GIL); a state that is certainly too big (its strings alone are over the limit) is
refused before any encoding, and encoding stops as soon as the limit is passed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    encoder = json.JSONEncoder(ensure_ascii=True, default=json_default, separators=(",", ":"))
    parts, size = [], 0
    try:
        for part in encoder.iterencode(value):
            size += len(part)
            if limit is not None and size > limit:
                raise TooLarge
            parts.append(part)
    except (ValueError, TypeError, RecursionError) as exc:
        raise RunError(f"the state cannot be written as JSON: {exc}") from None
    return "".join(parts)


def _at_least(value: Any, limit: int) -> int:
    """A lower bound of the length of `value`'s JSON, counted until it passes `limit`."""
    total, stack, seen = 0, [value], set()
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2
            continue
        if id(item) in seen:  # shared or cyclic: counted once (still a lower bound)
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            total += 2 + len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 1
    return total
