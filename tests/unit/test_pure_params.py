"""Request parameter parsing in ``gateway.oauth.params`` (RFC 6749 sections 3.1 and 3.2): no I/O.

Covered: ``Params`` (repeated parameters refused, empty values treated as absent but remembered
by ``was_sent``, unknown parameters kept, ``require``, the parameter-count and value-size limits,
control characters and lone surrogates, ``lenient`` and ``long_values`` exemptions, no raw input
echoed in descriptions); ``parse_form`` (strict UTF-8 percent-decoding, ``+`` as space, ``&`` as
the only separator); ``parse_json`` (one object of strings: no arrays, numbers, null, nested
objects, duplicate members or non-finite numbers; malformed, truncated, deeply nested and BOM
bodies); ``parse_body`` (form or JSON by ``Content-Type``, charset, ``text/plain`` refused).

SECURITY-CHECKLIST items 5 and 21 (repeated parameters refused, unknown and empty ignored),
19 (descriptions do not echo raw input), 24 (JSON bodies: strict, no coercion, duplicates
refused), 125 (d) (oversize values), 126 (malformed JSON), 127 (Content-Type handling),
128 (invalid encodings and control characters) and Appendix C-5.
"""

from __future__ import annotations

import json

import pytest

from gateway.oauth.errors import InvalidRequestError
from gateway.oauth.params import (
    MAX_PARAMS,
    MAX_VALUE,
    Params,
    parse_body,
    parse_form,
    parse_json,
    parse_query,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
NOT_FORM = "the body is not valid UTF-8 form data"
NOT_JSON = "the body is not valid JSON"
NOT_OBJECT = "the JSON body must be an object"
NON_FINITE = "the JSON body contains a non-finite number"
WRONG_TYPE = "Content-Type must be application/x-www-form-urlencoded or application/json"
NOT_UTF8 = "the body must be UTF-8"
TOO_MANY = "too many parameters"


def repeated(name: str) -> str:
    return f"parameter {name} is repeated"


def invalid(name: str) -> str:
    return f"parameter {name} has an invalid value"


def not_string(name: str) -> str:
    return f"parameter {name} must be a string"


def refusal(exc: pytest.ExceptionInfo[InvalidRequestError]) -> tuple[str, int, str]:
    return exc.value.error, exc.value.status, exc.value.description


# --- Params: the rules shared by every source -------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param([("a", "1"), ("b", "2")], {"a": "1", "b": "2"}, id="plain"),
        pytest.param([("a", "")], {}, id="empty-value-is-absent"),
        pytest.param([("prompt", ""), ("ui_locales", "")], {}, id="5c-empty-values"),
        pytest.param([("foo", "bar")], {"foo": "bar"}, id="unknown-kept"),
        pytest.param([("a", " ")], {"a": " "}, id="space-is-a-value"),
        pytest.param([("a", "é€😀")], {"a": "é€😀"}, id="non-ascii-utf8"),
        pytest.param(
            [("Scope", "x"), ("scope", "y")], {"Scope": "x", "scope": "y"}, id="names-case"
        ),
        pytest.param([("", "x")], {"": "x"}, id="unnamed"),
        pytest.param([("a", "x" * MAX_VALUE)], {"a": "x" * MAX_VALUE}, id="value-at-limit"),
        pytest.param([], {}, id="nothing"),
    ],
)
def test_params_accepts(pairs: list[tuple[str, str]], expected: dict[str, str]) -> None:
    params = Params(pairs)
    assert dict(params) == expected
    assert len(params) == len(expected)


