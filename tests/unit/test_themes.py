"""Themes without a server: the built-in templates and texts, ``render_mail``, the lookup order
of theme directories, the fallback from a failing override, and the checks that ``gateway config
check`` runs on a theme (issue 12 part 7). SECURITY-CHECKLIST item 67 (no header or HTML
injection through reflected values) for the emails: HTML escaped, text not, subject one line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from jinja2 import TemplateNotFound

from gateway.config import load_config
from gateway.config.watch import signature, watched_paths
from gateway.errors import ConfigError
from gateway.themes import Theme, Themes, check_theme, render_mail
from gateway.themes.theme import BUILTIN_DIR, Rendering
from tests.support import write_conf

EXPIRES = datetime(2027, 3, 14, 15, 30, tzinfo=UTC)
SCRIPT = "<script>alert(1)</script>"
# The documented variables of each built-in email (README "Themes").
MAILS: dict[str, dict[str, object]] = {
    "invitation": {
        "organization_name": "Acme",
        "inviter": "Bob Builder",
        "link": "https://id.example.test/invite?token=abc&x=1",
        "expires_at": EXPIRES,
        "role": "admin",
        "client_name": "Team chat",
    },
    "verify_email": {
        "name": "Alice",
        "link": "https://id.example.test/verify?token=abc&x=1",
        "expires_at": EXPIRES,
    },
    "reset_password": {
        "name": "Alice",
        "link": "https://id.example.test/reset?token=abc&x=1",
        "expires_at": EXPIRES,
    },
}
# Every built-in page and the context its pages.py function gives it.
PAGES: dict[str, dict[str, object]] = {
    "login.html": {
        "client_name": "chat",
        "action": "/oauth2/login",
        "hidden": {"flow": "sealed"},
        "username": "alice",
        "message": "wrong",
        "error": "The user name or password is wrong.",
        "notice": None,
        "notice_text": None,
        "providers": [("Google", "/oauth2/external/google")],
        "register_url": "/oauth2/account/register?flow=sealed",
        "forgot_url": "/oauth2/account/forgot?flow=sealed",
        "change_url": None,
    },
    "identifier.html": {
        "client_name": "chat",
        "action": "/oauth2/identifier",
        "hidden": {"flow": "sealed"},
        "username": "alice",
        "message": "identifier_missing",
        "error": "Enter your user name or email.",
        "providers": [("Google", "/oauth2/external/google")],
        "register_url": "/oauth2/account/register?flow=sealed",
    },
    "callback.html": {"params": [("code", "abc"), ("state", "s")]},
    "consent.html": {
        "client_name": "crm",
        "action": "/oauth2/consent",
        "hidden": {"flow": "sealed"},
        "scope": ("openid", "email"),
    },
    "error.html": {"error": "invalid_request", "description": "no client_id"},
    "refused.html": {"reason": "expired", "reason_text": "expired", "restart": "/x"},
    "login_failed.html": {"reason": "timeout", "reason_text": "failed", "restart": "/x"},
    "message.html": {"key": "signed_out", "text": "You are signed out."},
    "logout.html": {"action": "/oauth2/logout", "hidden": {"flow": "sealed"}},
    "unavailable.html": {"retry_after": 5},
    "account_register.html": {
        "action": "/oauth2/account/register",
        "hidden": {"flow": "sealed"},
        "email": "erin@example.test",
        "name": "Erin",
        "username": "erin",
        "error": "The two passwords are not the same.",
        "sign_in": "/oauth2/authorize?client_id=x",
    },
    "account_forgot.html": {
        "action": "/oauth2/account/forgot",
        "hidden": {"flow": "sealed"},
        "email": "erin@example.test",
        "error": None,
        "sign_in": None,
    },
    "account_sent.html": {"text": "We sent a message.", "sign_in": "/oauth2/authorize?x=1"},
    "account_verify.html": {
        "action": "/oauth2/account/verify",
        "hidden": {"flow": "sealed"},
        "email": "erin@example.test",
        "error": None,
    },
    "account_reset.html": {
        "action": "/oauth2/account/reset",
        "hidden": {"flow": "sealed"},
        "email": "erin@example.test",
        "error": "too short",
    },
    "account_done.html": {"text": "Done.", "continue_to": "/oauth2/authorize?x=1"},
    "account_problem.html": {"state": "expired", "again": "/oauth2/account/forgot"},
}


def page(theme: Theme, template: str, lang: str = "en", /, **context: object) -> str:
    """A page as pages.py renders it: texts of the language, lang and title added."""

    def render(rendering: Rendering) -> str:
        used = rendering.language(lang)
        t = rendering.texts(used)
        values = {**context, "t": t, "lang": used, "title": t["title"]}
        return rendering.render(f"pages/{template}", values)

    return theme.attempt(render, what=f"pages/{template}")


def write_theme(directory: Path, files: Mapping[str, str]) -> Path:
    for name, content in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def builtin() -> Theme:
    return Themes().builtin


# --- the built-in theme -----------------------------------------------------------------------


def test_english_and_russian_have_the_same_messages() -> None:
    en = json.loads((BUILTIN_DIR / "messages" / "en.json").read_text(encoding="utf-8"))
    ru = json.loads((BUILTIN_DIR / "messages" / "ru.json").read_text(encoding="utf-8"))
    assert set(en) == set(ru)
    for key, text in en.items():
        # The same placeholders, so a page formats either language with the same values.
        assert sorted(_placeholders(text)) == sorted(_placeholders(ru[key])), key


def _placeholders(text: str) -> list[str]:
    import string

    return [field for _, field, _, _ in string.Formatter().parse(text) if field]


@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("template", sorted(PAGES))
def test_every_built_in_page_renders_strictly(builtin: Theme, template: str, lang: str) -> None:
    """StrictUndefined: a misspelt variable or message key in a built-in page fails here."""
    html = page(builtin, template, lang, **PAGES[template])
    soup = BeautifulSoup(html, "html.parser")
    assert soup.html is not None
    assert soup.html.get("lang") == lang
    assert soup.find("main") is not None
    assert soup.find("script") is None


@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("link", ["https://id.example.test/oauth2/account/forgot", None])
def test_the_account_exists_notice_renders_with_and_without_a_link(
    builtin: Theme, lang: str, link: str | None
) -> None:
    mail = render_mail(builtin, "account_exists", lang, name=None, link=link)
    assert mail.subject
    assert "\n" not in mail.subject
    soup = BeautifulSoup(mail.html, "html.parser")
    assert [a["href"] for a in soup.find_all("a")] == ([link, link] if link else [])
    assert (link in mail.text) if link else ("http" not in mail.text)


@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("name", sorted(MAILS))
def test_every_built_in_mail_renders_strictly(builtin: Theme, name: str, lang: str) -> None:
    mail = render_mail(builtin, name, lang, **MAILS[name])
    link = str(MAILS[name]["link"])
    assert mail.subject
    assert "\n" not in mail.subject
    assert link in mail.text
    assert "2027-03-14 15:30 UTC" in mail.text
    assert mail.text.endswith("\n")
    soup = BeautifulSoup(mail.html, "html.parser")
    assert [a["href"] for a in soup.find_all("a")] == [link, link]
    assert soup.title is not None
    assert soup.title.get_text() == mail.subject
    assert "<table" not in mail.html
    assert "2027-03-14 15:30 UTC" in soup.get_text()


def test_a_mail_missing_a_documented_variable_fails(builtin: Theme) -> None:
    context = dict(MAILS["verify_email"])
    del context["name"]
    with pytest.raises(Exception, match="'name' is undefined"):
        render_mail(builtin, "verify_email", "en", **context)


def test_mail_in_english(builtin: Theme) -> None:
    mail = render_mail(builtin, "invitation", "en", **MAILS["invitation"])
    assert mail.subject == "Invitation to join Acme"
    assert "Bob Builder invited you to join Acme as administrator." in mail.text
    assert "You will use this account to sign in to Team chat." in mail.text
    assert "Accept the invitation" in BeautifulSoup(mail.html, "html.parser").get_text()


def test_mail_in_russian(builtin: Theme) -> None:
    mail = render_mail(builtin, "verify_email", "ru", **MAILS["verify_email"])
    assert mail.subject == "Подтвердите адрес электронной почты"
    assert mail.text.startswith("Здравствуйте, Alice!\n")
    assert "Ссылка действует до 2027-03-14 15:30 UTC." in mail.text
    assert BeautifulSoup(mail.html, "html.parser").html["lang"] == "ru"  # type: ignore[index]


def test_mail_in_another_language_is_english(builtin: Theme) -> None:
    mail = render_mail(builtin, "reset_password", "de", **MAILS["reset_password"])
    assert mail.subject == "Reset your password"
    assert 'lang="en"' in mail.html


def test_invitation_without_inviter_or_client(builtin: Theme) -> None:
    context = {**MAILS["invitation"], "inviter": None, "client_name": None}
    mail = render_mail(builtin, "invitation", "en", **context)
    assert "You are invited to join Acme as administrator." in mail.text
    assert "None" not in mail.text
    assert "None" not in mail.html
    assert "sign in to" not in mail.text


def test_mail_times_are_shown_in_utc(builtin: Theme) -> None:
    moscow = EXPIRES.astimezone(timezone(timedelta(hours=3)))
    mail = render_mail(
        builtin, "reset_password", "en", **{**MAILS["reset_password"], "expires_at": moscow}
    )
    assert "2027-03-14 15:30 UTC" in mail.text


def test_mail_html_is_escaped_and_text_is_not(builtin: Theme) -> None:
    """Item 67 for emails: every value is escaped in the HTML body (no element, no attribute
    break-out) and left as it is in the plain text body, which is not HTML."""
    context = {
        **MAILS["invitation"],
        "organization_name": SCRIPT,
        "inviter": 'Eve "<b>"',
        "client_name": "<img src=x onerror=alert(1)>",
        "link": 'https://id.example.test/i?a=1&b="><script>',
    }
    mail = render_mail(builtin, "invitation", "en", **context)
    soup = BeautifulSoup(mail.html, "html.parser")
    assert soup.find("script") is None
    assert soup.find("img") is None
    assert soup.find("b") is None
    assert SCRIPT in soup.get_text()
    assert {a["href"] for a in soup.find_all("a")} == {context["link"]}
    assert "&lt;script&gt;" in mail.html
    assert SCRIPT in mail.text
    assert 'Eve "<b>"' in mail.text
    assert "&lt;" not in mail.text
    assert "&amp;" not in mail.text


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r", "\u2028", "\x85", "\x00", "\t\x0b"])
def test_mail_subject_is_one_line_whatever_the_values(builtin: Theme, breaker: str) -> None:
    """Item 67: no value can add a header line through the subject."""
    name = f"Acme{breaker}Bcc: victim@example.test"
    mail = render_mail(
        builtin, "invitation", "en", **{**MAILS["invitation"], "organization_name": name}
    )
    assert mail.subject == "Invitation to join Acme Bcc: victim@example.test"
    assert not any(c in mail.subject for c in "\r\n\x00\x0b\u2028\x85")


def test_mail_names_and_reserved_variables(builtin: Theme) -> None:
    with pytest.raises(ValueError, match="not a mail template name"):
        render_mail(builtin, "../pages/login", "en")
    with pytest.raises(TypeError, match="reserved template variables: subject"):
        render_mail(builtin, "verify_email", "en", subject="x", **MAILS["verify_email"])


# --- overrides: lookup order, messages, fallback ----------------------------------------------


def test_lookup_order_site_then_gateway_then_built_in(tmp_path: Path) -> None:
    gateway = write_theme(
        tmp_path / "gateway",
        {
            "pages/error.html": '{% extends "pages/base.html" %}{% block content %}'
            "<p id=from>gateway</p>{% endblock %}",
            "pages/logout.html": '{% extends "pages/base.html" %}{% block content %}'
            "<p id=from>gateway</p>{% endblock %}",
            "pages/base.html": '{% extends "default:pages/base.html" %}'
            "{% block head %}<meta name=theme content=gateway>{% endblock %}",
        },
    )
    site = write_theme(
        tmp_path / "site",
        {
            "pages/error.html": '{% extends "pages/base.html" %}{% block content %}'
            "<p id=from>site</p>{% endblock %}"
        },
    )
    themes = Themes(gateway, {"brand": site})
    brand, other, plain = themes.theme("brand"), themes.theme("other"), themes.theme()
    assert other is plain

    def source(theme: Theme, template: str) -> str | None:
        found = BeautifulSoup(page(theme, template, **PAGES[template]), "html.parser")
        marker = found.find(id="from")
        return marker.get_text() if marker else None

    assert source(brand, "error.html") == "site"
    assert source(brand, "logout.html") == "gateway"
    assert source(plain, "error.html") == "gateway"
    assert source(brand, "consent.html") is None  # built-in
    # The gateway's layout is everyone's, the site's pages and the built-in ones included.
    for theme, template in ((brand, "error.html"), (brand, "consent.html"), (plain, "login.html")):
        assert "<meta name=theme content=gateway>" in page(theme, template, **PAGES[template])
    assert "gateway" not in page(themes.builtin, "error.html", **PAGES["error.html"])


def test_a_theme_overrides_and_adds_messages(tmp_path: Path) -> None:
    directory = write_theme(
        tmp_path / "theme",
        {
            "messages/en.json": json.dumps({"submit": "Log in", "brand": "Acme", "//": "x"}),
            "messages/ru.json": json.dumps({"submit": "Войти в Acme"}),
            "messages/de.json": json.dumps({"submit": "Anmelden"}),
        },
    )
    theme = Themes(directory).gateway
    assert theme.languages == {"en", "ru", "de"}
    assert theme.override is not None
    en, ru, de = (theme.override.texts(lang) for lang in ("en", "ru", "de"))
    assert (en["submit"], en["brand"], en["password"]) == ("Log in", "Acme", "Password")
    assert (ru["submit"], ru["brand"], ru["password"]) == ("Войти в Acme", "Acme", "Пароль")
    # A language the theme adds: its own texts, English for the rest.
    assert (de["submit"], de["password"], de["brand"]) == ("Anmelden", "Password", "Acme")
    assert "//" not in en
    html = page(theme, "login.html", "de", **PAGES["login.html"])
    assert 'lang="de"' in html
    assert "Anmelden</button>" in html


def test_an_override_mail_is_used(tmp_path: Path) -> None:
    directory = write_theme(
        tmp_path / "theme",
        {
            "mail/verify_email.subject.txt": "[Acme] {{ t.mail_verify_email_subject }}",
            "mail/verify_email.txt": "Hi {{ name }}: {{ link }}",
            "messages/en.json": json.dumps({"mail_verify_email_subject": "Check your {thing}"}),
        },
    )
    theme = Themes(directory).gateway
    mail = render_mail(theme, "verify_email", "en", **MAILS["verify_email"])
    assert mail.subject == "[Acme] Check your {thing}"
    assert mail.text == f"Hi Alice: {MAILS['verify_email']['link']}\n"
    # The HTML part is not overridden: the built-in one, with the theme's texts.
    assert "<title>[Acme] Check your {thing}</title>" in mail.html


def test_a_failing_override_falls_back_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write_theme(
        tmp_path / "theme",
        {
            "pages/error.html": '{% extends "pages/base.html" %}\n{% block content %}\n'
            "<p>{{ nothing.here }}</p>{% endblock %}",
            "mail/reset_password.txt": "{{ 1 // 0 }}",
            # A message whose placeholder the page does not give.
            "messages/en.json": json.dumps({"mail_hello": "Dear {title} {name}"}),
        },
    )
    theme = Themes(directory).gateway
    caplog.set_level(logging.WARNING, logger="gateway.themes.theme")
    for _ in range(3):
        html = page(theme, "error.html", **PAGES["error.html"])
        assert "The request cannot be completed" in html  # the built-in page
    mails = [render_mail(theme, "reset_password", "en", **MAILS["reset_password"]) for _ in "ab"]
    assert mails[0] == mails[1]
    assert mails[0].text.startswith("Hello Alice,\n")  # all built-in, built-in texts included
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert f"{directory}/pages/error.html:3" in lines[0]
    assert "'nothing' is undefined" in lines[0]
    assert "using the built-in template" in lines[0]
    assert "mail/reset_password" in lines[1]
    assert "ZeroDivisionError" in lines[1]


def test_theme_templates_are_sandboxed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A theme says what a page shows; it cannot reach Python internals or change the values
    it is given (Jinja's immutable sandbox): such a template falls back like a broken one."""
    directory = write_theme(
        tmp_path / "theme",
        {
            "pages/error.html": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "pages/logout.html": "{{ hidden.clear() }}{{ hidden }}",
        },
    )
    theme = Themes(directory).gateway
    hidden = {"flow": "sealed"}
    caplog.set_level(logging.WARNING, logger="gateway.themes.theme")
    assert "The request cannot be completed" in page(theme, "error.html", **PAGES["error.html"])
    logout = page(theme, "logout.html", action="/oauth2/logout", hidden=hidden)
    assert 'name="flow" value="sealed"' in logout
    assert hidden == {"flow": "sealed"}
    assert ["SecurityError" in r.getMessage() for r in caplog.records] == [True, True]


