"""`--input` of `tead run` and `tead dispatch`: inline JSON, or a JSON or YAML file."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from tead.errors import InputError, WorkflowError
from tead.jsonable import load_json
from tead.spec.yamlfile import parse_yaml

#: the most an `@file` may hold (the most a run's state may: `max_state_bytes`)
MAX_INPUT_BYTES = 16 * 1024 * 1024


def read_input(value: str, option: str = "--input") -> dict[str, Any]:
    """`--input` (or `option`): inline JSON, or `@path` to a JSON or YAML file; must be an
    object."""
    if value.startswith("@"):
        path = value[1:]
        data_bytes = _read_file(path, option)
        if path.endswith((".yaml", ".yml")):
            try:
                text = data_bytes.decode("utf-8")
                data = parse_yaml(text, path).data
            except UnicodeDecodeError as exc:
                raise InputError(f"{option}: {path}: cannot read: {exc}") from None
            except WorkflowError as exc:
                raise InputError(f"{option}: {exc.problems[0]}") from None
            except RecursionError:
                raise InputError(f"{option}: {path}: nested too deeply") from None
        else:
            data = _parse_json(data_bytes, path, option)
    else:
        data = _parse_json(value.encode("utf-8", "surrogateescape"), None, option)
    if not isinstance(data, dict):
        kind = "a mapping" if value.endswith((".yaml", ".yml")) else "a JSON object"
        raise InputError(f"{option} must be {kind}, got {type(data).__name__}")
    return data


def _read_file(path: str, option: str) -> bytes:
    """A regular file's bytes, at most MAX_INPUT_BYTES of them (a FIFO or a device could
    block or never end: opened without blocking, then refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(f"{option}: {path}: not a regular file")
            with open(fd, "rb", closefd=False) as file:
                data = file.read(MAX_INPUT_BYTES + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise InputError(f"{option}: {path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{option}: {path}: cannot read: {exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{option}: {path}: larger than {MAX_INPUT_BYTES} bytes")
    return data


def _parse_json(data: bytes, path: str | None, option: str) -> Any:
    try:
        return load_json(data)
    except json.JSONDecodeError as exc:
        prefix = option if path is None else f"{option}: {path}:{exc.lineno}:{exc.colno}"
        raise InputError(f"{prefix}: invalid JSON: {exc.msg}") from None