@pytest.mark.parametrize(
    ("pairs", "description"),
    [
        # RFC 6749 3.1 / 3.2: "MUST NOT be included more than once"
        pytest.param([("a", "1"), ("a", "2")], repeated("a"), id="repeated-different"),
        pytest.param([("a", "1"), ("a", "1")], repeated("a"), id="repeated-identical"),
        pytest.param([("a", ""), ("a", "1")], repeated("a"), id="repeated-first-empty"),
        pytest.param([("a", "1"), ("a", "")], repeated("a"), id="repeated-second-empty"),
        pytest.param([("a", ""), ("a", "")], repeated("a"), id="repeated-both-empty"),
        pytest.param(
            [("response_type", "code"), ("response_type", "code")],
            repeated("response_type"),
            id="5a-response-type",
        ),
        pytest.param(
            [("client_id", "conf"), ("client_id", "conf2")], repeated("client_id"), id="5b"
        ),
        pytest.param([("scope", "a"), ("scope", "b")], repeated("scope"), id="21a-scope"),
        # the name in the description is cleaned (item 19: no raw input)
        pytest.param([('<b>"x', "1"), ('<b>"x', "2")], repeated("bx"), id="name-cleaned"),
        pytest.param([("\r\n", "1"), ("\r\n", "2")], repeated("(unnamed)"), id="name-crlf"),
        pytest.param([("n" * 60, "1"), ("n" * 60, "2")], repeated("n" * 40), id="name-cut"),
        # size
        pytest.param([("a", "x" * (MAX_VALUE + 1))], invalid("a"), id="value-over-limit"),
        # control characters (item 128)
        pytest.param([("a", "x\x00y")], invalid("a"), id="nul"),
        pytest.param([("a", "x\ty")], invalid("a"), id="tab"),
        pytest.param([("a", "x\ny")], invalid("a"), id="lf"),
        pytest.param([("a", "x\ry")], invalid("a"), id="cr"),
        pytest.param([("a", "\x1f")], invalid("a"), id="unit-separator"),
        pytest.param([("a", "\x7f")], invalid("a"), id="del"),
        # not UTF-8 (lone surrogates: JSON can carry them, UTF-8 cannot)
        pytest.param([("a", "\ud800")], invalid("a"), id="surrogate-value"),
        pytest.param([("\udfff", "x")], invalid("(unnamed)"), id="surrogate-name"),
    ],
)
def test_params_refuses(pairs: list[tuple[str, str]], description: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Params(pairs)
    assert refusal(info) == ("invalid_request", 400, description)


@pytest.mark.parametrize(
    ("count", "accepted"),
    [
        pytest.param(MAX_PARAMS - 1, True, id="99"),
        pytest.param(MAX_PARAMS, True, id="100"),
        pytest.param(MAX_PARAMS + 1, False, id="101"),
        pytest.param(50_000, False, id="126-50000"),
    ],
)
def test_params_count_limit(count: int, accepted: bool) -> None:
    pairs = [(f"p{i}", "v") for i in range(count)]
    if accepted:
        assert len(Params(pairs)) == count
    else:
        with pytest.raises(InvalidRequestError) as info:
            Params(pairs)
        assert refusal(info) == ("invalid_request", 400, TOO_MANY)


@pytest.mark.parametrize(
    ("pairs", "long_values", "lenient", "expected"),
    [
        pytest.param(
            [("token", "t" * (MAX_VALUE + 1))],
            frozenset({"token"}),
            frozenset(),
            {"token": "t" * (MAX_VALUE + 1)},
            id="long-value-allowed-by-name",
        ),
        pytest.param(
            [("state", "a\r\nSet-Cookie: x=1")],
            frozenset(),
            frozenset({"state"}),
            {"state": "a\r\nSet-Cookie: x=1"},
            id="lenient-keeps-control-characters",
        ),
    ],
)
def test_params_exemptions(
    pairs: list[tuple[str, str]],
    long_values: frozenset[str],
    lenient: frozenset[str],
    expected: dict[str, str],
) -> None:
    assert dict(Params(pairs, long_values=long_values, lenient=lenient)) == expected


@pytest.mark.parametrize(
    ("pairs", "long_values", "lenient", "description"),
    [
        pytest.param(
            [("other", "t" * (MAX_VALUE + 1))],
            frozenset({"token"}),
            frozenset(),
            invalid("other"),
            id="long-values-is-per-name",
        ),
        pytest.param(
            [("code", "\x00")],
            frozenset(),
            frozenset({"state"}),
            invalid("code"),
            id="lenient-is-per-name",
        ),
        pytest.param(
            [("state", "s" * (MAX_VALUE + 1))],
            frozenset(),
            frozenset({"state"}),
            invalid("state"),
            id="lenient-is-not-long",
        ),
        pytest.param(
            [("state", "\ud800")],
            frozenset(),
            frozenset({"state"}),
            invalid("state"),
            id="lenient-still-utf8",
        ),
    ],
)
def test_params_exemptions_are_narrow(
    pairs: list[tuple[str, str]],
    long_values: frozenset[str],
    lenient: frozenset[str],
    description: str,
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Params(pairs, long_values=long_values, lenient=lenient)
    assert refusal(info) == ("invalid_request", 400, description)


@pytest.mark.parametrize(
    ("name", "sent", "present"),
    [
        pytest.param("a", True, True, id="with-value"),
        pytest.param("e", True, False, id="empty-value"),
        pytest.param("z", False, False, id="never-sent"),
    ],
)
def test_was_sent_remembers_empty_values(name: str, sent: bool, present: bool) -> None:
    params = Params([("a", "1"), ("e", "")])
    assert params.was_sent(name) is sent
    assert (name in params) is present


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("a", "1", id="present"),
        pytest.param("e", None, id="empty-counts-as-missing"),
        pytest.param("z", None, id="missing"),
    ],
)
def test_require(name: str, expected: str | None) -> None:
    params = Params([("a", "1"), ("e", "")])
    if expected is not None:
        assert params.require(name) == expected
    else:
        with pytest.raises(InvalidRequestError) as info:
            params.require(name)
        assert refusal(info) == ("invalid_request", 400, f"parameter {name} is required")


