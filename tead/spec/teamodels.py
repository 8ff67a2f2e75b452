"""The parts of the workflow format that come from The Edge Agent (TEA) only: `steps:` of a
`dynamic_parallel` node, edge `condition:`, `state_schema` and `config:`. Their meaning in
tead is in tead.spec.tea and the README's migration table."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
VarName = Annotated[str, Field(pattern=r"^[A-Za-z_]\w*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class StepSpec(_Model):
    """One step of a TEA `dynamic_parallel` node's `steps:` (Python `run:` code)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)] | None = None
    description: str | None = None
    language: Literal["python"] | None = None
    run: str


class ExpressionCondition(_Model):
    """TEA's `condition: {type: expression, value: ...}`."""

    type: Literal["expression"]
    value: str


#: TEA's type names (Python's) → JSON Schema types; `any`/`object` accept every value
STATE_TYPES: dict[str, str | None] = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "object",
    "object": "object",
    "any": None,
    "null": "null",
}


def _check_state_type(value: Any) -> Any:
    kind = value.get("type", "any") if isinstance(value, dict) else value
    if not isinstance(kind, str) or kind.lower() not in STATE_TYPES:
        names = ", ".join(k for k in STATE_TYPES if k not in ("string", "integer", "boolean"))
        raise ValueError(f"unknown state type: use one of {names}")
    return value


StateType = Annotated[
    str | dict[str, Any],
    AfterValidator(_check_state_type),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": sorted(STATE_TYPES)},
                {"type": "object", "properties": {"type": {"enum": sorted(STATE_TYPES)}}},
            ],
            "description": "a type name (str, int, float, bool, list, dict, any) or "
            "{type: ..., description: ...}",
        }
    ),
]


class TeaConfig(_Model):
    """TEA's `config:`. `raise_exceptions` is what tead always does; the rest is ignored with
    a warning (see tead.spec.tea), except interrupts, which tead refuses."""

    model_config = ConfigDict(extra="allow", frozen=True)

    raise_exceptions: bool = True


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def state_types(schema: dict[str, Any] | None) -> dict[str, str | None]:
    """`state_schema` → {key: JSON type name, or None for any value}."""
    found: dict[str, str | None] = {}
    for key, value in (schema or {}).items():
        kind = value.get("type", "any") if isinstance(value, dict) else value
        found[key] = STATE_TYPES[str(kind).lower()]
    return found


def state_problems(types: dict[str, str | None], state: dict[str, Any]) -> list[str]:
    """Keys of `state` whose value is not of their `state_schema` type (None always fits:
    a declared key may be unset)."""
    problems = []
    for key, kind in types.items():
        if kind is None or key not in state or state[key] is None:
            continue
        value = state[key]
        fits = isinstance(value, _JSON_TYPES[kind])
        if isinstance(value, bool) and kind in ("integer", "number"):
            fits = False
        if not fits:
            problems.append(f"key {key!r} is {_kind_of(value)}, state_schema says {kind}")
    return problems


def _kind_of(value: object) -> str:
    for name, kinds in _JSON_TYPES.items():
        if isinstance(value, kinds) and not (isinstance(value, bool) and name != "boolean"):
            return f"a {name}" if name != "integer" else "an integer"
    return f"a {type(value).__name__}"


def state_json_schema(name: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON Schema of a workflow's state, from its `state_schema` (for editors)."""
    properties: dict[str, Any] = {}
    for key, kind in state_types(schema).items():
        entry: dict[str, Any] = {} if kind is None else {"type": [kind, "null"]}
        value = (schema or {})[key]
        if isinstance(value, dict) and isinstance(value.get("description"), str):
            entry["description"] = value["description"]
        properties[key] = entry
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"state of {name}",
        "type": "object",
        "properties": properties,
    }
