"""Hot reload: the configuration files, theme templates and message files included, are polled
once a second and reloaded when one changes, appears or disappears (SIGHUP does the same at
once). An invalid edit is rejected with a logged reason and the old configuration keeps serving
(``ConfigHolder.reload``).

Polling ``stat`` of a handful of files costs microseconds and needs no platform support, unlike
inotify, and works the same on every file system the configuration may live on.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gateway.config.holder import ConfigHolder
from gateway.config.loader import Config
from gateway.themes import theme_files

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0

Signature = tuple[tuple[str, int, int], ...]


def watched_paths(config: Config) -> list[Path]:
    base = config.base_dir
    paths = set(config.files)
    for directory in (base / config.gateway.oauth2_dir, base / config.gateway.sites_dir):
        if directory.is_dir():
            paths.update(directory.glob("*.json"))
    # Templates and message files of every theme: an edit reloads (and so re-validates) the
    # configuration, and the pages and emails follow.
    for theme in (config.gateway_theme_dir, *config.site_theme_dirs.values()):
        if theme is not None and theme.is_dir():
            paths.update(theme_files(theme))
    return sorted(paths)


def signature(config: Config) -> Signature:
    entries = []
    for path in watched_paths(config):
        try:
            stat = path.stat()
        except OSError:
            entries.append((str(path), -1, -1))
            continue
        entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


async def watch(holder: ConfigHolder, interval: float = POLL_SECONDS) -> None:
    """Reload whenever the files change; runs until cancelled."""
    seen = signature(holder.current)
    while True:
        await asyncio.sleep(interval)
        current = signature(holder.current)
        if current != seen:
            log.info("configuration files changed; reloading")
            accepted = holder.reload()
            # A rejected edit is reported once, not every second, until the files change again.
            seen = signature(holder.current) if accepted else current
