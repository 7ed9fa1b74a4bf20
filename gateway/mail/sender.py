"""The sender: one task in every process that claims due messages from the outbox and delivers
them, through SMTP (``mail.url``) or as ``.eml`` files (``mail.dir``, when no server is set).

Each round claims a batch (``daemon.mail_claim``: a lease, ``FOR UPDATE SKIP LOCKED``, so
replicas never hold one message at once), delivers each message on its own connection within
``mail.timeout`` per step and four times that in all, and records the outcome:

- accepted: ``sent``, the sealed content dropped;
- a 5xx answer to the message itself (``MAIL FROM``, ``RCPT TO``, ``DATA``): ``failed`` at once,
  visible in ``gateway mail outbox``, requeued by ``gateway mail retry``;
- anything else (a 4xx, no connection, a timeout, TLS or login trouble, which concern every
  message rather than this one): queued again after a backoff (30 s doubling up to an hour)
  until ``mail.give_up_after`` has passed since it was queued.

The sender wakes at ``NOTIFY gateway_mail`` (a message queued by any process) and every
``mail.poll_interval`` (retries that came due). When the database is unavailable it backs off
and keeps the outcomes it could not record, until their lease would run out. Stopping lets the
sends under way finish (up to ``STOP_GRACE`` seconds), then gives back the messages still held.

Log lines name a message by its id and kind, with the SMTP reply code and text on failure;
never a recipient's content, subject or link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from uuid import UUID

import aiosmtplib

from gateway.config.holder import ConfigHolder
from gateway.config.model import Mail, MailServer
from gateway.errors import GatewayError
from gateway.mail.message import build_message
from gateway.mail.outbox import open_content
from gateway.outbox import RELEASE_TIMEOUT, OutboxSender, running
from gateway.store import mail as store
from gateway.store.mail import ClaimedMail
from gateway.store.pool import Executor
from gateway.tokens.seal import Sealer

log = logging.getLogger(__name__)
BATCH = 5  # messages claimed, and sent side by side, at a time
LEASE_MARGIN = 30  # seconds a lease outlasts the longest a send may take
STOP_GRACE = 10.0  # seconds a stopping sender lets the sends under way finish
MAX_REASON = 300


class DeliveryError(Exception):
    """A message was not delivered: ``permanent`` when retrying cannot help (the server
    refused this message with a 5xx), else it is retried later."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Transport(Protocol):
    """Where messages go: an SMTP server, or a directory."""

    async def deliver(
        self, message: EmailMessage, *, mail_id: UUID, sender: str, recipient: str
    ) -> None:
        """Deliver or raise ``DeliveryError``."""


