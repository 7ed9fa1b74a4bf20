"""The reloadable configuration: a holder whose ``current`` snapshot is swapped in one assignment.

Handlers read ``holder.current`` once per request and use that snapshot throughout, so a reload
never mixes two configurations inside one request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from gateway.config.loader import Config, load_config
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

Listener = Callable[[Config, Config], None]
T = TypeVar("T")


class PerConfig(Generic[T]):
    """A value derived from one configuration snapshot, rebuilt when the snapshot changes."""

    def __init__(self, build: Callable[[Config], T]) -> None:
        self._build = build
        self._cached: tuple[Config, T] | None = None

    def get(self, config: Config) -> T:
        cached = self._cached
        if cached is not None and cached[0] is config:
            return cached[1]
        value = self._build(config)
        self._cached = (config, value)
        return value


class ConfigHolder:
    """Holds the live ``Config``; ``reload()`` validates the files and swaps atomically."""

    def __init__(self, config: Config) -> None:
        self._current = config
        self._listeners: list[Listener] = []
        self._rejection_listeners: list[Callable[[], None]] = []
        self.generation = 0

    @property
    def current(self) -> Config:
        return self._current

    @property
    def path(self) -> Path:
        return self._current.path

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` after every successful swap."""
        self._listeners.append(listener)

    def subscribe_rejections(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every rejected reload."""
        self._rejection_listeners.append(listener)

    def replace(self, config: Config) -> None:
        old, self._current = self._current, config
        self.generation += 1
        for listener in self._listeners:
            listener(old, config)

    def reload(self) -> bool:
        """Re-read the files. On error keep the old snapshot, log why and return False."""
        try:
            config = load_config(self._current.path, overrides=self._current.overrides)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("configuration change rejected: %s", issue)
            for listener in self._rejection_listeners:
                listener()
            return False
        restart = _restart_needed(self._current, config)
        if restart:
            log.warning("configuration keys that need a restart changed: %s", ", ".join(restart))
        if "listen" in restart:
            # Until the restart the process listens where it did, and what derives from that
            # (an unset issuer, routes to the gateway itself) must not move elsewhere.
            running = self._current.gateway.listen
            pinned = {"listen": {"host": running.host, "port": running.port}}
            try:
                config = load_config(self._current.path, overrides={**config.overrides, **pinned})
            except ConfigError:  # pragma: no cover - the same files just loaded
                return False
        self.replace(config)
        log.info("configuration reloaded (generation %d)", self.generation)
        return True


def _restart_needed(old: Config, new: Config) -> list[str]:
    changed = []
    if old.gateway.listen != new.gateway.listen:
        changed.append("listen")
    if old.gateway.database != new.gateway.database:
        changed.append("database")
    if old.gateway.redis != new.gateway.redis:
        changed.append("redis")
    return changed
