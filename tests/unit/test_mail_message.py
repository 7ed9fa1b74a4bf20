"""The pure part of outgoing mail: what a message may be, its MIME form, its sealed content, and
the ``mail`` settings."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.config import load_config
from gateway.config.model import MailServer, parse_mail_address
from gateway.errors import ConfigError, InvalidInputError
from gateway.mail.message import OutgoingMail, build_message, decode_content, encode_content
from gateway.mail.outbox import content_purpose, open_content
from gateway.store.mail import ClaimedMail
from gateway.tokens.master import master_sealer
from tests.support import committed_sample, write_conf

LINK = "https://id.example.test/invite/7Hx-single-use-secret"
SENDER = parse_mail_address("Example Sign-in <no-reply@example.test>")
WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def invitation(**changes: Any) -> OutgoingMail:
    fields: dict[str, Any] = {
        "kind": "invitation",
        "to": "Zoë Ünïcode <zoe@example.test>",
        "subject": "Join Example — your invitation",
        "text": f"Hello Zoë,\n\nopen {LINK} to join.\n",
        "html": f'<p>Hello Zoë,</p><p><a href="{LINK}">Join</a></p>',
    }
    fields.update(changes)
    return OutgoingMail(**fields)


def parsed(message: EmailMessage) -> EmailMessage:
    """The message as a receiver reads it: bytes on the wire, parsed again."""
    result = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(result, EmailMessage)
    return result


def test_the_mime_message_has_text_and_html_alternatives_and_proper_headers() -> None:
    mail_id = uuid4()
    message = parsed(build_message(invitation(), mail_id=mail_id, sender=SENDER, date=WHEN))
    assert message["From"] == "Example Sign-in <no-reply@example.test>"
    assert message["To"] == "Zoë Ünïcode <zoe@example.test>"
    assert message["Subject"] == "Join Example — your invitation"
    assert message["Date"] == "Tue, 01 Dec 2026 09:30:00 +0000"
    assert message["Message-ID"] == f"<{mail_id}@example.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert text.get_content_charset() == "utf-8"
    assert html.get_content_charset() == "utf-8"
    assert LINK in text.get_content()
    assert f'href="{LINK}"' in html.get_content()
    assert "Hello Zoë" in text.get_content()
    # Every line on the wire fits RFC 5322's limit, whatever the link's length.
    assert max(len(line) for line in message.as_bytes().split(b"\n")) <= 998


def test_a_message_without_html_is_plain_text() -> None:
    message = parsed(
        build_message(invitation(html=None), mail_id=uuid4(), sender=SENDER, date=WHEN)
    )
    assert message.get_content_type() == "text/plain"
    assert LINK in message.get_content()


def test_a_callers_message_id_and_headers_are_kept() -> None:
    headers = {"Message-ID": "<inv-42@example.test>", "Reply-To": "help@example.test"}
    message = build_message(invitation(headers=headers), mail_id=uuid4(), sender=SENDER, date=WHEN)
    assert message["Message-ID"] == "<inv-42@example.test>"
    assert message["Reply-To"] == "help@example.test"
    assert len(message.get_all("Message-ID") or []) == 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kind": "Invitation!"}, "kind"),
        ({"to": "not an address"}, "to:"),
        ({"to": "a@example.test, b@example.test"}, "to:"),
        ({"to": "a@example.test\r\nBcc: eve@example.test"}, "to:"),
        ({"subject": "Hi\r\nBcc: eve@example.test"}, "one line"),
        ({"subject": ""}, "subject"),
        ({"text": "  "}, "text body"),
        ({"text": "x" * (600 * 1024)}, "too long"),
        ({"headers": {"Bcc": "eve@example.test"}}, "itself"),
        ({"headers": {"Content-Type": "text/html"}}, "itself"),
        ({"headers": {"X-Note": "a\nb"}}, "one line"),
        ({"headers": {"Bad Name": "x"}}, "header name"),
        ({"headers": {"Message-ID": "no-angle-brackets"}}, "Message-ID"),
    ],
)
def test_unusable_messages_are_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        invitation(**changes)


def test_sealed_content_opens_only_for_its_row_and_recipient() -> None:
    master = master_sealer(b"m" * 32)
    mail = invitation()
    mail_id = uuid4()
    sealed = master.seal(encode_content(mail), purpose=content_purpose(mail_id, mail.to))
    assert LINK not in sealed
    assert "Zoë" not in sealed

    def claimed(ident: UUID, recipient: str) -> ClaimedMail:
        return ClaimedMail(ident, "invitation", recipient, sealed, 1, WHEN, uuid4())

    assert open_content(master, claimed(mail_id, mail.to)) == mail
    assert open_content(master, claimed(uuid4(), mail.to)) is None  # moved to another row
    assert open_content(master, claimed(mail_id, "eve@example.test")) is None  # redirected
    assert open_content(master_sealer(b"o" * 32), claimed(mail_id, mail.to)) is None
    assert decode_content(encode_content(mail)) == mail


# --- the mail settings -----------------------------------------------------------------------


def mail_issues(tmp_path: Path, mail: dict[str, Any]) -> list[str]:
    path = write_conf(tmp_path / "conf", gateway={"mail": mail})
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return [issue.key + ": " + issue.reason for issue in info.value.issues]


def test_the_sample_writes_files_until_a_server_is_configured(tmp_path: Path) -> None:
    mail = load_config(committed_sample(tmp_path), environ={}).gateway.mail
    assert (mail.url, mail.server, mail.dir, mail.give_up_after) == (None, None, "var/mail", 259200)
    configured = load_config(
        committed_sample(tmp_path),
        environ={
            "GATEWAY_MAIL_URL": "smtp://smtp.example.test",
            "GATEWAY_MAIL_SENDER": "Example <no-reply@example.test>",
            "GATEWAY_MAIL_USERNAME": "gateway",
            "GATEWAY_MAIL_PASSWORD": "s3cret-from-the-environment",
        },
    ).gateway.mail
    assert configured.server == MailServer("smtp.example.test", 587, "starttls")
    assert configured.password is not None
    assert configured.password.get_secret_value() == "s3cret-from-the-environment"
    assert "s3cret" not in repr(configured)


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("smtp://smtp.example.test", MailServer("smtp.example.test", 587, "starttls")),
        ("smtp://smtp.example.test:2525", MailServer("smtp.example.test", 2525, "starttls")),
        ("smtps://smtp.example.test", MailServer("smtp.example.test", 465, "tls")),
        ("smtp+plain://127.0.0.1:1025", MailServer("127.0.0.1", 1025, "plain")),
        ("smtp+plain://localhost", MailServer("localhost", 25, "plain")),
    ],
)
def test_mail_urls_name_the_protection(tmp_path: Path, url: str, server: MailServer) -> None:
    path = write_conf(
        tmp_path / "conf", gateway={"mail": {"url": url, "sender": "gw@example.test"}}
    )
    assert load_config(path, environ={}).gateway.mail.server == server


@pytest.mark.parametrize(
    ("mail", "reason"),
    [
        ({"url": "smtp+plain://smtp.example.test:25", "sender": "a@example.test"}, "loopback"),
        ({"url": "http://smtp.example.test", "sender": "a@example.test"}, "smtp://host:port"),
        ({"url": "smtp://user:pw@smtp.example.test", "sender": "a@example.test"}, "credentials"),
        ({"url": "smtp://smtp.example.test/x", "sender": "a@example.test"}, "no path"),
        ({"url": "smtp://smtp.example.test:99999", "sender": "a@example.test"}, "port"),
        ({"url": "smtp://smtp.example.test"}, "set sender"),
        ({"sender": "two@example.test, three@example.test"}, "one email address"),
        ({"sender": "no-domain"}, "email address"),
        ({"username": "gateway"}, "both username and password"),
        ({"username": "gateway", "password": "x"}, "set url too"),
        ({"timeout": 0}, "greater than 0"),
        ({"give_up_after": 10}, "greater than or equal to 60"),
        ({"poll_interval": 0}, "greater than or equal to 0.05"),
        ({"starttls": False}, "unknown key"),
    ],
)
def test_bad_mail_settings_are_refused_clearly(
    tmp_path: Path, mail: dict[str, Any], reason: str
) -> None:
    issues = mail_issues(tmp_path, mail)
    assert len(issues) == 1, issues
    assert issues[0].startswith("mail")
    assert reason in issues[0]
