"""Secrets kept by the daemon, and the one function that masks their values.

A secret is a file in the state folder's `secrets/` folder (its name is the secret's name,
its content the value, one trailing newline dropped) or a `TEAD_SECRET_<NAME>` variable of
the daemon's environment (NAME upper-cased, `-` and `.` as `_`); a file wins. The folder
and its files must be private to the daemon's user: one that group or others may read or
write is refused with a message saying so, and no secret is taken from it.

Workflows reach secrets only through `env:` (`API_TOKEN: {secret: api_token}`). Every
value the daemon has read is masked (`Secrets.mask`, `***`) in whatever it stores, logs
or answers: a run's error, final state and branch results, and its output's log lines
(piece by piece, across the cuts of long lines: `mask_piece`), and the daemon's own log
(`masked_log`). Masked: each value, its whitespace-stripped form and both as escaped in
JSON, when at least 3 characters long. In JSON only string values are masked, never keys
(a secret `status` must not rewrite the keys of the records tead writes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tead.daemon.storable import StorableEnd
from tead.errors import TeadError
from tead.spec.models import SecretRef

log = logging.getLogger(__name__)

MASK = "***"
MIN_MASKED = 3  # shorter values are not masked: "a" would garble every text
ENV_PREFIX = "TEAD_SECRET_"
MAX_SECRET_BYTES = 64 * 1024
MAY_GO_ON = 2048  # a piece's last line this long may be cut (at 8 KiB, in bytes)


class SecretError(TeadError):
    """A secret that cannot be given to a run (unknown, or its folder is not private)."""


def env_name(name: str) -> str:
    """The daemon's environment variable that holds secret `name`."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


