"""An outgoing message, and its MIME form. Pure: no I/O, no aiohttp, asyncpg or SMTP client.

``OutgoingMail`` is what a caller of ``queue_mail`` hands over (rendered already, e.g. from a
Jinja2 template): a kind for the outbox listing, one recipient, a subject, a text body, an
optional HTML body and optional extra headers (``Message-ID``, ``Reply-To``, ``List-*``...).
It is checked when it is made, so a bad address or a header injection never reaches the queue.

``build_message`` turns it into the message that is sent: ``multipart/alternative`` (text, then
HTML) in UTF-8 with ``From``, ``To``, ``Subject``, ``Date`` (when it was queued, the same on
every retry), ``Message-ID`` (``<outbox id@sender's domain>`` unless the caller gave one, so
every retry carries the same one and a receiver can drop a duplicate) and
``Auto-Submitted: auto-generated`` (RFC 3834: auto-responders do not answer it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from types import MappingProxyType
from typing import Any
from uuid import UUID

from gateway.config.model import parse_mail_address
from gateway.errors import InvalidInputError

KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,75}$")
MESSAGE_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
# Headers the gateway writes itself: a caller cannot add recipients or change the sender.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "return-path",
        "mime-version",
        "received",
    }
)
MAX_SUBJECT = 998  # RFC 5322 section 2.1.1, one line
MAX_BODY = 512 * 1024  # characters of text and HTML together
MAX_HEADERS = 20
CONTENT_VERSION = 1


@dataclass(frozen=True)
class OutgoingMail:
    """A message to queue. Raises ``InvalidInputError`` (400 if it reaches a handler's error
    rendering) when a field is unusable.

    >>> OutgoingMail(kind="invitation", to="Alice <alice@example.com>",
    ...              subject="You are invited", text="Open https://...", html="<p>...</p>")
    """

    kind: str
    to: str
    subject: str
    text: str
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not KIND.match(self.kind):
            raise InvalidInputError(
                "the kind of a mail is a short lower-case name such as invitation"
            )
        try:
            parse_mail_address(self.to)
        except ValueError as exc:
            raise InvalidInputError(f"to: {exc}") from None
        if not self.subject.strip() or len(self.subject) > MAX_SUBJECT:
            raise InvalidInputError("the subject must be 1 to 998 characters")
        if _has_line_break_or_control(self.subject):
            raise InvalidInputError("the subject must be one line")
        if not self.text.strip():
            raise InvalidInputError("a mail needs a text body")
        if len(self.text) + len(self.html or "") > MAX_BODY:
            raise InvalidInputError("the mail is too long (text and HTML above 512 KiB)")
        headers = dict(self.headers)
        if len(headers) > MAX_HEADERS:
            raise InvalidInputError("too many extra headers")
        seen: set[str] = set()
        for name, value in headers.items():
            lowered = name.lower()
            if not HEADER_NAME.match(name) or lowered in seen:
                raise InvalidInputError(f"{name!r} is not a header name (or appears twice)")
            if lowered in RESERVED_HEADERS or lowered.startswith("content-"):
                raise InvalidInputError(f"the gateway sets the {name} header itself")
            if _has_line_break_or_control(value) or len(value) > MAX_SUBJECT:
                raise InvalidInputError(f"the {name} header must be one line")
            if lowered == "message-id" and not MESSAGE_ID.match(value):
                raise InvalidInputError("Message-ID must look like <unique@example.com>")
            seen.add(lowered)
        object.__setattr__(self, "headers", MappingProxyType(headers))

    @property
    def recipient(self) -> Address:
        return parse_mail_address(self.to)

    def header(self, name: str) -> str | None:
        """An extra header by name, whatever its case."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


def _has_line_break_or_control(value: str) -> bool:
    return any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value)


def encode_content(mail: OutgoingMail) -> bytes:
    """What is sealed into the outbox row: everything but nothing the row shows anyway."""
    return json.dumps(
        {
            "v": CONTENT_VERSION,
            "kind": mail.kind,
            "to": mail.to,
            "subject": mail.subject,
            "text": mail.text,
            "html": mail.html,
            "headers": dict(mail.headers),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def decode_content(data: bytes) -> OutgoingMail:
    """The message ``encode_content`` made; ``ValueError`` when it is not one."""
    value: Any = json.loads(data)
    if not isinstance(value, dict) or value.get("v") != CONTENT_VERSION:
        raise ValueError("not a sealed mail of this version")
    try:
        return OutgoingMail(
            kind=value["kind"],
            to=value["to"],
            subject=value["subject"],
            text=value["text"],
            html=value["html"],
            headers=value["headers"],
        )
    except (KeyError, TypeError, InvalidInputError) as exc:
        raise ValueError("a sealed mail with missing or bad fields") from exc


def build_message(
    mail: OutgoingMail, *, mail_id: UUID, sender: Address, date: datetime
) -> EmailMessage:
    """The MIME message: text alone, or ``multipart/alternative`` with text and HTML."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = mail.header("Message-ID") or f"<{mail_id}@{sender.domain}>"
    if mail.header("Auto-Submitted") is None:
        message["Auto-Submitted"] = "auto-generated"
    for name, value in mail.headers.items():
        if name.lower() != "message-id":
            message[name] = value
    message.set_content(mail.text, charset="utf-8")
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html", charset="utf-8")
    return message
