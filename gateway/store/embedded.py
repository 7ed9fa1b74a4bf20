"""The embedded PostgreSQL (``pgserver``) used when no database URL is configured.

Its data lives under ``var/pgdata`` of the working directory and is reused on the next start. Every
process that calls ``start_embedded`` holds a handle; the server stops when the last handle is
released (``stop()``, or at interpreter exit), so a ``gateway user add`` run beside a running
``gateway serve`` shares its server instead of starting a second one.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import StoreError

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    _server: Any
    _stopped: bool = False

    @property
    def dsn(self) -> str:
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Release this process's handle; the last handle stops the server."""
        if not self._stopped:
            self._stopped = True
            self._server.cleanup()


def start_embedded(pgdata: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded PostgreSQL whose data directory is ``pgdata``."""
    pgdata = pgdata.expanduser().resolve()
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {pgdata.parent}: {exc.strerror}") from exc
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        # A heavy import, needed only without a database URL.
        from pgserver.postgres_server import get_server

        try:
            server = get_server(pgdata, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise StoreError(
                f"the embedded PostgreSQL did not start; see {pgdata / 'log'}"
            ) from exc
        except OSError as exc:
            raise StoreError(f"the embedded PostgreSQL did not start: {exc}") from exc
    log.info("embedded PostgreSQL ready in %s", pgdata)
    return EmbeddedPostgres(pgdata, server)
