"""The built-in pages: login, consent, error, logout. Plain HTML forms, no JavaScript, in English or
Russian (or a language a theme adds) by ``Accept-Language``. Every page forbids framing (RFC 9700
4.16), is never cached, and sends its referrer to the gateway itself only (``same-origin``: never
to another site, RFC 9700 4.2.4, while the browser still puts the real ``Origin`` on the page's
own form POSTs); every reflected value is HTML-escaped (Jinja2 autoescaping).

Each page is a template of the theme (``gateway/themes/default/pages/``) that the gateway's or the
request's site's ``theme_dir`` may override; ``render`` is the entry point for new pages. The
themes of a configuration are compiled once per configuration snapshot (``THEMES``), never per
request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from aiohttp import hdrs, web

from gateway.config.holder import PerConfig
from gateway.config.loader import Config
from gateway.keys import CONFIG
from gateway.themes import Theme, Themes
from gateway.themes.theme import Rendering, Texts

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}
# A page template's name under the theme's pages/: autoescaped HTML, no way out of the directory.
PAGE_NAME = re.compile(r"^(?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_-]+\.html$")
RESERVED = frozenset({"t", "lang", "title"})

THEMES = web.AppKey("themes", PerConfig[Themes])


def configured_themes(config: Config) -> Themes:
    """The themes of one configuration snapshot."""
    return Themes(config.gateway_theme_dir, config.site_theme_dirs)


def setup_themes(app: web.Application) -> None:
    """The application's themes, rebuilt with each configuration snapshot; compiled at start-up
    (a broken built-in template stops the start, not a request)."""
    app[THEMES] = PerConfig(configured_themes)

    async def compile_now(app: web.Application) -> None:
        app[THEMES].get(app[CONFIG].current)

    app.on_startup.append(compile_now)


def theme_of(request: web.BaseRequest) -> Theme:
    """The theme for this request: its site's (by ``Host``), else the gateway's. A request
    outside the gateway application (none today) gets the built-in theme."""
    if isinstance(request, web.Request) and THEMES in request.config_dict:
        config = request.config_dict[CONFIG].current
        themes = request.config_dict[THEMES].get(config)
        return themes.theme(config.site_for_host(request.host or ""))
    return Themes().builtin


def language(request: web.BaseRequest) -> str:
    """``ru`` or ``en`` (or a language the theme adds), whichever ``Accept-Language`` prefers
    (English by default)."""
    return _language(request, theme_of(request).languages)


def texts(request: web.BaseRequest) -> Texts:
    """The texts of the request's theme in its language, for a message a handler puts on a
    page itself."""
    theme = theme_of(request)
    lang = _language(request, theme.languages)
    rendering = theme.override or theme.builtin
    return rendering.texts(rendering.language(lang))


def _language(request: web.BaseRequest, available: frozenset[str]) -> str:
    best, best_q = "en", -1.0
    for part in request.headers.get(hdrs.ACCEPT_LANGUAGE, "").split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower()[:2]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in available and q > best_q:
            best, best_q = lang, q
    return best


def render(
    request: web.BaseRequest,
    template: str,
    *,
    title_key: str,
    status: int = 200,
    **context: object,
) -> web.Response:
    """Page ``template`` (a name under the theme's ``pages/``, e.g. ``register.html``) with the
    page headers; its context is ``t`` (the texts of the chosen language), ``lang``, ``title``
    (``t[title_key]``) and ``context``. Values are autoescaped."""
    reserved = RESERVED & context.keys()
    if reserved:
        raise TypeError(f"reserved template variables: {', '.join(sorted(reserved))}")
    return _respond(request, template, title_key, status, lambda _t: context)


def _respond(
    request: web.BaseRequest,
    template: str,
    title_key: str,
    status: int,
    build: Callable[[Texts], Mapping[str, object]],
) -> web.Response:
    """Render ``template`` with the context ``build`` makes from the texts in use (the theme's,
    or the built-in ones when the theme's template fails and the built-in one is used)."""
    if not PAGE_NAME.match(template):
        raise ValueError(f"not a page template name: {template!r}")
    theme = theme_of(request)
    lang = _language(request, theme.languages)
    name = f"pages/{template}"

    def page(rendering: Rendering) -> str:
        used = rendering.language(lang)
        t = rendering.texts(used)
        values = {**build(t), "t": t, "lang": used, "title": t[title_key]}
        return rendering.render(name, values)

    return web.Response(
        text=theme.attempt(page, what=name),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


def login_page(
    request: web.BaseRequest,
    *,
    client_name: str,
    action: str,
    hidden: dict[str, str],
    username: str = "",
    message: str | None = None,
    status: int = 200,
    providers: Sequence[tuple[str, str]] = (),
    fmt: Mapping[str, object] | None = None,
    notice: str | None = None,
    register_url: str | None = None,
    forgot_url: str | None = None,
    change_url: str | None = None,
) -> web.Response:
    """The sign-in form; ``providers`` are (name, action) pairs, one button each, posting the same
    hidden fields to sign in with that external provider instead; ``register_url`` and
    ``forgot_url``: the "Create account" and "Forgot password?" links, when the site has them;
    ``change_url``: the password step after the identifier step, where ``username`` is
    read-only and this "Not you?" link goes back to the identifier step."""
    values = dict(fmt or {})

    def build(t: Texts) -> Mapping[str, object]:
        return {
            "client_name": client_name,
            "action": action,
            "hidden": hidden,
            "username": username,
            "message": message,
            "error": t[message].format(**values) if message else None,
            "notice": notice,
            "notice_text": t[notice].format(**values) if notice else None,
            "providers": list(providers),
            "register_url": register_url,
            "forgot_url": forgot_url,
            "change_url": change_url,
        }

    return _respond(request, "login.html", "title", status, build)


def identifier_page(
    request: web.BaseRequest,
    *,
    client_name: str,
    action: str,
    hidden: dict[str, str],
    username: str = "",
    message: str | None = None,
    status: int = 200,
    providers: Sequence[tuple[str, str]] = (),
    register_url: str | None = None,
) -> web.Response:
    """The identifier step: the user name or email only, posted to ``action`` with the hidden
    fields; ``providers`` and ``register_url`` as on the sign-in form."""

    def build(t: Texts) -> Mapping[str, object]:
        return {
            "client_name": client_name,
            "action": action,
            "hidden": hidden,
            "username": username,
            "message": message,
            "error": t[message] if message else None,
            "providers": list(providers),
            "register_url": register_url,
        }

    return _respond(request, "identifier.html", "title", status, build)


def callback_page(request: web.BaseRequest, params: Sequence[tuple[str, str]]) -> web.Response:
    """The built-in ``/oauth2/callback`` page for a developer testing with that redirect URI:
    the parameters of its query (a code, or an error), each escaped."""
    context = {"params": list(params)}
    return _respond(request, "callback.html", "callback_title", 200, lambda _t: context)


def consent_page(
    request: web.BaseRequest,
    *,
    client_name: str,
    action: str,
    hidden: dict[str, str],
    scope: tuple[str, ...],
) -> web.Response:
    context = {"client_name": client_name, "action": action, "hidden": hidden, "scope": scope}
    return _respond(request, "consent.html", "consent_title", 200, lambda _t: context)


def error_page(
    request: web.BaseRequest, error: str, description: str, status: int = 400
) -> web.Response:
    context = {"error": error, "description": description}
    return _respond(request, "error.html", "error_title", status, lambda _t: context)


def refused_page(
    request: web.BaseRequest, reason: str, *, restart: str | None = None, status: int = 403
) -> web.Response:
    """A form that was not accepted (``forms.Refusal``): what happened and how to go on; with
    ``restart``, a link that starts the same request again in this browser."""

    def build(t: Texts) -> Mapping[str, object]:
        return {"reason": reason, "reason_text": t["refused_" + reason], "restart": restart}

    return _respond(request, "refused.html", "refused_title", status, build)


def login_failed_page(
    request: web.BaseRequest, reason: str, *, restart: str, status: int = 400
) -> web.Response:
    """The token handler could not complete a sign-in (the code was refused, the provider did
    not answer): what happened, and a link that starts again."""

    def build(t: Texts) -> Mapping[str, object]:
        text = t["login_failed"].format(reason=reason)
        return {"reason": reason, "reason_text": text, "restart": restart}

    return _respond(request, "login_failed.html", "refused_title", status, build)


def message_page(request: web.BaseRequest, key: str, status: int = 200) -> web.Response:
    return _respond(
        request, "message.html", "title", status, lambda t: {"key": key, "text": t[key]}
    )


def logout_page(request: web.BaseRequest, *, action: str, hidden: dict[str, str]) -> web.Response:
    context = {"action": action, "hidden": hidden}
    return _respond(request, "logout.html", "logout_title", 200, lambda _t: context)


def unavailable_page(request: web.BaseRequest, retry_after: int) -> web.Response:
    """A page a browser gets when the database does not answer (503, ``Retry-After``)."""
    context = {"retry_after": retry_after}
    response = _respond(request, "unavailable.html", "unavailable_title", 503, lambda _t: context)
    response.headers[hdrs.RETRY_AFTER] = str(retry_after)
    return response
