"""Text from runs (their output, their errors) shown safely: control characters escaped,
so that none reaches a terminal (a title change, a cleared line, a `\\r` hiding text)."""

from __future__ import annotations

#: printable, or a tab: other C0 and C1 control characters (and DEL) as `\xNN`
CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160)) if c != 9}


def escape_controls(text: str) -> str:
    """`text` with its control characters but tabs escaped (newlines too)."""
    return text.translate(CONTROL)


def escape_lines(text: str) -> str:
    """`text` with its control characters escaped but tabs and newlines."""
    return "\n".join(escape_controls(line) for line in text.split("\n"))
