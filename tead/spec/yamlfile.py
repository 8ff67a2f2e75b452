"""YAML → plain Python data, keeping where every value and key came from.

PyYAML's safe loader is used for parsing; the tree is built by hand so that each value
keeps its line and column (for `file:line:col` errors), duplicate keys are reported
instead of silently overwritten, and YAML 1.1's `on`/`off`/`yes`/`no` stay strings (a
workflow's `on:` key must not become `True`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from tead.errors import Location, Problem, WorkflowError
from tead.spec.redact import key_label, redact

Path = tuple[str | int, ...]


# libyaml's parser when PyYAML has it (15x faster to compose; same marks), else PyYAML's.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """A safe loader whose booleans are only true/false (YAML 1.2), not on/off/yes/no."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

MAX_NODES = 200_000  # a guard against alias bombs ("billion laughs")
MAX_DEPTH = 100  # deeper nesting is refused with its location, before anything recurses on it


@dataclass(slots=True)
class YamlDocument:
    """Parsed data plus the positions of its values and mapping keys."""

    file: str
    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    block_scalars: set[Path] = field(
        default_factory=set
    )  # `|` / `>` values: text starts a line below

    def where(self, path: Path, *, key: bool = False) -> Location:
        """The location of `path`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in table:
                line, col = table[prefix]
                return Location(self.file, line, col)
            if key and prefix in self.values:
                line, col = self.values[prefix]
                return Location(self.file, line, col)
        return Location(self.file)


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document; raise WorkflowError with a location on any problem."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        reason = redact(exc.problem or exc.context or "invalid YAML")
        raise WorkflowError([Problem(f"invalid YAML: {reason}", where)]) from None
    except yaml.YAMLError as exc:  # no position; its text may quote the file
        raise WorkflowError(
            [Problem(f"invalid YAML ({type(exc).__name__})", Location(file))]
        ) from None
    doc = YamlDocument(file=file, data=None)
    if root is None:
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(root, ())
    if builder.problems:
        raise WorkflowError(builder.problems)
    return doc


class _Builder:
    """Turns a composed node tree into data, recording positions and problems."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.seen: dict[int, Any] = {}
        self.count = 0
        self.problems: list[Problem] = []
        self.constructor = _Loader("")

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.doc.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.doc.values.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if len(path) > MAX_DEPTH:
            raise WorkflowError(
                [Problem(f"nested deeper than {MAX_DEPTH} levels", self._loc(node))]
            )
        if id(node) in self.seen:  # an alias: share the value, as PyYAML does
            return self.seen[id(node)]
        self.count += 1
        if self.count > MAX_NODES:
            raise WorkflowError([Problem("document too large", self._loc(node))])
        if isinstance(node, yaml.MappingNode):
            result: Any = {}
            self.seen[id(node)] = result
            self.constructor.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self.build(key_node, (*path, "<key>"))
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.problems.append(
                        Problem("mapping keys must be scalars", self._loc(key_node))
                    )
                    continue
                key = key if isinstance(key, str) else str(key)
                if key in result:
                    label = key_label(key) or ""
                    self.problems.append(
                        Problem(f"duplicate key {label}".rstrip(), self._loc(key_node))
                    )
                    continue
                self.doc.keys[(*path, key)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            items: list[Any] = []
            self.seen[id(node)] = items
            items.extend(self.build(item, (*path, i)) for i, item in enumerate(node.value))
            return items
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            self.doc.block_scalars.add(path)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # its str() may quote the file's line
            reason = redact(exc.problem or "cannot be read")
            self.problems.append(Problem(f"invalid value: {reason}", self._loc(node)))
            return None
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):  # e.g. `!!int abc`
            self.problems.append(Problem("invalid value for its tag", self._loc(node)))
            return None
        self.seen[id(node)] = value
        return value