def test_an_unknown_template_is_the_callers_mistake(tmp_path: Path) -> None:
    theme = Themes(write_theme(tmp_path / "theme", {"pages/x.html": "x"})).gateway
    with pytest.raises(TemplateNotFound, match=r"pages/nowhere\.html"):
        theme.render("pages/nowhere.html", {})


# --- checks (gateway config check, every reload) ----------------------------------------------


def test_check_reports_syntax_errors_with_file_and_line(tmp_path: Path) -> None:
    directory = write_theme(
        tmp_path / "theme",
        {
            "pages/login.html": '{% extends "pages/base.html" %}\n{% block content %}\n'
            "{% if x %}\n{% endblock %}\n",
            "pages/consent.html": "line 1\n{{ x | no_such_filter }}\n",
            "pages/error.html": '{% extends "pages/base.html" %}\n\n'
            '{% include "pages/nope.html" %}',
            "pages/logout.html": '{% extends "default:pages/logout.html" %}',
            "mail/invitation.txt": "{{ organization_name }\n",
            "messages/en.json": '{\n  "submit": "x",\n}',
            "messages/ru.json": json.dumps({"submit": 3}),
            "messages/english.json": "{}",
            "pages/.login.html.swp": "\x00\x01{%",
        },
    )
    issues = [str(issue) for issue in check_theme(directory)]
    pages, mail, messages = directory / "pages", directory / "mail", directory / "messages"
    assert issues == [
        f"{pages}/consent.html:2: template syntax error: No filter named 'no_such_filter'.",
        f"{pages}/error.html:3: no template 'pages/nope.html' in this theme or the built-in one",
        f"{pages}/login.html:4: template syntax error: Encountered unknown tag 'endblock'. "
        "You probably made a nesting mistake. Jinja is expecting this tag, but currently "
        "looking for 'elif' or 'else' or 'endif'. The innermost block that needs to be closed "
        "is 'if'.",
        f"{mail}/invitation.txt:1: template syntax error: unexpected '}}'",
        f"{messages}/en.json:3: invalid JSON: Expecting property name enclosed in double quotes",
        f"{messages}/english.json: name it <language>.json, e.g. en.json",
        f"{messages}/ru.json: submit: must be a string",
    ]


