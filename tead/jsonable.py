"""JSON for states and events: what the json module does not know is converted, not lost."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from tead.errors import RunError


def json_default(value: Any) -> Any:
    """JSON for values the json module does not know (results, sets, dates, paths...)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return repr(value) if not isinstance(value, os.PathLike) else os.fspath(value)


def dumps(value: Any, *, indent: int | None = None, ascii_only: bool = False) -> str:
    """JSON text of a state or event; a value that has none (a cycle) is a RunError."""
    try:
        return json.dumps(value, default=json_default, indent=indent, ensure_ascii=ascii_only)
    except (ValueError, TypeError, RecursionError) as exc:
        raise RunError(f"the state cannot be written as JSON: {exc}") from None


_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]')


def load_json(body: bytes) -> Any:
    """`json.loads(body)`, with the errors it gives no position for (bytes that are not
    UTF-8, an integer over Python's digit limit, nesting deeper than the decoder goes)
    raised as JSONDecodeError at the place found."""
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        good = body[: exc.start].decode("utf-8", "replace")
        raise json.JSONDecodeError("not UTF-8", good, len(good)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        depth, where = _deepest(text)
        raise json.JSONDecodeError(f"nested too deeply ({depth} levels)", text, where) from None
    except ValueError:
        digits = sys.get_int_max_str_digits()
        long_int = re.compile(rf'"[^"\\]*(?:\\.[^"\\]*)*"|(?<![\d.eE+-])(-?\d{{{digits + 1},}})')
        where = next((m.start(1) for m in long_int.finditer(text) if m.group(1)), 0)
        message = f"integer too long (more than {digits} digits)"
        raise json.JSONDecodeError(message, text, where) from None


def _deepest(text: str) -> tuple[int, int]:
    """How deeply `text`'s arrays and objects nest, and where the first of its deepest
    brackets is (strings skipped)."""
    depth, deepest, where = 0, 0, 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > deepest:
                deepest, where = depth, match.start()
        elif token in ("]", "}"):
            depth -= 1
    return deepest, where
