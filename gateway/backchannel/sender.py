"""The back-channel logout sender: one task in every ``gateway serve`` process that claims due
rows of ``auth.backchannel_logout`` and POSTs a logout token to each client's
``backchannel_logout_uri`` (OpenID Connect Back-Channel Logout 1.0 section 2.5).

The rows are queued by a trigger in the transaction that ends a session (any way it ends:
sql/functions/100_backchannel_logout.sql). Each round claims a batch (``daemon.backchannel_claim``:
a lease, ``FOR UPDATE SKIP LOCKED``, so replicas never hold one row at once), and for each row:

- reads the client's ``backchannel_logout_uri`` from the configuration now in force; a client
  without one (removed from the file, or its URI taken away) is ``skipped``;
- signs a fresh logout token (``typ: logout+jwt``, two minutes, a new ``jti``) with the gateway's
  signing key, or with the client's secret for a client whose ID tokens are HS256;
- POSTs ``logout_token=...`` (form-encoded, ``Cache-Control: no-store``, redirects not followed,
  within ``backchannel_logout.timeout``): 200 or 204 is ``sent``; anything else, or no answer,
  is queued again after a backoff (10 s doubling up to an hour) until
  ``backchannel_logout.max_age`` has passed since the session ended, then ``failed`` with the
  last error.

The sender wakes at ``NOTIFY gateway_backchannel_logout`` and every
``backchannel_logout.poll_interval`` (retries that came due). Log lines name a row by its id and
client; never the logout token.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import hdrs

from gateway.clock import Clock
from gateway.config.holder import ConfigHolder
from gateway.config.loader import Client, Config
from gateway.config.model import BackchannelLogout
from gateway.errors import GatewayError
from gateway.oauth.oidc_backchannel import LOGOUT_TOKEN_TYP, is_delivered, logout_token_claims
from gateway.outbox import RELEASE_TIMEOUT, OutboxSender, running
from gateway.store import backchannel as store
from gateway.store.backchannel import ClaimedLogout
from gateway.store.pool import Executor
from gateway.tokens.jwt import mint_for
from gateway.tokens.keys import KeyRing

log = logging.getLogger(__name__)
BATCH = 10  # logouts claimed, and sent side by side, at a time
LEASE_MARGIN = 30  # seconds a lease outlasts the longest a POST may take
STOP_GRACE = 5.0  # seconds a stopping sender lets the POSTs under way finish
MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one try ended: ``sent``, ``retry`` (with the reason) or ``skip`` (no URI)."""

    kind: Literal["sent", "retry", "skip"]
    reason: str = ""


def logout_token(
    config: Config, client: Client, ring: KeyRing, claimed: ClaimedLogout, now: int
) -> str:
    """The logout token for ``claimed``, signed as the client's ID tokens are."""
    claims = logout_token_claims(
        issuer=config.gateway.public_issuer(),
        client_id=client.client_id,
        subject=str(claimed.user_id),
        session_id=str(claimed.session_id),
        now=now,
        jti=str(uuid.uuid4()),
    )
    return mint_for(claims, ring, LOGOUT_TOKEN_TYP, client.config.hs256_key)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON]