def test_a_site_theme_may_use_the_gateway_theme(tmp_path: Path) -> None:
    gateway = write_theme(tmp_path / "gateway", {"pages/brand.html": "<b>Acme</b>"})
    site = write_theme(tmp_path / "site", {"pages/error.html": '{% include "pages/brand.html" %}'})
    assert check_theme(site, (gateway,)) == []
    assert len(check_theme(site)) == 1


def test_config_reports_theme_problems_and_missing_directories(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path / "conf",
        gateway={"theme_dir": "theme"},
        sites={"brand": {"hosts": ["brand.example.test"], "theme_dir": "nowhere"}},
    )
    write_theme(tmp_path / "conf" / "theme", {"pages/login.html": "{% if %}"})
    with pytest.raises(ConfigError) as info:
        load_config(conf, environ={})
    issues = [str(issue) for issue in info.value.issues]
    theme = tmp_path / "conf" / "theme"
    assert issues == [
        f"{theme}/pages/login.html:1: template syntax error: Expected an expression, got "
        "'end of statement block'",
        f"{tmp_path}/conf/sites/brand.json: theme_dir: directory not found: "
        f"{tmp_path}/conf/nowhere",
    ]
    (tmp_path / "conf" / "gateway.json").write_text(
        json.dumps({**json.loads(conf.read_text()), "theme_dir": "missing"})
    )
    with pytest.raises(ConfigError) as info:
        load_config(conf, environ={})
    assert f"{conf}: theme_dir: directory not found: {tmp_path}/conf/missing" in [
        str(issue) for issue in info.value.issues
    ]