def test_parse_query_applies_the_same_rules() -> None:
    assert dict(parse_query([("a", "1"), ("b", "")])) == {"a": "1"}
    with pytest.raises(InvalidRequestError) as info:
        parse_query([("a", "1"), ("a", "1")])
    assert refusal(info) == ("invalid_request", 400, repeated("a"))
    assert dict(parse_query([("state", "\n")], lenient=frozenset({"state"}))) == {"state": "\n"}


# --- parse_form --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            b"grant_type=client_credentials&scope=orders.read",
            {"grant_type": "client_credentials", "scope": "orders.read"},
            id="plain",
        ),
        pytest.param(b"scope=a+b", {"scope": "a b"}, id="plus-is-space"),
        pytest.param(b"scope=a%20b", {"scope": "a b"}, id="percent-20"),
        pytest.param(b"v=%2B%2F%3D", {"v": "+/="}, id="encoded-reserved"),
        pytest.param(b"n=%C3%A9", {"n": "é"}, id="utf8-percent"),
        pytest.param("n=é".encode(), {"n": "é"}, id="utf8-raw"),
        pytest.param(
            b"grant_type=client_credentials&foo=bar&scope=",
            {"grant_type": "client_credentials", "foo": "bar"},
            id="21b-unknown-kept-empty-dropped",
        ),
        pytest.param(b"a=1;b=2", {"a": "1;b=2"}, id="semicolon-is-not-a-separator"),
        pytest.param(b"a&b=", {}, id="names-without-values"),
        pytest.param(b"a=1&&b=2", {"a": "1", "b": "2"}, id="empty-pair"),
        pytest.param(b"password=%", {"password": "%"}, id="128-dangling-percent-literal"),
        pytest.param(b"p=%zz", {"p": "%zz"}, id="invalid-escape-literal"),
        pytest.param(b"", {}, id="empty-body"),
    ],
)
def test_parse_form_accepts(body: bytes, expected: dict[str, str]) -> None:
    assert dict(parse_form(body)) == expected


