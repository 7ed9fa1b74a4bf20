"""Route matching and upstream URLs: no open proxying, no path escapes.

The request path is taken raw (as sent, percent-encoding intact) and refused when it could mean
something else to the upstream than to the gateway: empty, ``.`` or ``..`` segments (also as
``..;``), encoded slashes or backslashes, encoded dots, double encoding, or control characters.
What remains is appended to the route's upstream path; the upstream host never comes from the
request (browser-based apps draft, section 6.1.3.6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from yarl import URL

from gateway.config.model import Route, path_under_prefix

_UNSAFE = re.compile(r"%(2[eEfF]|5[cC]|0[0-9a-fA-F]|1[0-9a-fA-F]|7[fF])|[\\\x00-\x1f\x7f]")
# Double encoding in any spelling (%252e, %25%32%65, %2541): an encoded percent sign followed by
# what decodes, once more, to an escape; a server that decodes twice would see what this check
# never saw. A literal percent sign (100%25) passes. A "%" that starts no escape is malformed
# (%%32%65, %2%65).
_DOUBLE_OR_MALFORMED = re.compile(r"%25(?=[0-9A-Fa-f%])|%(?![0-9A-Fa-f]{2})")


class PathRefused(Exception):  # noqa: N818 - reads as "raise PathRefused"
    """The path is not one the gateway will forward."""


@dataclass(frozen=True)
class Target:
    origin: str
    path_qs: str

    @property
    def url(self) -> URL:
        return URL(self.origin + self.path_qs, encoded=True)


class RouteTable:
    """The configured routes, longest prefix first."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self._routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self._bases = {
            route.prefix: urlsplit(route.upstream)._replace(query="", fragment="")
            for route in routes
        }

    def match(self, path: str) -> Route | None:
        for route in self._routes:
            if path_under_prefix(path, route.prefix):
                return route
        return None

    def target(self, route: Route, raw_path: str, raw_query: str) -> Target:
        """The upstream URL for ``raw_path`` (already matched to ``route``)."""
        check_path(raw_path)
        remainder = raw_path[len(route.prefix) :] if raw_path.startswith(route.prefix) else ""
        base = self._bases[route.prefix]
        base_path = base.path.rstrip("/")
        if route.strip_prefix:
            path = f"{base_path}/{remainder}"
        else:
            path = f"{base_path}{route.prefix}{remainder}"
        if raw_query:
            path += "?" + raw_query
        return Target(f"{base.scheme}://{base.netloc}", path)


def check_path(raw_path: str) -> None:
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        raise PathRefused("the path must be absolute")
    if _UNSAFE.search(raw_path):
        raise PathRefused("the path contains encoded separators or control characters")
    if _DOUBLE_OR_MALFORMED.search(raw_path):
        raise PathRefused("the path contains double or malformed percent-encoding")
    for segment in raw_path.split("/")[1:-1]:
        if segment == "":
            raise PathRefused("the path contains an empty segment")
    for segment in raw_path.split("/"):
        name = segment.split(";", 1)[0]
        if name in (".", ".."):
            raise PathRefused("the path contains a dot segment")