class LogoutSender(OutboxSender[ClaimedLogout, BackchannelLogout]):
    """The back-channel logout outbox's sender in one process (``gateway.outbox.OutboxSender``).
    ``keyring`` gives the signing keys in force (they rotate while the process runs)."""

    name = "back-channel logout sender"
    batch = BATCH

    def __init__(
        self,
        holder: ConfigHolder,
        db: Executor,
        keyring: Callable[[], KeyRing],
        clock: Clock,
        http: aiohttp.ClientSession,
    ) -> None:
        super().__init__()
        self._holder = holder
        self._db = db
        self._keyring = keyring
        self._clock = clock
        self._http = http

    def settings(self) -> BackchannelLogout:
        return self._holder.current.gateway.backchannel_logout

    async def claim(self, settings: BackchannelLogout) -> list[ClaimedLogout]:
        lease = math.ceil(settings.timeout) + LEASE_MARGIN
        return await store.backchannel_claim(self._db, limit=BATCH, lease=lease)

    def grace(self, sending: bool) -> float:
        return STOP_GRACE if sending else RELEASE_TIMEOUT

    async def release(self, claimed: ClaimedLogout) -> None:
        await store.backchannel_release(self._db, claimed.id, claimed.claim)

    async def send(self, claimed: ClaimedLogout, settings: BackchannelLogout) -> None:
        outcome = await self._attempt(claimed, settings)
        try:
            await self._record(claimed, outcome, settings)
        except GatewayError as exc:
            # The lease runs out and another try follows: a logout may then arrive twice,
            # which the spec allows (section 2.8: an RP logs out a session it no longer has).
            log.warning(
                "back-channel logout %s to %s: the outcome is not recorded (%s)",
                claimed.id,
                claimed.client_id,
                exc,
            )
        # Not in a finally: a send cancelled by ``stop`` stays held, and is given back.
        self.done(claimed)

    async def _attempt(self, claimed: ClaimedLogout, settings: BackchannelLogout) -> Outcome:
        config = self._holder.current
        client = config.client(claimed.client_id)
        uri = client.config.backchannel_logout_uri if client is not None else None
        if client is None or uri is None:
            return Outcome("skip", "the client has no backchannel_logout_uri now")
        try:
            token = logout_token(config, client, self._keyring(), claimed, self._clock.now())
            async with self._http.post(
                uri,
                data={"logout_token": token},
                headers={hdrs.CACHE_CONTROL: "no-store"},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
            ) as response:
                status = response.status
                reason = response.reason or ""
        except TimeoutError:
            return Outcome("retry", f"no answer within {settings.timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome("retry", _one_line(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:
            # A bug, not the client: its message might quote the token, so only its class.
            log.error(
                "back-channel logout %s to %s: %s while sending",
                claimed.id,
                claimed.client_id,
                type(exc),
            )
            return Outcome("retry", f"internal error ({type(exc).__name__})")
        if is_delivered(status):
            return Outcome("sent")
        return Outcome("retry", _one_line(f"the client answered HTTP {status} {reason}"))

    async def _record(
        self, claimed: ClaimedLogout, outcome: Outcome, settings: BackchannelLogout
    ) -> None:
        ident, client_id = claimed.id, claimed.client_id
        if outcome.kind == "sent":
            if await store.backchannel_sent(self._db, ident, claimed.claim):
                log.info(
                    "back-channel logout %s to %s delivered (attempt %d)",
                    ident,
                    client_id,
                    claimed.attempts,
                )
            return
        if outcome.kind == "skip":
            if await store.backchannel_skipped(self._db, ident, claimed.claim, outcome.reason):
                log.info(
                    "back-channel logout %s to %s skipped: %s", ident, client_id, outcome.reason
                )
            return
        state = await store.backchannel_failed(
            self._db, ident, claimed.claim, outcome.reason, max_age=settings.max_age
        )
        if state is None:
            log.warning("back-channel logout %s: its lease had passed to another sender", ident)
        elif state[0] == "failed":
            log.error(
                "back-channel logout %s to %s failed after %d attempts: %s",
                ident,
                client_id,
                claimed.attempts,
                outcome.reason,
            )
        else:
            next_at = state[1]
            log.warning(
                "back-channel logout %s to %s not delivered (attempt %d): %s; next attempt at %s",
                ident,
                client_id,
                claimed.attempts,
                outcome.reason,
                next_at.isoformat(timespec="seconds") if next_at else "once due",
            )


@contextlib.asynccontextmanager
async def sending(sender: LogoutSender, dsn: str) -> AsyncIterator[LogoutSender]:
    """Run ``sender`` alone, woken by ``NOTIFY gateway_backchannel_logout``, for the block."""
    async with running({store.CHANNEL: sender}, dsn):
        yield sender
