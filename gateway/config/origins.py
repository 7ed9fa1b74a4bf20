"""The origin allowlist as ops see it: which origins are allowed, by whom, and safe edits.

Edits change one app's ``javascript_origins`` in its provider file, in its text: formatting,
line endings and ``"//"`` comments stay as they were, and an ``add`` then a ``remove`` of a list
that had entries leave the file byte for byte as before (an empty list comes back as ``[]``; a
list the add created stays, empty). The new file is written beside the old one and renamed over
it (atomic), then the whole configuration is loaded again and the old file restored if anything
is wrong, so a running gateway only ever sees a valid file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.config import jsontext
from gateway.config.loader import Config, load_config
from gateway.config.model import check_origin
from gateway.errors import ConfigError


class OriginError(Exception):
    """The edit cannot be made; the message says why."""


@dataclass(frozen=True)
class Grant:
    origin: str
    by: str
    source: str

    def __str__(self) -> str:
        return f"{self.by} ({self.source})"


def grants(config: Config) -> list[Grant]:
    """Every (origin, who allows it) pair of the configuration."""
    found = [
        Grant(origin, f"client {client.client_id}", client.source)
        for client in config.clients.values()
        for origin in client.config.javascript_origins
    ]
    found += [
        Grant(origin, f"route {route.prefix}", str(config.path))
        for route in config.gateway.routes
        for origin in route.origins
    ]
    return found


def explain(config: Config, origin: str) -> tuple[bool, str]:
    """Whether ``origin`` may call the gateway with cookies, and why, in one sentence."""
    try:
        check_origin(origin)
    except ValueError as exc:
        return False, f"{origin} is not allowed: {exc}"
    allowed_by = [g for g in grants(config) if g.origin == origin]
    if allowed_by:
        return True, f"{origin} is allowed by " + " and by ".join(str(g) for g in allowed_by)
    near = sorted({g.origin for g in grants(config) if _host(g.origin) == _host(origin)})
    hint = f" (listed with another scheme or port: {', '.join(near)})" if near else ""
    return False, (
        f"{origin} is not allowed: no client lists it in javascript_origins and no route "
        f"adds it{hint}"
    )


def _host(origin: str) -> str:
    return origin.split("://", 1)[-1].rsplit(":", 1)[0]


def edit(config: Config, client_id: str, origin: str, *, add: bool) -> str:
    """Add or remove ``origin`` for ``client_id``; the message describing what was done."""
    client = config.client(client_id)
    if client is None:
        raise OriginError(
            f"no client {client_id!r} in {config.base_dir / config.gateway.oauth2_dir}"
        )
    if add:
        try:
            check_origin(origin)
        except ValueError as exc:
            raise OriginError(f"{origin} cannot be allowed: {exc}") from None
    path = Path(client.source)
    with path.open(encoding="utf-8", newline="") as handle:  # CRLF files stay CRLF
        original = handle.read()
    try:
        app = jsontext.parse(original).member(client.app)
    except jsontext.JsonTextError as exc:
        raise OriginError(f"cannot edit {path}: {exc}") from None
    if app is None or app.kind != "object":
        raise OriginError(f"cannot edit {path}: no app {client.app!r} in it")
    listed = app.member("javascript_origins")
    if listed is not None and listed.kind != "array":
        raise OriginError(f"cannot edit {path}: {client.app}.javascript_origins is not a list")
    values = [item.value for item in listed.items] if listed is not None else []
    if add:
        if origin in values:
            return f"{origin} is already allowed for client {client_id} ({path})"
        edited = (
            jsontext.append_string(original, listed, origin)
            if listed is not None
            else jsontext.add_member(original, app, "javascript_origins", [origin])
        )
    else:
        if listed is None or origin not in values:
            raise OriginError(f"{origin} is not listed for client {client_id} ({path})")
        edited = original
        for index in reversed([i for i, value in enumerate(values) if value == origin]):
            # Every copy, last first: listed twice, an origin would otherwise still be allowed
            # after "removed". The text is parsed again after each cut.
            edited = jsontext.remove_item(edited, _origins_of(edited, client.app), index)
    _write_atomically(path, edited)
    try:
        load_config(config.path, overrides=config.overrides)
    except ConfigError as exc:
        _write_atomically(path, original)
        raise OriginError("the edit was undone: " + "; ".join(map(str, exc.issues))) from None
    verb = "added" if add else "removed"
    preposition = "to" if add else "from"
    return (
        f"{verb} {origin} {preposition} client {client_id} ({path}); "
        "running gateways apply it within seconds"
    )


def _origins_of(text: str, app: str) -> jsontext.Node:
    node = jsontext.parse(text).member(app)
    listed = node.member("javascript_origins") if node is not None else None
    assert listed is not None
    return listed


def _write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, path.stat().st_mode & 0o777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
