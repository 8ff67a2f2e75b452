"""`--input` of `tead run` and `tead dispatch`: inline JSON, or a JSON or YAML file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tead.errors import InputError, WorkflowError
from tead.spec.yamlfile import parse_yaml


def read_input(value: str, option: str = "--input") -> dict[str, Any]:
    """`--input` (or `option`): inline JSON, or `@path` to a JSON or YAML file; must be an
    object."""
    if value.startswith("@"):
        path = value[1:]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{option}: {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{option}: {path}: cannot read: {exc}") from None
        if path.endswith((".yaml", ".yml")):
            try:
                data = parse_yaml(text, path).data
            except WorkflowError as exc:
                raise InputError(f"{option}: {exc.problems[0]}") from None
        else:
            data = _parse_json(text, path, option)
    else:
        data = _parse_json(value, None, option)
    if not isinstance(data, dict):
        kind = "a mapping" if value.endswith((".yaml", ".yml")) else "a JSON object"
        raise InputError(f"{option} must be {kind}, got {type(data).__name__}")
    return data


def _parse_json(text: str, path: str | None, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        prefix = option if path is None else f"{option}: {path}:{exc.lineno}:{exc.colno}"
        raise InputError(f"{prefix}: invalid JSON: {exc.msg}") from None
