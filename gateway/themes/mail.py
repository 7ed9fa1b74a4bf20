"""Emails from templates: ``render_mail`` gives the subject, the plain text and the HTML of one
message in one language. No aiohttp and no sending here: the mail sender takes the result.

Each message is three templates of a theme, ``mail/<name>.subject.txt``, ``mail/<name>.txt`` and
``mail/<name>.html``, with the message texts of the language (``t``), ``lang`` and the caller's
variables; the bodies also get ``subject``. The HTML is autoescaped, the text is not (it is not
HTML), and the subject is always one line: line breaks and control characters, wherever they
came from, become single spaces, so no value can add a header.

The built-in messages and their variables (other code relies on these names):

``invitation``
    organization_name, inviter (or None), link, expires_at (a datetime), role, client_name
    (or None)
``verify_email``
    name, link, expires_at
``reset_password``
    name, link, expires_at
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from gateway.themes.theme import Rendering, Theme

MAIL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
RESERVED = frozenset({"t", "lang", "subject"})


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, line breaks and other control characters made one
    space (CR, LF, U+2028, NEL...): fit for a header."""
    cleaned = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text
    )
    return " ".join(cleaned.split())


def render_mail(theme: Theme, name: str, lang: str, /, **context: object) -> RenderedMail:
    """Message ``name`` in language ``lang`` (English when the theme has no texts in it), e.g.
    ``render_mail(theme, "verify_email", "en", name="Alice", link=..., expires_at=...)``: the
    first three are positional-only, so that a template variable may be called ``name``.
    A failing override is logged once and the built-in templates are used instead."""
    if not MAIL_NAME.match(name):
        raise ValueError(f"not a mail template name: {name!r}")
    reserved = RESERVED & context.keys()
    if reserved:
        raise TypeError(f"reserved template variables: {', '.join(sorted(reserved))}")

    def render(rendering: Rendering) -> RenderedMail:
        used = rendering.language(lang)
        values: dict[str, object] = {**context, "t": rendering.texts(used), "lang": used}
        subject = one_line(rendering.render(f"mail/{name}.subject.txt", values))
        values["subject"] = subject
        text = rendering.render(f"mail/{name}.txt", values).strip("\n") + "\n"
        html = rendering.render(f"mail/{name}.html", values)
        return RenderedMail(subject=subject, text=text, html=html)

    return theme.attempt(render, what=f"mail/{name}")