@pytest.mark.parametrize(
    ("body", "description"),
    [
        pytest.param(b"scope=a&scope=b", repeated("scope"), id="21a-repeated"),
        pytest.param(b"scope=&scope=b", repeated("scope"), id="repeated-first-empty"),
        pytest.param(b"a=1&a=1", repeated("a"), id="repeated-identical"),
        pytest.param(b"a=%FF", NOT_FORM, id="percent-ff"),
        pytest.param(b"a=\xff", NOT_FORM, id="raw-ff"),
        pytest.param(b"\xff=1", NOT_FORM, id="raw-ff-in-name"),
        pytest.param(b"grant_type=client%5F%FFcredentials", NOT_FORM, id="128-ff-in-value"),
        pytest.param(b"username=%C0%AFalice&password=x", NOT_FORM, id="128-overlong-utf8"),
        pytest.param(b"a=%ED%A0%80", NOT_FORM, id="encoded-surrogate"),
        pytest.param(b"username=ali%00ce&password=x", invalid("username"), id="128-nul"),
        pytest.param(b"a=%0D%0Ab", invalid("a"), id="crlf"),
        pytest.param(b"a=%09", invalid("a"), id="tab"),
        pytest.param(b"a=%7F", invalid("a"), id="del"),
        pytest.param(b"a=" + b"x" * (MAX_VALUE + 1), invalid("a"), id="oversize-value"),
    ],
)
def test_parse_form_refuses(body: bytes, description: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_form(body)
    assert refusal(info) == ("invalid_request", 400, description)


def test_parse_form_long_values_and_lenient() -> None:
    body = b"token=" + b"t" * (MAX_VALUE + 1) + b"&code=a%0Ab"
    params = parse_form(body, long_values=frozenset({"token"}), lenient=frozenset({"code"}))
    assert dict(params) == {"token": "t" * (MAX_VALUE + 1), "code": "a\nb"}


# --- parse_json --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            b'{"grant_type":"client_credentials","client_id":"cc","client_secret":"ccs3cr3t"}',
            {"grant_type": "client_credentials", "client_id": "cc", "client_secret": "ccs3cr3t"},
            id="24a-strings",
        ),
        pytest.param(b'{"scope":""}', {}, id="empty-string-is-absent"),
        pytest.param(b"{}", {}, id="empty-object"),
        pytest.param(b' \n{"a" : "1"}\n ', {"a": "1"}, id="whitespace"),
        pytest.param(b'{"a":"\\u00e9"}', {"a": "é"}, id="unicode-escape"),
        pytest.param('{"a":"é"}'.encode(), {"a": "é"}, id="raw-utf8"),
        pytest.param(b'{"a":"\\ud83d\\ude00"}', {"a": "😀"}, id="surrogate-pair"),
    ],
)
def test_parse_json_accepts(body: bytes, expected: dict[str, str]) -> None:
    assert dict(parse_json(body)) == expected


@pytest.mark.parametrize(
    ("body", "description"),
    [
        # item 24
        pytest.param(b'{"grant_type":["client_credentials"]}', not_string("grant_type"), id="24b"),
        pytest.param(
            b'{"grant_type":"client_credentials","grant_type":"password"}',
            repeated("grant_type"),
            id="24c-duplicate",
        ),
        pytest.param(b'{"client_secret":{"$ne":null}}', not_string("client_secret"), id="24d"),
        pytest.param(b'[{"grant_type":"client_credentials"}]', NOT_OBJECT, id="24e-array"),
        pytest.param(b'{"a":{"b":"1","b":"2"}}', repeated("b"), id="nested-duplicate"),
        pytest.param(b'{"a":1}', not_string("a"), id="number"),
        pytest.param(b'{"a":1.5}', not_string("a"), id="float"),
        pytest.param(b'{"a":true}', not_string("a"), id="boolean"),
        pytest.param(b'{"a":null}', not_string("a"), id="null"),
        pytest.param(b'"a=b"', NOT_OBJECT, id="string"),
        pytest.param(b"null", NOT_OBJECT, id="top-null"),
        pytest.param(b"1", NOT_OBJECT, id="top-number"),
        # item 126
        pytest.param(b'{"grant_type":"client_credentials",', NOT_JSON, id="126-truncated"),
        pytest.param(b'{"grant_type":"client_credentials"}garbage', NOT_JSON, id="126-trailing"),
        pytest.param(b'{"grant_type":"client_\xff"}', NOT_JSON, id="126-invalid-utf8"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, NOT_JSON, id="126-nested-arrays"),
        pytest.param(b'{"a":' * 10_000 + b'"x"' + b"}" * 10_000, NOT_JSON, id="nested-objects"),
        pytest.param(b'{"n":1e999999}', not_string("n"), id="126-huge-number"),
        pytest.param(b'{"n":NaN}', NON_FINITE, id="nan"),
        pytest.param(b'{"n":Infinity}', NON_FINITE, id="infinity"),
        pytest.param(b'{"n":-Infinity}', NON_FINITE, id="minus-infinity"),
        pytest.param(b"", NOT_JSON, id="empty-body"),
        pytest.param(b"\xef\xbb\xbf{}", NOT_JSON, id="bom"),
        pytest.param(b"{'a':'1'}", NOT_JSON, id="single-quotes"),
        pytest.param(b'{"a":"1",}', NOT_JSON, id="trailing-comma"),
        pytest.param('{"a":"1"}'.encode("utf-16"), NOT_JSON, id="utf-16"),
        # strings that JSON allows and these rules do not
        pytest.param(b'{"a":"\\ud800"}', invalid("a"), id="lone-surrogate-value"),
        pytest.param(b'{"\\ud800":"x"}', invalid("(unnamed)"), id="lone-surrogate-name"),
        pytest.param(b'{"a":"\\u0000"}', invalid("a"), id="escaped-nul"),
        pytest.param(b'{"a":"x\\ny"}', invalid("a"), id="escaped-newline"),
        pytest.param(
            json.dumps({f"k{i}": "v" for i in range(50_000)}).encode(), TOO_MANY, id="126-50000"
        ),
    ],
)
def test_parse_json_refuses(body: bytes, description: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_json(body)
    assert refusal(info) == ("invalid_request", 400, description)


# --- parse_body: by Content-Type ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(FORM, b"grant_type=client_credentials", id="form"),
        pytest.param(JSON, b'{"grant_type":"client_credentials"}', id="json"),
        pytest.param(f"{FORM}; charset=UTF-8", b"grant_type=client_credentials", id="form-utf8"),
        pytest.param(f'{FORM};charset="utf-8"', b"grant_type=client_credentials", id="quoted"),
        pytest.param(f"{JSON}; charset=utf8", b'{"grant_type":"client_credentials"}', id="utf8"),
        pytest.param("Application/JSON", b'{"grant_type":"client_credentials"}', id="json-case"),
        pytest.param(f" {FORM} ", b"grant_type=client_credentials", id="spaces"),
        pytest.param(f"{FORM}; foo=bar", b"grant_type=client_credentials", id="other-param"),
    ],
)
def test_parse_body_by_content_type(content_type: str, body: bytes) -> None:
    assert dict(parse_body(content_type, body)) == {"grant_type": "client_credentials"}


