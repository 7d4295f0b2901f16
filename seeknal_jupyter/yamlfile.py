"""Strict YAML reading: line numbers, duplicate keys, tabs and no YAML 1.1 surprises."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from seeknal_jupyter.errors import Problem


class Mapping(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of itself and of each key (1-based).

    For a text value whose lines are the file's lines (a ``|`` block, or a value on
    one line), it also remembers the line where the text starts.
    """

    line: int = 0
    key_lines: dict[str, int]
    text_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def text_line(self, key: str) -> int | None:
        """The file line of the first line of ``key``'s text, or None when its
        lines are not the file's (folded, quoted over several lines, or no file)."""
        return getattr(self, "text_lines", {}).get(key)


_Parser: Any = (
    getattr(yaml, "CSafeLoader", None) and yaml.cyaml.CParser or yaml.SafeLoader
)


class _StrictLoader(_Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """A safe loader (on libyaml's parser when PyYAML has it) with YAML 1.2-like
    scalars: only true/false are booleans, no octal, no base-60 numbers, no implicit
    dates, so `no`, `0150` and `12:30` stay strings."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


_StrictLoader.yaml_implicit_resolvers = {}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null",
    re.compile(r"^(?:~|null|Null|NULL|)$"),
    ["~", "n", "N", ""],
)


class DuplicateKey(yaml.MarkedYAMLError):
    """A mapping repeats a key."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> Mapping:
    result = Mapping()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    result.text_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise DuplicateKey(
                None,
                None,
                f"duplicate key {key!r} (first on line {result.key_lines[key]})",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
        start = _text_start(value_node)
        if start is not None:
            result.text_lines[key] = start
    return result


def _text_start(node: yaml.Node) -> int | None:
    """Where a scalar's text starts in the file, if its lines are the file's."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.style == "|":
        return int(node.start_mark.line) + 2
    if node.start_mark.line == node.end_mark.line:
        return int(node.start_mark.line) + 1
    return None


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


@dataclass
class Document:
    """One YAML document of a file: its data and the line it starts on."""

    data: Any
    line: int


@dataclass
class YamlFile:
    """The documents of one file plus the problems and warnings found reading it."""

    documents: list[Document] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _hint_for(error: yaml.YAMLError, text: str) -> str | None:
    message = str(error)
    if "\\t" in message or "\t" in message:
        return "indent with spaces; YAML does not allow tabs for indentation"
    if isinstance(error, DuplicateKey):
        return "remove or rename one of the keys"
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        lines = text.splitlines()
        if mark.line < len(lines) and "\t" in lines[mark.line]:
            return "indent with spaces; YAML does not allow tabs for indentation"
    return "check the indentation and the ':' after each key"


def _separator_before(text: str, line: int) -> int:
    """The line of the last ``---`` before ``line``, where an empty document starts."""
    lines = text.splitlines()[: line - 1]
    for number in range(len(lines), 0, -1):
        if lines[number - 1].startswith("---"):
            return number
    return 1


def read_yaml(text: str, file: str) -> YamlFile:
    """Read every document of a YAML text strictly.

    Args:
        text: the file's contents.
        file: the name to report in problems.

    Returns:
        The documents read before any syntax error, with problems and warnings.
    """
    result = YamlFile()
    loader = _StrictLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 1
            data = loader.construct_document(node) if node is not None else None
            if data is None:
                result.warnings.append(
                    Problem(
                        "empty YAML document ignored",
                        file,
                        _separator_before(text, line),
                        hint="remove the extra '---' or write a node there",
                    )
                )
                continue
            result.documents.append(Document(data, line))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(
            error, "context_mark", None
        )
        problem = getattr(error, "problem", None) or str(error)
        result.problems.append(
            Problem(
                f"invalid YAML: {problem}",
                file,
                mark.line + 1 if mark is not None else None,
                hint=_hint_for(error, text),
            )
        )
    finally:
        loader.dispose()
    return result