class SmtpTransport:
    """One connection per message: STARTTLS required (``smtp://``), TLS from the start
    (``smtps://``) or none on loopback (``smtp+plain://``); certificates are verified."""

    def __init__(self, settings: Mail, server: MailServer) -> None:
        self._settings = settings
        self._server = server

    async def deliver(
        self, message: EmailMessage, *, mail_id: UUID, sender: str, recipient: str
    ) -> None:
        settings, server = self._settings, self._server
        client = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=server.security == "tls",
            start_tls=server.security == "starttls",  # True: required; False: never tried
            validate_certs=True,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            timeout=settings.timeout,  # connecting, and each command
            local_hostname=settings.from_address.domain,  # EHLO without a DNS lookup
        )
        try:
            await client.connect()
            await client.send_message(message, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            first = exc.recipients[0] if exc.recipients else None
            reason = _reply(first.code, first.message) if first else "recipient refused"
            raise DeliveryError(
                f"RCPT TO: {reason}", permanent=bool(codes) and min(codes) >= 500
            ) from None
        except (
            aiosmtplib.SMTPSenderRefused,
            aiosmtplib.SMTPRecipientRefused,
            aiosmtplib.SMTPDataError,
        ) as exc:
            # The server's answer to this message's transaction.
            step = {
                aiosmtplib.SMTPSenderRefused: "MAIL FROM",
                aiosmtplib.SMTPRecipientRefused: "RCPT TO",
            }.get(type(exc), "DATA")
            raise DeliveryError(
                f"{step}: {_reply(exc.code, exc.message)}", permanent=exc.code >= 500
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            # Greeting, EHLO, STARTTLS or AUTH refused: the server or its settings, not this
            # message; every message would meet it, so none is failed for it.
            raise DeliveryError(_reply(exc.code, exc.message), permanent=False) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise DeliveryError(
                f"no answer within {settings.timeout:g} s", permanent=False
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            # No connection, a connection lost, TLS refused or unverifiable, no STARTTLS.
            reason = _one_line(str(exc) or type(exc).__name__)
            raise DeliveryError(reason, permanent=False) from None
        else:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit()  # the message is accepted whatever QUIT gets
        finally:
            client.close()


class DirectoryTransport:
    """``<dir>/<id>.eml`` for each message, written atomically (a temporary file renamed into
    place): the newcomer's default, with no SMTP server. A retry writes the same file again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def deliver(
        self, message: EmailMessage, *, mail_id: UUID, sender: str, recipient: str
    ) -> None:
        data = message.as_bytes()
        try:
            await asyncio.to_thread(_write_atomically, self.directory / f"{mail_id}.eml", data)
        except OSError as exc:
            reason = f"cannot write to {self.directory}: {exc.strerror or type(exc).__name__}"
            raise DeliveryError(reason, permanent=False) from None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON]


def _reply(code: int, message: str) -> str:
    """An SMTP reply as the outbox and the log show it: ``451 4.3.0 try again later``."""
    return _one_line(f"{code} {message}")


def transport_for(settings: Mail, workdir: Path) -> Transport:
    server = settings.server
    if server is not None:
        return SmtpTransport(settings, server)
    directory = Path(settings.dir)
    return DirectoryTransport(directory if directory.is_absolute() else workdir / directory)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one try of a message ended."""

    sent: bool
    reason: str = ""
    permanent: bool = False


SENT = Outcome(sent=True)


class MailSender(OutboxSender[ClaimedMail, Mail]):
    """The mail outbox's sender in one process (``gateway.outbox.OutboxSender``). An outcome
    the database could not take is kept and recorded at the next round, while its lease lasts."""

    name = "mail sender"
    batch = BATCH

    def __init__(
        self,
        holder: ConfigHolder,
        db: Executor,
        master: Sealer,
        *,
        workdir: Path,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        super().__init__()
        self._holder = holder
        self._stop_grace = stop_grace
        self._db = db
        self._master = master
        self._workdir = workdir
        # Outcome known, not recorded (the database was unavailable), with the monotonic time
        # after which the lease is over and recording would change nothing.
        self._unrecorded: dict[UUID, tuple[ClaimedMail, Outcome, float]] = {}

    def settings(self) -> Mail:
        return self._holder.current.gateway.mail

    async def claim(self, settings: Mail) -> list[ClaimedMail]:
        lease = math.ceil(settings.send_deadline) + LEASE_MARGIN
        return await store.mail_claim(self._db, limit=BATCH, lease=lease)

    def grace(self, sending: bool) -> float:
        if sending:  # sends under way: they may finish
            return min(self._stop_grace, self.settings().send_deadline + 1)
        return min(self._stop_grace, RELEASE_TIMEOUT)  # perhaps a claim on its way back

    async def catch_up(self, settings: Mail) -> None:
        await self._record_pending(settings)

    async def release(self, claimed: ClaimedMail) -> None:
        if await store.mail_release(self._db, claimed.id, claimed.claim):
            log.info("mail %s (%s) given back unsent", claimed.id, claimed.kind)

    async def stopped(self) -> None:
        await self._record_pending(self.settings())

    async def send(self, claimed: ClaimedMail, settings: Mail) -> None:
        transport = transport_for(settings, self._workdir)
        outcome = await self._attempt(claimed, transport, settings)
        lease_over = time.monotonic() + LEASE_MARGIN
        self._unrecorded[claimed.id] = (claimed, outcome, lease_over)
        self.done(claimed)
        try:
            await self._record(claimed, outcome, settings)
        except GatewayError as exc:
            log.warning(
                "mail %s (%s): the outcome is not recorded yet (%s); trying again",
                claimed.id,
                claimed.kind,
                exc,
            )
        else:
            self._unrecorded.pop(claimed.id, None)

    async def _attempt(self, claimed: ClaimedMail, transport: Transport, settings: Mail) -> Outcome:
        message = open_content(self._master, claimed)
        if message is None:
            return Outcome(False, "the content cannot be opened with this master key", True)
        sender = settings.from_address
        try:
            mime = build_message(
                message, mail_id=claimed.id, sender=sender, date=claimed.created_at
            )
            async with asyncio.timeout(settings.send_deadline):
                await transport.deliver(
                    mime,
                    mail_id=claimed.id,
                    sender=sender.addr_spec,
                    recipient=message.recipient.addr_spec,
                )
        except DeliveryError as exc:
            return Outcome(False, exc.reason, exc.permanent)
        except TimeoutError:
            return Outcome(False, f"not delivered within {settings.send_deadline:g} s")
        except Exception as exc:
            # A bug, not the server: its message might quote the content, so only its class.
            log.error("mail %s (%s): %s while sending", claimed.id, claimed.kind, type(exc))
            return Outcome(False, f"internal error ({type(exc).__name__})")
        return SENT

    async def _record(self, claimed: ClaimedMail, outcome: Outcome, settings: Mail) -> None:
        ident, kind = claimed.id, claimed.kind
        if outcome.sent:
            if await store.mail_sent(self._db, ident, claimed.claim):
                log.info("mail %s (%s) sent (attempt %d)", ident, kind, claimed.attempts)
            else:
                log.warning(
                    "mail %s (%s) sent, but its lease had passed to another sender: it may "
                    "arrive twice",
                    ident,
                    kind,
                )
            return
        state = await store.mail_failed(
            self._db,
            ident,
            claimed.claim,
            outcome.reason,
            permanent=outcome.permanent,
            give_up=settings.give_up_after,
        )
        if state is None:
            log.warning("mail %s (%s): its lease had passed to another sender", ident, kind)
        elif state[0] == "failed":
            log.error(
                "mail %s (%s) failed after %d attempts: %s",
                ident,
                kind,
                claimed.attempts,
                outcome.reason,
            )
        else:
            next_at = state[1]
            log.warning(
                "mail %s (%s) not sent (attempt %d): %s; next attempt at %s",
                ident,
                kind,
                claimed.attempts,
                outcome.reason,
                next_at.isoformat(timespec="seconds") if next_at else "once due",
            )

    async def _record_pending(self, settings: Mail) -> None:
        """Outcomes the database could not take before; raises while it still cannot."""
        for ident, (claimed, outcome, lease_over) in list(self._unrecorded.items()):
            if time.monotonic() > lease_over:
                log.warning(
                    "mail %s (%s): its outcome was never recorded; another attempt will follow",
                    ident,
                    claimed.kind,
                )
            else:
                await self._record(claimed, outcome, settings)
            self._unrecorded.pop(ident, None)


@contextlib.asynccontextmanager
async def sending(sender: MailSender, dsn: str) -> AsyncIterator[MailSender]:
    """Run ``sender`` alone, woken by ``NOTIFY gateway_mail``, for the duration of the block."""
    async with running({store.CHANNEL: sender}, dsn):
        yield sender
