"""JSON for states and events: what the json module does not know is converted, not lost."""

from __future__ import annotations

import dataclasses
import json
import os
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