@pytest.mark.parametrize(
    ("content_type", "body", "description"),
    [
        # item 127: text/plain is CORS-safelisted, so it must never be parsed
        pytest.param("text/plain", b"grant_type=client_credentials", WRONG_TYPE, id="127-text"),
        pytest.param("text/plain", b'{"grant_type":"x"}', WRONG_TYPE, id="text-with-json-body"),
        pytest.param(
            "multipart/form-data; boundary=x",
            b"grant_type=client_credentials",
            WRONG_TYPE,
            id="127-multipart",
        ),
        pytest.param("", b"grant_type=client_credentials", WRONG_TYPE, id="127-none"),
        pytest.param(
            f"{FORM}; charset=ISO-8859-1", b"client_secret=\xe9", NOT_UTF8, id="127-latin1"
        ),
        pytest.param(f"{JSON}; charset=utf-16", b"{}", NOT_UTF8, id="json-utf16"),
        pytest.param("application/jsonp", b"{}", WRONG_TYPE, id="jsonp"),
        pytest.param("application/json-patch+json", b"{}", WRONG_TYPE, id="json-patch"),
        pytest.param(f"{JSON}, text/plain", b"{}", WRONG_TYPE, id="comma-list"),
        pytest.param("application/x-www-form-urlencodedx", b"a=1", WRONG_TYPE, id="suffix"),
        pytest.param(FORM, b"a=1&a=2", repeated("a"), id="form-rules-apply"),
        pytest.param(JSON, b"[]", NOT_OBJECT, id="json-rules-apply"),
    ],
)
def test_parse_body_refuses(content_type: str, body: bytes, description: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_body(content_type, body)
    assert refusal(info) == ("invalid_request", 400, description)


def test_parse_body_passes_exemptions_through() -> None:
    body = b'{"token":"' + b"t" * (MAX_VALUE + 1) + b'","code":"a\\nb"}'
    params = parse_body(JSON, body, long_values=frozenset({"token"}), lenient=frozenset({"code"}))
    assert dict(params) == {"token": "t" * (MAX_VALUE + 1), "code": "a\nb"}
