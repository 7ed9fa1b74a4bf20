"""Request parameters (RFC 6749 sections 3.1 and 3.2): form or JSON bodies and query strings.

Rules: a parameter sent twice is an error; an empty value counts as absent; unknown parameters are
kept (callers ignore them); values are UTF-8 text without control characters. A JSON body (our
extension, as the reference accepts) is one object whose values are strings: no arrays, numbers
or nested objects are coerced, and duplicate member names are rejected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import parse_qsl

from gateway.oauth.errors import InvalidRequestError

MAX_PARAMS = 100
MAX_VALUE = 8192
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class Params(Mapping[str, str]):
    """Request parameters with duplicates already rejected and empty values dropped."""

    def __init__(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        long_values: frozenset[str] = frozenset(),
        lenient: frozenset[str] = frozenset(),
    ) -> None:
        values: dict[str, str] = {}
        seen: set[str] = set()
        for count, (name, value) in enumerate(pairs, start=1):
            if count > MAX_PARAMS:
                raise InvalidRequestError("too many parameters")
            if name in seen:
                raise InvalidRequestError(f"parameter {_safe(name)} is repeated")
            seen.add(name)
            too_long = len(value) > MAX_VALUE and name not in long_values
            control = name not in lenient and _CONTROL.search(value) is not None
            if too_long or control or not _is_utf8(value) or not _is_utf8(name):
                raise InvalidRequestError(f"parameter {_safe(name)} has an invalid value")
            if value != "":
                values[name] = value
        self._values = values
        self._seen = frozenset(seen)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def was_sent(self, name: str) -> bool:
        """True when the parameter appeared, even with an empty value."""
        return name in self._seen

    def require(self, name: str) -> str:
        value = self._values.get(name)
        if value is None:
            raise InvalidRequestError(f"parameter {name} is required")
        return value


def _is_utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON allows "\\ud800"; UTF-8 does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch.isalnum() or ch in "_-.")[:40]
    return cleaned or "(unnamed)"


def parse_form(
    body: bytes,
    *,
    long_values: frozenset[str] = frozenset(),
    lenient: frozenset[str] = frozenset(),
) -> Params:
    """An ``application/x-www-form-urlencoded`` body, strictly UTF-8."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequestError("the body is not valid UTF-8 form data") from exc
    return Params(pairs, long_values=long_values, lenient=lenient)


def parse_query(
    pairs: Iterable[tuple[str, str]], *, lenient: frozenset[str] = frozenset()
) -> Params:
    """Query parameters already split by the framework. Values of ``lenient`` names are kept
    as sent (the caller validates them, e.g. to echo a malformed ``state`` safely encoded)."""
    return Params(pairs, lenient=lenient)


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidRequestError(f"parameter {_safe(key)} is repeated")
        result[key] = value
    return result


def _reject_constant(name: str) -> object:
    raise InvalidRequestError("the JSON body contains a non-finite number")


def parse_json(
    body: bytes,
    *,
    long_values: frozenset[str] = frozenset(),
    lenient: frozenset[str] = frozenset(),
) -> Params:
    """A JSON object of string values."""
    try:
        value = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except InvalidRequestError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError("the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("the JSON body must be an object")
    pairs: list[tuple[str, str]] = []
    for name, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequestError(f"parameter {_safe(name)} must be a string")
        pairs.append((name, item))
    return Params(pairs, long_values=long_values, lenient=lenient)


def parse_body(
    content_type: str,
    body: bytes,
    *,
    long_values: frozenset[str] = frozenset(),
    lenient: frozenset[str] = frozenset(),
) -> Params:
    """Form or JSON by ``Content-Type``; anything else (``text/plain`` included) is refused."""
    mime, _, rest = content_type.partition(";")
    mime = mime.strip().lower()
    charset = ""
    for part in rest.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset not in ("", "utf-8", "utf8"):
        raise InvalidRequestError("the body must be UTF-8")
    if mime == "application/x-www-form-urlencoded":
        return parse_form(body, long_values=long_values, lenient=lenient)
    if mime == "application/json":
        return parse_json(body, long_values=long_values, lenient=lenient)
    raise InvalidRequestError(
        "Content-Type must be application/x-www-form-urlencoded or application/json"
    )
