"""Email that is never lost (issue 12 part 6), against a real SMTP server (aiosmtpd on
127.0.0.1) and a real database: delivery with proper MIME, retries with backoff after a 4xx, a
silent server or no server at all, a 5xx refusal that an operator sees and retries, two senders
on one database, a restart, the .eml files of the newcomer's default, sealed content and clean
log lines. Time moves on the application's clock; nothing sleeps for a backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import pytest

from gateway import keys
from gateway.authority import build_master
from gateway.clock import Clock
from gateway.config import ConfigHolder, load_config
from gateway.logs import JsonFormatter
from gateway.mail.outbox import queue_mail
from gateway.mail.sender import MailSender, sending
from gateway.store.pool import BoundedPool
from tests.http.checklist import serving
from tests.http.mail_support import (
    LINK,
    SENDER,
    Inbox,
    eventually,
    invitation,
    mail_conf,
    queue,
    silent_server,
    smtp_server,
    smtp_url,
)
from tests.support import clock_of, dsn_with_database, free_port


@pytest.fixture(autouse=True)
async def empty_outbox(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM mail.outbox")


async def outbox_row(db: asyncpg.Connection, mail_id: UUID) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM mail.outbox WHERE id = $1", mail_id)
    assert row is not None
    return row


async def state_of(db: asyncpg.Connection, mail_id: UUID) -> tuple[str, int]:
    row = await outbox_row(db, mail_id)
    return str(row["state"]), int(row["attempts"])


async def test_a_message_goes_out_at_once_with_text_html_and_proper_headers(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    """The sender polls only once a minute here: the message is out within seconds because
    queueing wakes it (NOTIFY)."""
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        conf = mail_conf(tmp_path / "conf", url=smtp_url(port), poll_interval=60)
        async with serving(conf, database_url) as client:
            await asyncio.sleep(0.3)  # the sender has looked once and sleeps for a minute
            started = time.monotonic()
            mail_id = await queue(client)
            await eventually(lambda: len(inbox.messages) == 1, "the message", timeout=5)
            assert time.monotonic() - started < 3
            await eventually(lambda: _is(db, mail_id, "sent"), "the outbox to say sent", timeout=5)

    (message,) = inbox.messages
    assert inbox.envelopes == [("gateway@example.test", ["alice@example.test"])]
    assert message["From"] == SENDER
    assert message["To"] == "Alice Liddell <alice@example.test>"
    assert message["Subject"] == "Your invitation #0"
    assert message["Message-ID"] == f"<{mail_id}@example.test>"
    assert message["Date"] is not None
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), text.get_content_charset()) == ("text/plain", "utf-8")
    assert (html.get_content_type(), html.get_content_charset()) == ("text/html", "utf-8")
    assert f"{LINK}?n=0" in text.get_content()
    assert f'href="{LINK}?n=0"' in html.get_content()
    row = await outbox_row(db, mail_id)
    assert (row["state"], row["attempts"], row["content_sealed"]) == ("sent", 1, None)
    assert row["recipient"] == "Alice Liddell <alice@example.test>"  # the metadata stays


async def _is(db: asyncpg.Connection, mail_id: UUID, state: str) -> bool:
    return (await state_of(db, mail_id))[0] == state


async def test_a_4xx_answer_is_retried_after_the_backoff(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    inbox = Inbox()
    inbox.data_answers = ["451 4.3.0 Try again later"]
    async with smtp_server(inbox) as port:
        conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
        async with serving(conf, database_url) as client:
            mail_id = await queue(client)
            await eventually(lambda: _retrying(db, mail_id, 1), "the first try to fail")
            row = await outbox_row(db, mail_id)
            assert row["last_error"] == "DATA: 451 4.3.0 Try again later"
            await asyncio.sleep(0.5)  # five looks at the outbox: not due yet
            assert inbox.messages == []
            assert await state_of(db, mail_id) == ("queued", 1)

            clock_of(client).advance(31)
            await eventually(lambda: _is(db, mail_id, "sent"), "the second try")
    assert inbox.message_ids() == [f"<{mail_id}@example.test>"]
    assert await state_of(db, mail_id) == ("sent", 2)


async def _retrying(db: asyncpg.Connection, mail_id: UUID, attempts: int) -> bool:
    return await state_of(db, mail_id) == ("queued", attempts)


async def test_a_5xx_refusal_fails_the_message_for_an_operator_to_see_and_retry(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    from tests.support import gateway_env, run_gateway

    inbox = Inbox()
    inbox.refuse_rcpt = "550 5.1.1 No such user here"
    async with smtp_server(inbox) as port:
        conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
        env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf))
        async with serving(conf, database_url) as client:
            mail_id = await queue(client)
            await eventually(lambda: _is(db, mail_id, "failed"), "the message to fail")
            assert await state_of(db, mail_id) == ("failed", 1)

            listing = await asyncio.to_thread(run_gateway, "mail", "outbox", env=env)
            assert (listing.returncode, listing.stderr) == (0, "")
            header, line = listing.stdout.splitlines()
            assert header.split()[:5] == ["ID", "KIND", "RECIPIENT", "STATE", "ATTEMPTS"]
            assert str(mail_id) in line
            assert "failed" in line
            assert "RCPT TO: 550 5.1.1 No such user here" in line

            inbox.refuse_rcpt = None  # the operator fixed the address book
            again = await asyncio.to_thread(run_gateway, "mail", "retry", str(mail_id), env=env)
            assert (again.returncode, again.stderr) == (0, "")
            assert f"message {mail_id} queued again" in again.stdout
            await eventually(lambda: _is(db, mail_id, "sent"), "the retried message")
    assert inbox.message_ids() == [f"<{mail_id}@example.test>"]


async def test_a_server_that_never_answers_times_out_and_nothing_is_lost(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    inbox = Inbox()
    async with silent_server() as silent, smtp_server(inbox) as port:
        conf = mail_conf(tmp_path / "conf", url=smtp_url(silent), timeout=0.3)
        async with serving(conf, database_url) as client:
            started = time.monotonic()
            mail_id = await queue(client)
            await eventually(lambda: _retrying(db, mail_id, 1), "the timeout", timeout=5)
            assert time.monotonic() - started < 3  # 0.3 s to connect and greet, then given up
            assert (await outbox_row(db, mail_id))["last_error"] == "no answer within 0.3 s"

            # The operator points the gateway at a working server (a live reload).
            mail_conf(tmp_path / "conf", url=smtp_url(port), timeout=5)
            assert client.app[keys.CONFIG].reload()
            clock_of(client).advance(31)
            await eventually(lambda: _is(db, mail_id, "sent"), "delivery after the timeout")
    assert inbox.message_ids() == [f"<{mail_id}@example.test>"]


async def test_minutes_without_a_server_then_every_message_arrives_exactly_once(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    port = free_port()  # nothing listens there yet
    conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
    inbox = Inbox()
    async with serving(conf, database_url) as client:
        ids = [await queue(client, invitation(f"user{n}@example.test", n)) for n in range(6)]
        clock = clock_of(client)
        for attempt, wait in enumerate((30, 60, 120, 240), start=1):
            await eventually(
                lambda attempt=attempt: _all_retrying(db, ids, attempt),
                f"every message tried {attempt} times",
            )
            clock.advance(wait + 1)  # eight minutes of outage in all
        await eventually(lambda: _all_retrying(db, ids, 5), "the fifth tries")
        row = await outbox_row(db, ids[0])
        assert "connect" in row["last_error"].lower()

        async with smtp_server(inbox, port):
            clock.advance(481)
            await eventually(lambda: len(inbox.messages) == 6, "every message")
            await asyncio.sleep(0.5)  # five more looks: nothing arrives twice
    assert sorted(inbox.message_ids()) == sorted(f"<{i}@example.test>" for i in ids)
    states = await db.fetch("SELECT state, attempts FROM mail.outbox WHERE id = ANY($1)", ids)
    assert {(r["state"], r["attempts"]) for r in states} == {("sent", 6)}


async def _all_retrying(db: asyncpg.Connection, ids: list[UUID], attempts: int) -> bool:
    rows = await db.fetch("SELECT state, attempts FROM mail.outbox WHERE id = ANY($1)", ids)
    return len(rows) == len(ids) and all(
        (r["state"], r["attempts"]) == ("queued", attempts) for r in rows
    )


async def test_two_senders_on_one_database_deliver_each_message_once(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
        async with serving(conf, database_url) as one, serving(conf, database_url) as two:
            apps = (one, two)
            ids = [
                await queue(apps[n % 2], invitation(f"user{n}@example.test", n)) for n in range(30)
            ]
            await eventually(lambda: len(inbox.messages) >= 30, "thirty messages")
            await asyncio.sleep(0.5)
    assert sorted(inbox.message_ids()) == sorted(f"<{i}@example.test>" for i in ids)
    sent = await db.fetchval(
        "SELECT count(*) FROM mail.outbox WHERE state = 'sent' AND attempts = 1"
    )
    assert sent == 30


async def test_a_message_queued_before_a_restart_is_sent_after_it(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    port = free_port()
    conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
    async with serving(conf, database_url) as client:
        mail_id = await queue(client)
        await eventually(lambda: _retrying(db, mail_id, 1), "the first try (no server)")
    inbox = Inbox()
    async with smtp_server(inbox, port), serving(conf, database_url) as restarted:
        clock_of(restarted).advance(31)
        await eventually(lambda: _is(db, mail_id, "sent"), "delivery after the restart")
    assert inbox.message_ids() == [f"<{mail_id}@example.test>"]


async def test_stopping_gives_back_a_message_whose_send_outlasts_the_grace(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    """A sender stopped in the middle of a send that does not end within its grace releases
    the lease: the message is due again at once, not when the lease would have run out. (A
    sender on its own here, as ``_mail`` in gateway/app.py runs it, with a short grace.)"""
    async with silent_server() as silent:
        conf = mail_conf(tmp_path / "conf", url=smtp_url(silent), timeout=20)
        holder = ConfigHolder(load_config(conf, environ={}))
        _, master = build_master(holder.current)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            db_pool = BoundedPool(pool, 5.0, clock=Clock())
            sender = MailSender(holder, db_pool, master, workdir=tmp_path, stop_grace=1.0)
            async with sending(sender, database_url):
                mail_id = await queue_mail(db_pool, master, invitation())
                await eventually(lambda: _is(db, mail_id, "sending"), "a send under way")
                started = time.monotonic()
            assert time.monotonic() - started < 3  # not the 80 s the send could take
        finally:
            await pool.close()
    row = await outbox_row(db, mail_id)
    assert (row["state"], row["claim"], row["attempts"]) == ("queued", None, 1)
    assert row["next_attempt_at"] <= await db.fetchval("SELECT now()")


async def test_without_a_server_each_message_is_an_eml_file(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    """The newcomer's default: no url, so each message is written to mail.dir."""
    directory = tmp_path / "mail"
    conf = mail_conf(tmp_path / "conf", dir=str(directory))
    async with serving(conf, database_url) as client:
        mail_id = await queue(client)
        await eventually(lambda: _is(db, mail_id, "sent"), "the file to be written")
    (written,) = directory.iterdir()
    assert written.name == f"{mail_id}.eml"
    assert written.stat().st_mode & 0o777 == 0o600
    message = message_from_bytes(written.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "Alice Liddell <alice@example.test>"
    assert message["From"] == SENDER
    assert message["Message-ID"] == f"<{mail_id}@example.test>"
    text, html = message.iter_parts()
    assert f"{LINK}?n=0" in text.get_content()
    assert f'href="{LINK}?n=0"' in html.get_content()
    assert (await outbox_row(db, mail_id))["content_sealed"] is None


async def test_the_outbox_never_holds_a_readable_body_and_drops_it_once_sent(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    port = free_port()
    conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
    inbox = Inbox()
    async with serving(conf, database_url) as client:
        mail_id = await queue(client)
        await eventually(lambda: _retrying(db, mail_id, 1), "a try (no server yet)")
        whole_row = await db.fetchval("SELECT o::text FROM mail.outbox o WHERE id = $1", mail_id)
        assert LINK not in whole_row
        assert "Single-Use" not in whole_row.title()
        assert "Your invitation" not in whole_row
        assert "alice@example.test" in whole_row  # the recipient is metadata
        async with smtp_server(inbox, port):
            clock_of(client).advance(31)
            await eventually(lambda: _is(db, mail_id, "sent"), "delivery")
    after = await db.fetchval("SELECT o::text FROM mail.outbox o WHERE id = $1", mail_id)
    assert (await outbox_row(db, mail_id))["content_sealed"] is None
    assert LINK not in after


async def test_a_row_sent_elsewhere_in_the_database_does_not_open(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    """Someone who can write the table but not read the master key redirects a recovery mail
    to their own address: the sealed content is bound to the recipient, so nothing goes out."""
    inbox = Inbox()
    port = free_port()
    conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
    async with serving(conf, database_url) as client:
        mail_id = await queue(client)
        await eventually(lambda: _retrying(db, mail_id, 1), "a try (no server yet)")
        await db.execute(
            "UPDATE mail.outbox SET recipient = 'mallory@example.test' WHERE id = $1", mail_id
        )
        async with smtp_server(inbox, port):
            clock_of(client).advance(31)
            await eventually(lambda: _is(db, mail_id, "failed"), "the altered row to fail")
    assert inbox.messages == []
    row = await outbox_row(db, mail_id)
    assert row["last_error"] == "the content cannot be opened with this master key"


async def test_smtp_urls_require_starttls(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    """``smtp://`` never sends in clear text: a server without STARTTLS gets nothing, and the
    message waits for a server that offers it."""
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        conf = mail_conf(tmp_path / "conf", url=f"smtp://127.0.0.1:{port}")
        async with serving(conf, database_url) as client:
            mail_id = await queue(client)
            await eventually(lambda: _retrying(db, mail_id, 1), "the refused try")
    assert inbox.messages == []
    assert "STARTTLS" in (await outbox_row(db, mail_id))["last_error"]


async def test_the_sender_outlives_a_database_outage(
    tmp_path: Path, database_url: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses connections for a while (every connection of the gateway ended):
    the sender backs off, says so once, and delivers what is queued once it can."""
    inbox = Inbox()
    name = urlsplit(database_url).path.lstrip("/")
    admin_url = dsn_with_database(database_url, "postgres")
    caplog.set_level(logging.INFO, logger="gateway")
    admin = await asyncpg.connect(admin_url)
    try:
        async with smtp_server(inbox) as port:
            conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
            async with serving(conf, database_url) as client:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
                await eventually(
                    lambda: "mail sender cannot use the database" in caplog.text, "the outage"
                )
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                mail_id = await queue(client)
                await eventually(lambda: len(inbox.messages) == 1, "delivery", timeout=20)
                await eventually(
                    lambda: "mail sender uses the database again" in caplog.text, "recovery"
                )
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    fresh = await asyncpg.connect(database_url)
    try:
        assert await fresh.fetchval("SELECT state FROM mail.outbox WHERE id = $1", mail_id) == (
            "sent"
        )
    finally:
        await fresh.close()


async def test_log_lines_never_carry_a_link_or_content(
    tmp_path: Path,
    database_url: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Everything the gateway logs while a message is deferred (4xx), refused (5xx) and sent,
    at DEBUG: ids, kinds, attempts and SMTP replies, never the link, subject or body. (The
    test server's own loggers, mail.log and mail.debug, are the receiving side and left out.)"""
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    inbox.data_answers = ["451 4.3.0 Later"]
    async with smtp_server(inbox) as port:
        conf = mail_conf(tmp_path / "conf", url=smtp_url(port))
        async with serving(conf, database_url) as client:
            deferred = await queue(client)
            await eventually(lambda: _retrying(db, deferred, 1), "the deferral")
            clock_of(client).advance(31)
            await eventually(lambda: _is(db, deferred, "sent"), "delivery")
            inbox.refuse_rcpt = "550 5.1.1 Unknown"
            refused = await queue(client, invitation("bob@example.test", 1))
            await eventually(lambda: _is(db, refused, "failed"), "the refusal")
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]
    assert any(str(deferred) in r.getMessage() for r in ours)
    assert any("451 4.3.0 Later" in r.getMessage() for r in ours)
    formatter = JsonFormatter()
    for record in ours:
        line = formatter.format(record)
        for secret in (LINK, "single-use", "Your invitation", "Hello,"):
            assert secret not in line, line
            assert secret not in record.getMessage()
