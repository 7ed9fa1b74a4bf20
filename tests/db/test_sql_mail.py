"""The outbox's functions (sql/functions/090_mail.sql) through the store layer, on a real
database: leases that keep two senders apart, takeover of a lease that ran out, the backoff,
giving up, an operator's requeue, the content dropped once sent, and housekeeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from gateway.errors import InvalidInputError
from gateway.store import mail as store
from gateway.store.errors import MailAlreadySentError, UnknownMailError
from gateway.store.housekeeping import housekeep

GIVE_UP = 3 * 86400


@pytest.fixture(autouse=True)
async def empty_outbox(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM mail.outbox")


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A second connection: another sender, another replica."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def ahead(conn: asyncpg.Connection, seconds: float) -> None:
    """This connection's ``daemon.now()`` runs ``seconds`` ahead (as a moved app clock sets)."""
    await conn.execute("SELECT set_config('gateway.clock_offset', $1, false)", f"{seconds} seconds")


async def enqueue(db: asyncpg.Connection, recipient: str = "alice@example.test") -> UUID:
    return await store.mail_enqueue(db, uuid4(), "invitation", recipient, "m1.sealed-content")


async def row(db: asyncpg.Connection, mail_id: UUID) -> asyncpg.Record:
    found = await db.fetchrow("SELECT * FROM mail.outbox WHERE id = $1", mail_id)
    assert found is not None
    return found


async def test_a_claim_is_a_lease_that_keeps_other_senders_away(
    db: asyncpg.Connection, other: asyncpg.Connection
) -> None:
    mail_id = await enqueue(db)
    (claimed,) = await store.mail_claim(db, limit=10, lease=60)
    assert (claimed.id, claimed.attempts, claimed.content_sealed) == (
        mail_id,
        1,
        "m1.sealed-content",
    )
    assert (await row(db, mail_id))["state"] == "sending"
    assert await store.mail_claim(other, limit=10, lease=60) == []
    await ahead(other, 59)
    assert await store.mail_claim(other, limit=10, lease=60) == []


async def test_a_lease_that_ran_out_is_taken_over_and_the_first_sender_changes_nothing(
    db: asyncpg.Connection, other: asyncpg.Connection
) -> None:
    mail_id = await enqueue(db)
    (first,) = await store.mail_claim(db, limit=10, lease=60)
    await ahead(other, 61)  # the first sender died, or hangs
    (second,) = await store.mail_claim(other, limit=10, lease=60)
    assert second.id == mail_id
    assert second.claim != first.claim
    assert second.attempts == 2
    # The first sender comes back: its outcome no longer counts.
    assert await store.mail_sent(db, mail_id, first.claim) is False
    assert await store.mail_failed(db, mail_id, first.claim, "x", permanent=True, give_up=1) is None
    assert await store.mail_release(db, mail_id, first.claim) is False
    assert (await row(db, mail_id))["state"] == "sending"
    assert await store.mail_sent(other, mail_id, second.claim) is True
    sent = await row(db, mail_id)
    assert (sent["state"], sent["content_sealed"], sent["claim"]) == ("sent", None, None)
    assert sent["sent_at"] is not None


async def test_senders_claiming_at_once_never_share_a_message(database_url: str) -> None:
    """Four connections claim from forty messages side by side, each in batches of three,
    until nothing is left: every message is claimed exactly once."""
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        queued = {await enqueue(conns[0], f"user{i}@example.test") for i in range(40)}

        async def claim_all(conn: asyncpg.Connection) -> list[UUID]:
            mine: list[UUID] = []
            for _ in range(40):
                batch = await store.mail_claim(conn, limit=3, lease=60)
                if not batch:
                    break
                mine.extend(c.id for c in batch)
            return mine

        claims = await asyncio.gather(*(claim_all(c) for c in conns))
        every = [mail_id for mine in claims for mail_id in mine]
        assert sorted(every) == sorted(queued)
        assert sum(1 for mine in claims if mine) >= 2, "one connection took everything"
    finally:
        for conn in conns:
            await conn.close()


async def test_failures_back_off_from_30_seconds_doubling_to_an_hour(
    db: asyncpg.Connection,
) -> None:
    mail_id = await enqueue(db)
    delays = []
    offset = 0.0
    for _ in range(10):
        (claimed,) = await store.mail_claim(db, limit=1, lease=60)
        now = await db.fetchval("SELECT daemon.now()")
        result = await store.mail_failed(
            db, mail_id, claimed.claim, "451 4.3.0 later", permanent=False, give_up=GIVE_UP
        )
        assert result is not None
        state, next_at = result
        assert state == "queued"
        assert next_at is not None
        delays.append(round((next_at - now).total_seconds()))
        assert await store.mail_claim(db, limit=1, lease=60) == []  # not due yet
        offset += delays[-1]
        await ahead(db, offset)
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    stored = await row(db, mail_id)
    assert (stored["attempts"], stored["last_error"]) == (10, "451 4.3.0 later")


async def test_a_permanent_refusal_fails_at_once_and_keeps_the_content(
    db: asyncpg.Connection,
) -> None:
    mail_id = await enqueue(db)
    (claimed,) = await store.mail_claim(db, limit=1, lease=60)
    failed = await store.mail_failed(
        db, mail_id, claimed.claim, "550 5.1.1 no such user", permanent=True, give_up=GIVE_UP
    )
    assert failed == ("failed", None)
    stored = await row(db, mail_id)
    assert (stored["state"], stored["last_error"]) == ("failed", "550 5.1.1 no such user")
    assert stored["content_sealed"] is not None  # kept, so that a retry can send it
    assert await store.mail_claim(db, limit=1, lease=60) == []


