"""Queueing mail: ``queue_mail`` is what request handlers and use cases call.

The message is sealed with the master key before it reaches the database (its links are
single-use secrets), bound to the outbox row's id and recipient: a sealed body moved to another
row, or a row whose recipient was changed, no longer opens. One SQL call queues it and wakes the
senders of every process (``NOTIFY gateway_mail``, delivered when the caller's transaction
commits), so it goes out within moments, or is retried until it does.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from gateway.errors import InvalidInputError
from gateway.mail.message import OutgoingMail, decode_content, encode_content
from gateway.store import mail as store
from gateway.store.mail import ClaimedMail
from gateway.store.pool import Executor
from gateway.tokens.seal import Sealer

CONTENT_PURPOSE = "mail-outbox"
# Sealed content is about 4/3 of the JSON it seals (base64) plus the nonce and tag.
MAX_SEALED_CONTENT = 4 * 1024 * 1024


def content_purpose(mail_id: UUID, recipient: str) -> str:
    return f"{CONTENT_PURPOSE}:{mail_id}:{recipient}"


async def queue_mail(db: Executor, master: Sealer, message: OutgoingMail) -> UUID:
    """Queue ``message`` for delivery and wake the senders; its outbox id.

    ``db`` is the caller's pool or connection: inside a transaction the message is queued (and
    the senders woken) only if that transaction commits. ``master`` is the master key's sealer
    (``ctx.authority.master`` in a use case).
    """
    mail_id, sealed = seal_mail(master, message)
    return await store.mail_enqueue(db, mail_id, message.kind, message.to, sealed)


def seal_mail(master: Sealer, message: OutgoingMail) -> tuple[UUID, str]:
    """A new outbox id and the message sealed for it, for a daemon function that queues it
    in the transaction of its own change (``daemon.org_invite``)."""
    mail_id = uuid4()
    sealed = master.seal(encode_content(message), purpose=content_purpose(mail_id, message.to))
    if len(sealed) > MAX_SEALED_CONTENT:
        raise InvalidInputError("the mail is too long")
    return mail_id, sealed


def open_content(master: Sealer, claimed: ClaimedMail) -> OutgoingMail | None:
    """The message of a claimed outbox row, or None when it cannot be opened (another master
    key, or a row altered in the database)."""
    plain = master.unseal(
        claimed.content_sealed,
        purpose=content_purpose(claimed.id, claimed.recipient),
        max_length=MAX_SEALED_CONTENT,
    )
    if plain is None:
        return None
    try:
        message = decode_content(plain)
    except ValueError:
        return None
    return message if message.to == claimed.recipient else None