def test_themes_are_found_by_host_and_watched(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path / "conf",
        gateway={"theme_dir": "theme"},
        sites={
            "brand": {"hosts": ["Brand.Example.test", "::1"], "theme_dir": "brand-theme"},
            "plain": {"hosts": ["localhost"]},
        },
    )
    write_theme(tmp_path / "conf" / "theme", {"pages/login.html": "a", "notes.md": "x"})
    write_theme(tmp_path / "conf" / "brand-theme", {"messages/en.json": "{}"})
    config = load_config(conf, environ={})
    assert config.gateway_theme_dir == tmp_path / "conf" / "theme"
    assert config.site_theme_dirs == {"brand": tmp_path / "conf" / "brand-theme"}
    assert config.site_for_host("brand.example.TEST:8443") == "brand"
    assert config.site_for_host("[::1]:8080") == "brand"
    assert config.site_for_host("localhost") == "plain"
    assert config.site_for_host("elsewhere.example.test") is None
    watched = watched_paths(config)
    assert tmp_path / "conf" / "theme" / "pages" / "login.html" in watched
    assert tmp_path / "conf" / "brand-theme" / "messages" / "en.json" in watched
    assert tmp_path / "conf" / "theme" / "notes.md" not in watched
    before = signature(config)
    write_theme(tmp_path / "conf" / "theme", {"mail/invitation.html": "new"})
    assert signature(config) != before