async def test_a_message_failing_past_the_give_up_time_fails_and_a_requeue_starts_anew(
    db: asyncpg.Connection,
) -> None:
    mail_id = await enqueue(db)
    (claimed,) = await store.mail_claim(db, limit=1, lease=60)
    first = await store.mail_failed(
        db, mail_id, claimed.claim, "timeout", permanent=False, give_up=600
    )
    assert first == ("queued", (await row(db, mail_id))["next_attempt_at"])
    await ahead(db, 601)  # ten minutes after it was queued
    (claimed,) = await store.mail_claim(db, limit=1, lease=60)
    result = await store.mail_failed(
        db, mail_id, claimed.claim, "timeout", permanent=False, give_up=600
    )
    assert result == ("failed", None)

    assert await store.mail_requeue(db, None) == 1
    requeued = await row(db, mail_id)
    assert (requeued["state"], requeued["attempts"], requeued["failed_at"]) == ("queued", 0, None)
    (claimed,) = await store.mail_claim(db, limit=1, lease=60)
    # The give-up time counts from the requeue: one more failure is retried.
    again = await store.mail_failed(
        db, mail_id, claimed.claim, "timeout", permanent=False, give_up=600
    )
    assert again is not None
    assert again[0] == "queued"


async def test_requeue_of_one_message_and_its_refusals(db: asyncpg.Connection) -> None:
    waiting = await enqueue(db)
    (claimed,) = await store.mail_claim(db, limit=1, lease=60)
    await store.mail_failed(db, waiting, claimed.claim, "421", permanent=False, give_up=GIVE_UP)
    assert await store.mail_claim(db, limit=1, lease=60) == []
    assert await store.mail_requeue(db, waiting) == 1  # an operator: try it now
    (claimed,) = await store.mail_claim(db, limit=1, lease=60)
    with pytest.raises(MailAlreadySentError):
        await store.mail_requeue(db, waiting)  # a sender holds it
    await store.mail_sent(db, waiting, claimed.claim)
    with pytest.raises(MailAlreadySentError):
        await store.mail_requeue(db, waiting)
    with pytest.raises(UnknownMailError):
        await store.mail_requeue(db, uuid4())
    assert await store.mail_requeue(db, None) == 0  # nothing failed


async def test_a_released_message_is_due_at_once(db: asyncpg.Connection) -> None:
    mail_id = await enqueue(db)
    (claimed,) = await store.mail_claim(db, limit=1, lease=60)
    assert await store.mail_release(db, mail_id, claimed.claim) is True
    (again,) = await store.mail_claim(db, limit=1, lease=60)
    assert (again.id, again.attempts) == (mail_id, 2)


async def test_enqueue_wakes_listeners_when_its_transaction_commits(
    db: asyncpg.Connection, other: asyncpg.Connection
) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    await other.add_listener(store.CHANNEL, lambda *args: heard.put_nowait(args[2]))
    async with db.transaction():
        await enqueue(db)
        await asyncio.sleep(0.2)
        assert heard.empty(), "woken before the message could be seen"
    assert await asyncio.wait_for(heard.get(), 5) == store.CHANNEL


async def test_the_outbox_listing_shows_metadata_and_hides_sent_ones_by_default(
    db: asyncpg.Connection,
) -> None:
    sent, waiting = await enqueue(db, "a@example.test"), await enqueue(db, "b@example.test")
    claimed = {c.id: c for c in await store.mail_claim(db, limit=2, lease=60)}
    await store.mail_sent(db, sent, claimed[sent].claim)
    await store.mail_failed(
        db, waiting, claimed[waiting].claim, "451 later", permanent=False, give_up=GIVE_UP
    )
    (entry,) = await store.mail_outbox(db, include_sent=False, limit=100)
    assert (entry.id, entry.state, entry.recipient, entry.attempts, entry.last_error) == (
        waiting,
        "queued",
        "b@example.test",
        1,
        "451 later",
    )
    assert entry.next_attempt_at is not None
    everything = await store.mail_outbox(db, include_sent=True, limit=100)
    assert {e.id: e.state for e in everything} == {sent: "sent", waiting: "queued"}


async def test_bad_input_is_refused(db: asyncpg.Connection) -> None:
    with pytest.raises(InvalidInputError):
        await store.mail_enqueue(db, uuid4(), "Not A Kind", "a@example.test", "m1.x")
    with pytest.raises(InvalidInputError):
        await store.mail_enqueue(db, uuid4(), "invitation", "a@example.test", "")
    with pytest.raises(InvalidInputError):
        await store.mail_claim(db, limit=0, lease=60)


async def test_housekeeping_deletes_sent_mail_after_the_keep_period_only(
    db: asyncpg.Connection,
) -> None:
    old_sent, new_sent, failed = await enqueue(db), await enqueue(db), await enqueue(db)
    claimed = {c.id: c for c in await store.mail_claim(db, limit=3, lease=60)}
    await store.mail_sent(db, old_sent, claimed[old_sent].claim)
    await store.mail_sent(db, new_sent, claimed[new_sent].claim)
    await store.mail_failed(db, failed, claimed[failed].claim, "550", permanent=True, give_up=1)
    await db.execute(
        "UPDATE mail.outbox SET sent_at = sent_at - $2::interval, failed_at = failed_at - $2 "
        "WHERE id = ANY($1)",
        [old_sent, failed],
        timedelta(days=3),
    )
    deleted = await housekeep(db, keep=86400, audit_days=0, batch=100)
    assert deleted["sent mails"] == 1
    left = {r["id"] for r in await db.fetch("SELECT id FROM mail.outbox")}
    assert left == {new_sent, failed}