class Secrets:
    """The secrets in `folder` and in `environ` (see the module's docstring)."""

    def __init__(self, folder: Path | None, environ: Mapping[str, str] | None = None) -> None:
        self.folder = folder
        self._environ = dict(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._masked: set[str] = set()  # every value ever read (kept after it is gone)
        self._pattern: re.Pattern[str] | None = None
        self._pieces: re.Pattern[str] | None = None  # also across "\n" (cut pieces)
        self._longest = 0
        self._ordered: tuple[str, ...] = ()  # the forms masked, longest first
        self._multiline: tuple[str, ...] = ()  # those with a newline
        for key, value in self._environ.items():
            if key.startswith(ENV_PREFIX):
                self._remember(value)

    def folder_problem(self) -> str | None:
        """Why the secrets folder cannot be used, or None (also when it does not exist)."""
        if self.folder is None:
            return None
        try:
            info = self.folder.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"secrets folder {self.folder}: cannot read it: {exc.strerror}"
        if not stat.S_ISDIR(info.st_mode):
            return f"secrets folder {self.folder} is not a folder"
        if info.st_mode & 0o077:
            return (
                f"secrets folder {self.folder} is open to group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 700 it"
            )
        return None

    def resolve(self, env: Mapping[str, str | SecretRef]) -> dict[str, str]:
        """`env:` with each `{secret: name}` replaced by its value; SecretError naming the
        variable and the secret (never a value) if one cannot be given."""
        resolved: dict[str, str] = {}
        for variable, value in env.items():
            if isinstance(value, SecretRef):
                resolved[variable] = self._value(variable, value.secret)
            else:
                resolved[variable] = value
        return resolved

    def _value(self, variable: str, name: str) -> str:
        problem = self.folder_problem()
        if problem is not None:
            raise SecretError(f"env.{variable}: secret {name!r} not read: {problem}")
        value: str | None = None
        path = self.folder / name if self.folder is not None else None
        try:
            if path is None:
                raise FileNotFoundError(name)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            value = self._environ.get(env_name(name))
        except OSError as exc:
            raise SecretError(f"env.{variable}: secret {name!r}: {exc.strerror}") from None
        else:
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise SecretError(f"env.{variable}: secret {name!r} is not a regular file")
                if info.st_mode & 0o077:
                    raise SecretError(
                        f"env.{variable}: secret file {path} is open to group or others "
                        f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it"
                    )
                data = handle.read(MAX_SECRET_BYTES + 1)
            if len(data) > MAX_SECRET_BYTES:
                raise SecretError(f"env.{variable}: secret {name!r} is over 64 KiB")
            value = data.decode("utf-8", "replace").removesuffix("\n")
        if value is None:
            raise SecretError(
                f"env.{variable}: unknown secret {name!r} (no file {path or 'secrets/' + name}, "
                f"no variable {env_name(name)} in the daemon's environment)"
            )
        if "\0" in value:
            raise SecretError(f"env.{variable}: secret {name!r} holds a NUL character")
        self._remember(value)
        return value

    def _remember(self, value: str) -> None:
        forms: set[str] = set()
        for one in {value, value.strip()}:  # a node may read `value\r\n` with .strip()
            forms |= {one, json.dumps(one, ensure_ascii=True)[1:-1]}
            forms |= {json.dumps(one, ensure_ascii=False)[1:-1]}
        forms = {f for f in forms if len(f) >= MIN_MASKED}
        with self._lock:
            if forms <= self._masked:
                return
            self._masked |= forms
            ordered = sorted(self._masked, key=len, reverse=True)  # longest first
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            self._pieces = re.compile("|".join("\n?".join(map(re.escape, v)) for v in ordered))
            self._longest = len(ordered[0])
            self._ordered = tuple(ordered)
            self._multiline = tuple(v for v in ordered if "\n" in v)

    def mask(self, text: str) -> str:
        """`text` with every secret value the daemon has read replaced by `***` (also as
        it reads escaped in JSON). The one masking function of the daemon: whatever it
        stores, logs or answers of a run passes through it (JSON texts: `mask_json`)."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def tail_size(self) -> int:
        """How many characters of a stream's previous text `mask_piece` needs."""
        longest = self._longest
        return longest + longest // 4096 + 2 if longest else 0

    def mask_piece(self, tail: str, text: str) -> str:
        """`text`, the next piece of a stream whose previous text ends with `tail` (not
        masked), masked so that no part of a value straddling the boundary is left: a
        value is matched also when `\\n` cuts it (a long line is kept in pieces), one
        that began in `tail` is masked in `text` too, and an end of `text` that is the
        start (3 characters or more) of a value is masked (the rest may come next) when
        its last line is long enough to have been cut, or that start ends a line of a
        multi-line value."""
        pattern, masked = self._pieces, self._ordered
        if pattern is None or not text:
            return text
        joined = f"{tail}\n{text}" if tail else text
        start = len(joined) - len(text)
        spans = [
            (max(m.start(), start) - start, m.end() - start)
            for m in pattern.finditer(joined)
            if m.end() > start
        ]
        cut = len(text) - text.rfind("\n") > MAY_GO_ON  # its last line may go on next
        values = masked if cut else self._multiline  # else only a line's end may go on
        opening = min((_opening(joined, value, cut) for value in values), default=len(joined))
        if opening < len(joined):  # it may have begun in `tail` (lines of a PEM key)
            spans.append((max(opening - start, 0), len(text)))
        if not spans:
            return text
        parts, at = [], 0
        for begin, end in sorted(spans):
            if end <= at:
                continue
            parts.append(text[at:begin] if begin > at else "")
            parts.append(MASK if begin >= at else "")
            at = end
        parts.append(text[at:])
        return "".join(parts)

    def mask_json(self, text: str) -> str:
        """JSON `text` with every secret value masked inside its strings (decoded and
        encoded again only when a value occurs in it, so that its structure stays JSON)."""
        pattern = self._pattern
        if pattern is None or not text or pattern.search(text) is None:
            return text
        masked = self.mask_value(json.loads(text))
        return json.dumps(masked, ensure_ascii=True, separators=(",", ":"))

    def mask_value(self, value: Any) -> Any:
        """A JSON-like value with every string value masked. Keys are kept as they are: the
        records tead writes (failure, nodes, branch rows) have fixed keys, and a secret
        equal to one (`status`, `node`) must not corrupt them; a user's state key that
        equals a secret is therefore not masked."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self.mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_value(v) for v in value]
        return value

    def mask_end(self, end: StorableEnd) -> StorableEnd:
        """A run's encoded end with every secret value masked."""
        state, failure, nodes = end.final_state, end.failure, end.nodes
        return dataclasses.replace(
            end,
            final_state=self.mask_json(state) if state is not None else None,
            branches=tuple(self.mask_json(text) for text in end.branches),
            problem=self.mask(end.problem) if end.problem is not None else None,
            failure=self.mask_json(failure) if failure is not None else None,
            nodes=self.mask_json(nodes) if nodes is not None else None,
        )


class MaskingFilter(logging.Filter):
    """A log handler's filter that masks secrets' values in each record's message."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.secrets.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


@contextmanager
def masked_log(secrets: Secrets) -> Iterator[None]:
    """Meanwhile the root logger's handlers (the daemon's log) mask secrets' values."""
    masking = MaskingFilter(secrets)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(masking)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(masking)


def _opening(text: str, value: str, cut: bool) -> int:
    """Where the longest end of `text` that is a start of `value` (not all of it, at least
    `MIN_MASKED` characters; when `text` is not `cut`, a start followed by a newline)
    begins; len(text) if none."""
    at = text.find(value[0], max(0, len(text) - len(value) + 1))
    while at != -1 and len(text) - at >= MIN_MASKED:
        rest = text[at:]
        if value.startswith(rest) and (cut or value.startswith(rest + "\n")):
            return at
        at = text.find(value[0], at + 1)
    return len(text)
