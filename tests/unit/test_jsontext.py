"""Format-preserving edits of JSON text (``gateway origins add|remove``): table-driven."""

from __future__ import annotations

import json

import pytest

from gateway.config import jsontext

SHAPES = {
    "one line": '{"web": {"javascript_origins": ["https://a.example"], "x": 1}}\n',
    "multiline": (
        '{\n  "//": "clients",\n  "web": {\n    "javascript_origins": [\n'
        '      "https://a.example",\n      "https://b.example"\n    ]\n  }\n}\n'
    ),
    "one item on its own line": '{"web": {"javascript_origins": [\n  "https://a.example"\n]}}',
    "empty": '{"web": {"javascript_origins": [], "//": "none yet"}}',
    "escapes": '{"w\\u0065b": {"javascript_origins": ["https:\\/\\/a.example"]}}',
}


def origins(text: str) -> list[str]:
    return list(json.loads(text)["web"]["javascript_origins"])


def origins_node(text: str) -> jsontext.Node:
    """The node of ``web.javascript_origins`` in ``text``."""
    web = jsontext.parse(text).member("web")
    assert web is not None
    listed = web.member("javascript_origins")
    assert listed is not None
    return listed


@pytest.mark.parametrize("shape", SHAPES)
def test_append_then_remove_gives_back_the_same_bytes(shape: str) -> None:
    text = SHAPES[shape]
    listed = origins_node(text)
    added = jsontext.append_string(text, listed, "https://new.example")
    assert origins(added) == [*origins(text), "https://new.example"]
    again = origins_node(added)
    assert jsontext.remove_item(added, again, len(again.items) - 1) == text


def test_appended_items_follow_the_layout() -> None:
    """A new item sits where the others would put it: same line, or its own indented line."""
    multi = SHAPES["multiline"]
    listed = origins_node(multi)
    added = jsontext.append_string(multi, listed, "https://c.example")
    assert '"https://b.example",\n      "https://c.example"\n    ]' in added
    one = SHAPES["one line"]
    listed = origins_node(one)
    assert '["https://a.example", "https://c.example"]' in jsontext.append_string(
        one, listed, "https://c.example"
    )


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, '["b", "c"]'), (1, '["a", "c"]'), (2, '["a", "b"]')],
)
def test_remove_any_item_keeps_the_rest(index: int, expected: str) -> None:
    text = '{"web": {"javascript_origins": ["a", "b", "c"]}}'
    listed = origins_node(text)
    edited = jsontext.remove_item(text, listed, index)
    assert edited == '{"web": {"javascript_origins": ' + expected + "}}"


def test_add_member_after_the_last_one_with_its_indentation() -> None:
    text = '{\n  "web": {\n    "client_id": "web",\n    "scopes": ["api"]\n  }\n}\n'
    app = jsontext.parse(text).member("web")
    assert app is not None
    edited = jsontext.add_member(text, app, "javascript_origins", ["https://a.example"])
    assert edited == (
        '{\n  "web": {\n    "client_id": "web",\n    "scopes": ["api"],\n'
        '    "javascript_origins": ["https://a.example"]\n  }\n}\n'
    )


@pytest.mark.parametrize("text", ['{"web": ', '{"web": [1 2]}', "{'web': 1}", '{"a": 1} x'])
def test_broken_text_is_an_error(text: str) -> None:
    with pytest.raises(jsontext.JsonTextError):
        jsontext.parse(text)
