"""`tead run`'s stdout is its result: what nodes write goes to stderr meanwhile."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[TextIO]:
    """While the run runs, file descriptor 1 is stderr's, so whatever nodes write (print,
    C code, child processes, process branches) lands on stderr; the stream yielded writes
    to the real stdout (for `--stream` events). Afterwards stdout is stdout again."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    results = open(  # noqa: SIM115 (closed below, before stdout is given back)
        os.dup(saved),
        "w",
        encoding=sys.stdout.encoding or "utf-8",
        errors=sys.stdout.errors or "strict",
        closefd=True,
    )
    try:
        yield results
    finally:
        with contextlib.suppress(OSError):
            results.close()
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
