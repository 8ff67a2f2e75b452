"""Globs of watch triggers, as regular expressions over whole paths."""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex over whole paths: `*` and `?` stay within one folder, `**`
    crosses folders (`a/**/b` also matches `a/b`), `[...]` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body[0] in "!^"
            chars = "".join("\\" + c if c in "\\^[]" else c for c in body[negate:])
            out.append(("[^" if negate else "[") + chars + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def check_glob(pattern: str) -> str:
    """The pattern, or ValueError if it is not a valid glob."""
    try:
        glob_regex(pattern)
    except re.error as exc:
        raise ValueError(f"invalid glob {pattern!r}: {exc.msg}") from None
    return pattern
