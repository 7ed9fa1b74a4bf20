"""Edits of a JSON file's text that keep everything else byte for byte: formatting, key order,
``"//"`` comments. Only what ``gateway origins add|remove`` needs: find a value by its key path,
append a string to an array, remove one, or add a member to an object.

The parser only records where each value starts and ends; ``json.loads`` decides what each
string is, so escapes are read exactly as the configuration loader reads them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"')
_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")


class JsonTextError(ValueError):
    """The text is not the JSON the edit expects."""


@dataclass
class Node:
    """A value's span ``text[start:end]``; members (objects) or items (arrays) inside it."""

    start: int
    end: int
    kind: str  # "object", "array", "string" or "scalar"
    members: list[tuple[str, Node]] = field(default_factory=list)
    key_starts: list[int] = field(default_factory=list)  # where each member's key begins
    items: list[Node] = field(default_factory=list)
    value: str | None = None  # a string's decoded value

    def member(self, key: str) -> Node | None:
        """The last member named ``key`` (JSON's rule for repeated keys)."""
        found = [node for name, node in self.members if name == key]
        return found[-1] if found else None


def parse(text: str) -> Node:
    node, end = _value(text, _skip(text, 0))
    if _skip(text, end) != len(text):
        raise JsonTextError("text after the JSON value")
    return node


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    assert match is not None
    return match.end()


def _string(text: str, pos: int) -> tuple[str, int]:
    match = _STRING.match(text, pos)
    if match is None:
        raise JsonTextError(f"expected a string at offset {pos}")
    try:
        value = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"bad string at offset {pos}: {exc.msg}") from None
    return str(value), match.end()


def _value(text: str, pos: int) -> tuple[Node, int]:
    if pos >= len(text):
        raise JsonTextError("unexpected end of the text")
    char = text[pos]
    if char == "{":
        return _object(text, pos)
    if char == "[":
        return _array(text, pos)
    if char == '"':
        value, end = _string(text, pos)
        return Node(pos, end, "string", value=value), end
    match = _SCALAR.match(text, pos)
    if match is None:
        raise JsonTextError(f"unexpected character at offset {pos}")
    return Node(pos, match.end(), "scalar"), match.end()


def _object(text: str, start: int) -> tuple[Node, int]:
    node = Node(start, start, "object")

    def member(pos: int) -> int:
        if not text.startswith('"', pos):
            raise JsonTextError(f"expected a key at offset {pos}")
        node.key_starts.append(pos)
        key, pos = _string(text, pos)
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise JsonTextError(f"expected ':' at offset {pos}")
        value, pos = _value(text, _skip(text, pos + 1))
        node.members.append((key, value))
        return pos

    return _entries(text, node, "}", member)


def _array(text: str, start: int) -> tuple[Node, int]:
    node = Node(start, start, "array")

    def item(pos: int) -> int:
        value, pos = _value(text, pos)
        node.items.append(value)
        return pos

    return _entries(text, node, "]", item)


def _entries(text: str, node: Node, close: str, entry: Callable[[int], int]) -> tuple[Node, int]:
    """The comma-separated entries of an object or array, up to ``close``."""
    pos = _skip(text, node.start + 1)
    if not text.startswith(close, pos):
        while True:
            pos = _skip(text, entry(pos))
            if not text.startswith(",", pos):
                break
            pos = _skip(text, pos + 1)
    if not text.startswith(close, pos):
        raise JsonTextError(f"expected ',' or '{close}' at offset {pos}")
    node.end = pos + 1
    return node, node.end


def _separator(text: str, container: Node, nodes: list[Node]) -> str:
    """What goes between two entries of ``container``, as its own entries are separated: the
    text between its last two entries, else a line break with the first entry's indentation
    when it starts on its own line, else ``", "``."""
    if len(nodes) >= 2:
        return text[nodes[-2].end : nodes[-1].start]
    lead = text[container.start + 1 : nodes[0].start] if nodes else ""
    return "," + lead if "\n" in lead else ", "


def append_string(text: str, array: Node, value: str) -> str:
    """``text`` with ``value`` appended to ``array``, formatted like its other items."""
    encoded = json.dumps(value, ensure_ascii=False)
    if not array.items:
        return text[: array.start + 1] + encoded + text[array.start + 1 :]
    last = array.items[-1]
    return text[: last.end] + _separator(text, array, array.items) + encoded + text[last.end :]


def remove_item(text: str, array: Node, index: int) -> str:
    """``text`` without ``array``'s item ``index`` and its separator: the inverse of
    ``append_string``, so an append and a remove leave the text as it was."""
    items = array.items
    if len(items) == 1:
        return text[: array.start + 1] + text[array.end - 1 :]
    if index == len(items) - 1:
        return text[: items[index - 1].end] + text[items[index].end :]
    return text[: items[index].start] + text[items[index + 1].start :]


def add_member(text: str, obj: Node, key: str, value: object) -> str:
    """``text`` with ``"key": value`` added as the last member of ``obj``."""
    member = f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
    values = [node for _, node in obj.members]
    if not values:
        return text[: obj.start + 1] + member + text[obj.start + 1 :]
    last_key = obj.key_starts[-1]
    if len(values) >= 2:
        separator = text[values[-2].end : last_key]
    else:
        lead = text[obj.start + 1 : last_key]
        separator = "," + lead if "\n" in lead else ", "
    return text[: values[-1].end] + separator + member + text[values[-1].end :]
