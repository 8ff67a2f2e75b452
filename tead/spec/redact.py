"""Load errors locate a problem without echoing the file's content.

A workflow "file" may be a symlink to a secret (`x.yaml -> /etc/shadow`), and load errors
are shown by `GET /api/v1/workflows`. So an error names a key only if it is short and
looks like an identifier (a typo of a real key, not a line of someone's file), and never
quotes a value from the file beyond a few characters; the location (`file:line:col`)
says where to look.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,39}\Z")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,39}\Z")
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
SHORT = 3  # quoted literals this short (a character, a small number) are kept
LONG = 40  # longer quoted literals are always hidden
HIDDEN = "'…'"


def key_label(key: object) -> str | None:
    """`'key'` if `key` is short and identifier-like (safe to show), else None."""
    if isinstance(key, str) and _KEY.match(key):
        return repr(key)
    return None


def path_label(path: Iterable[str | int]) -> str:
    """A data path as `a.b.0.c`, with keys that are not safe to show as `?`."""
    parts = []
    for step in path:
        if isinstance(step, int):
            parts.append(str(step))
        else:
            parts.append(step if key_label(step) else "?")
    return ".".join(parts)


def strings_in(value: object, *, limit: int = 1000) -> list[str]:
    """The strings (and keys) inside `value`, at most `limit` of them."""
    found: list[str] = []
    todo = [value]
    while todo and len(found) < limit:
        item = todo.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)
        elif item is not None:
            found.append(str(item))
    return found


def redact(message: str, inputs: Iterable[str] | None = None) -> str:
    """`message` with quoted literals longer than a few characters replaced by '…'.

    With `inputs`, only literals that come from them are replaced (the message's own
    words, such as the names of allowed values, stay); without, every long one is.
    """
    sources = None if inputs is None else list(inputs)

    def hide(match: re.Match[str]) -> str:
        literal = match.group(0)
        inner = literal[1:-1]
        if len(inner) <= SHORT:
            return literal
        from_input = sources is None or any(inner in s or inner in repr(s) for s in sources)
        if len(inner) <= LONG and not from_input:
            return literal
        return HIDDEN

    return _QUOTED.sub(hide, message)


def redact_names(message: str) -> str:
    """`message` with quoted literals that do not look like a node name replaced by '…'
    (a graph's problems quote names from the file, such as an edge's unknown target)."""

    def hide(match: re.Match[str]) -> str:
        literal = match.group(0)
        inner = literal[1:-1]
        return literal if len(inner) <= SHORT or _NAME.match(inner) else HIDDEN

    return _QUOTED.sub(hide, message)
