"""A real SMTP server for the mail tests (aiosmtpd on 127.0.0.1, a free port, in a thread of its
own), a server that accepts connections and never answers, and the helpers that queue mail and
wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway import keys
from gateway.mail.message import OutgoingMail
from gateway.mail.outbox import queue_mail
from tests.support import Client, free_port, write_conf

LINK = "https://id.example.test/invite/Zq9-single-use-secret-4711"
SENDER = "Gateway Tests <gateway@example.test>"


class Inbox:
    """The test server's handler: what it accepted, and the answers it is told to give
    (``refuse_rcpt``: every recipient; ``data_answers``: the next DATA answers, in order)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse_rcpt: str | None = None
        self.data_answers: list[str] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self._lock:
            answer = self.data_answers.pop(0) if self.data_answers else "250 Message accepted"
            if answer.startswith("250"):
                content = envelope.original_content or envelope.content
                assert isinstance(content, bytes)
                message = message_from_bytes(content, policy=policy.default)
                assert isinstance(message, EmailMessage)
                self.messages.append(message)
                self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return answer

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]


@contextlib.asynccontextmanager
async def smtp_server(inbox: Inbox, port: int | None = None) -> AsyncIterator[int]:
    """aiosmtpd serving ``inbox`` on 127.0.0.1 (``port``, or a free one) for the block."""
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port or free_port(), server_hostname="smtp.test"
    )
    await asyncio.to_thread(controller.start)
    try:
        yield controller.port
    finally:
        await asyncio.to_thread(controller.stop)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A server that accepts TCP connections and never says a word (a hung SMTP host)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


def mail_conf(directory: Path, **mail: Any) -> Path:
    """A configuration whose sender looks often (tests move the clock instead of waiting)."""
    settings: dict[str, Any] = {"sender": SENDER, "timeout": 5, "poll_interval": 0.1}
    settings.update(mail)
    return write_conf(directory, gateway={"mail": settings})


def smtp_url(port: int) -> str:
    return f"smtp+plain://127.0.0.1:{port}"


def invitation(to: str = "Alice Liddell <alice@example.test>", n: int = 0) -> OutgoingMail:
    return OutgoingMail(
        kind="invitation",
        to=to,
        subject=f"Your invitation #{n}",
        text=f"Hello,\n\nopen {LINK}?n={n} to join.\n",
        html=f'<p>Hello,</p><p><a href="{LINK}?n={n}">Join</a></p>',
    )


async def queue(client: Client, message: OutgoingMail | None = None) -> UUID:
    """Queue as a request handler would: the request pool and the master key of the app."""
    authority = client.app[keys.AUTHORITY]
    return await queue_mail(authority.pool, authority.master, message or invitation())


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    what: str,
    timeout: float = 10.0,
) -> None:
    """Wait until ``check()`` holds, polling every 50 ms; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
