"""Durations (`500ms`, `30s`, `10m`, `2h`) and sizes (`512M`, `2G`) in files and configs."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """`500ms`, `30s`, `10m`, `2h` or a number of seconds → float seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 500ms, 10m or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or 500ms, 30s, 10m, 2h"
            ) from None
    else:
        raise ValueError("expected a duration such as 30s, 500ms, 10m or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"a duration must be positive and finite, got {value!r}")
    return seconds


def _duration_schema(minimum: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "number", minimum: 0},
            {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$"},
        ],
        "description": "seconds, or a string such as 500ms, 30s, 10m, 2h",
    }


def _duration_or_zero(value: object) -> float:
    return parse_duration(value, allow_zero=True)


Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_duration_schema("exclusiveMinimum"))
]
DurationOrZero = Annotated[
    float, BeforeValidator(_duration_or_zero), WithJsonSchema(_duration_schema("minimum"))
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: object) -> int:
    """`512M`, `2G`, `1.5G` (powers of 1024; `MB`, `MiB` read the same) or bytes → int."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a size such as 512M, 2G or a number of bytes")
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"invalid size {value!r}: use a number of bytes or 512M, 2G")
        size = float(match.group(1)) * _SIZE_UNIT[match.group(2).lower()]
    else:
        size = float(value)
    if not math.isfinite(size) or size < 1:
        raise ValueError(f"a size must be positive, got {value!r}")
    return int(size)


Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d+(\.\d+)?[KMGTkmgt]?(i?B)?$"},
            ],
            "description": "bytes, or a string such as 512M, 2G",
        }
    ),
]
