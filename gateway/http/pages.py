"""The built-in pages: login, consent, error, logout. Plain HTML forms, no JavaScript, in English or
Russian by ``Accept-Language``. Every page forbids framing (RFC 9700 4.16), is never cached, and
sends its referrer to the gateway itself only (``same-origin``: never to another site, RFC 9700
4.2.4, while the browser still puts the real ``Origin`` on the page's own form POSTs); every
reflected value is HTML-escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from aiohttp import hdrs, web

TEXT = {
    "en": {
        "title": "Sign in",
        "heading": "Sign in to continue to {client}",
        "username": "User name or email",
        "password": "Password",
        "submit": "Sign in",
        "wrong": "The user name or password is wrong.",
        "throttled": "Too many attempts. Try again in {seconds} seconds.",
        "consent_title": "Allow access",
        "consent_heading": "{client} asks for access to your account",
        "consent_scopes": "It will be able to use:",
        "allow": "Allow",
        "deny": "Deny",
        "error_title": "Sign-in error",
        "error_heading": "The request cannot be completed",
        "logout_title": "Sign out",
        "logout_heading": "Sign out of all applications?",
        "logout_submit": "Sign out",
        "signed_out": "You are signed out.",
        "external": "Sign in with {provider}",
        "external_failed": "Signing in with {provider} did not work. Try again or use a password.",
        "external_link": (
            "Sign in with your password once to link your {provider} account ({account})."
        ),
        "external_denied": "This {provider} account cannot be used to sign in here.",
        "refused_title": "Sign-in interrupted",
        "refused_forged": (
            "This form could not be read: it was changed, or it comes from an older version of "
            "the page."
        ),
        "refused_foreign": (
            "This form was opened in another browser, or your browser did not send this site's "
            "cookies. Allow cookies for this site and try again."
        ),
        "refused_cross_origin": "This form was sent from another web site, so it was ignored.",
        "refused_expired": "This page was open too long and has expired.",
        "refused_session_changed": (
            "You signed in or out in another window since this page was opened."
        ),
        "refused_missing": (
            "This sign-in was started in another browser, or your browser did not send this "
            "site's cookies. Allow cookies for this site and sign in again."
        ),
        "refused_replayed": "This sign-in has been completed already.",
        "refused_other_sign_in": (
            "This answer is not for the sign-in this browser is waiting for: another tab started "
            "a newer one, or the link is old. Finish signing in there, or start again."
        ),
        "login_failed": "Signing in did not work: {reason}.",
        "refused_restart": "Start again",
        "refused_back": "Go back to the application and sign in again.",
        "error_help": (
            "Go back to the application and try again. If this keeps happening, tell the "
            "application's developers what this page says."
        ),
        "unavailable_title": "Temporarily unavailable",
        "unavailable": (
            "Signing in is not possible at the moment. Nothing was lost: try again in a minute."
        ),
    },
    "ru": {
        "title": "Вход",
        "heading": "Войдите, чтобы продолжить в {client}",
        "username": "Имя пользователя или email",
        "password": "Пароль",
        "submit": "Войти",
        "wrong": "Неверное имя пользователя или пароль.",
        "throttled": "Слишком много попыток. Повторите через {seconds} сек.",
        "consent_title": "Разрешить доступ",
        "consent_heading": "{client} запрашивает доступ к вашей учётной записи",
        "consent_scopes": "Приложение получит:",
        "allow": "Разрешить",
        "deny": "Отклонить",
        "error_title": "Ошибка входа",
        "error_heading": "Запрос не может быть выполнен",
        "logout_title": "Выход",
        "logout_heading": "Выйти из всех приложений?",
        "logout_submit": "Выйти",
        "signed_out": "Вы вышли из системы.",
        "external": "Войти через {provider}",
        "external_failed": (
            "Вход через {provider} не удался. Попробуйте снова или войдите по паролю."
        ),
        "external_link": (
            "Войдите по паролю один раз, чтобы привязать учётную запись {provider} ({account})."
        ),
        "external_denied": "Эту учётную запись {provider} нельзя использовать для входа.",
        "refused_title": "Вход прерван",
        "refused_forged": (
            "Эту форму не удалось прочитать: она была изменена или осталась от старой версии "
            "страницы."
        ),
        "refused_foreign": (
            "Эта форма была открыта в другом браузере, или браузер не отправил cookie этого "
            "сайта. Разрешите cookie для этого сайта и попробуйте снова."
        ),
        "refused_cross_origin": "Эту форму отправил другой сайт, поэтому она не принята.",
        "refused_expired": "Страница была открыта слишком долго, и срок её действия истёк.",
        "refused_session_changed": (
            "После открытия этой страницы вы вошли или вышли в другом окне."
        ),
        "refused_missing": (
            "Этот вход начат в другом браузере, или браузер не отправил cookie этого сайта. "
            "Разрешите cookie для этого сайта и войдите снова."
        ),
        "refused_replayed": "Этот вход уже завершён.",
        "refused_other_sign_in": (
            "Этот ответ не относится ко входу, которого ждёт браузер: в другой вкладке начат "
            "более новый вход, или ссылка устарела. Завершите вход там или начните заново."
        ),
        "login_failed": "Войти не удалось: {reason}.",
        "refused_restart": "Начать заново",
        "refused_back": "Вернитесь в приложение и войдите снова.",
        "error_help": (
            "Вернитесь в приложение и попробуйте снова. Если ошибка повторяется, сообщите "
            "разработчикам приложения, что написано на этой странице."
        ),
        "unavailable_title": "Временно недоступно",
        "unavailable": (
            "Войти сейчас невозможно. Ничего не потеряно: попробуйте снова через минуту."
        ),
    },
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}
STYLE = (
    "body{font:16px system-ui,sans-serif;background:#f4f5f7;margin:0}"
    "main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;"
    "box-shadow:0 1px 4px #0002}h1{font-size:1.3rem}label{display:block;margin:.8rem 0 .2rem}"
    "input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}"
    "button{margin-top:1.2rem;padding:.6rem 1.2rem}.error{color:#b00020}"
    "a.button{display:inline-block;margin-top:1.2rem;padding:.6rem 1.2rem;border:1px solid;"
    "border-radius:4px;text-decoration:none}"
)


def language(request: web.BaseRequest) -> str:
    """``ru`` or ``en``, whichever ``Accept-Language`` prefers (English by default)."""
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
        if lang in TEXT and q > best_q:
            best, best_q = lang, q
    return best


def _page(lang: str, title: str, body: str, status: int) -> web.Response:
    html = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def _hidden(fields: dict[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
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
) -> web.Response:
    """The sign-in form; ``providers`` are (name, action) pairs, one button each, posting the same
    hidden fields to sign in with that external provider instead."""
    lang = language(request)
    t = TEXT[lang]
    error = (
        f'<p class="error" role="alert">{escape(t[message].format(**(fmt or {})))}</p>'
        if message
        else ""
    )
    if notice:
        error += f'<p class="notice">{escape(t[notice].format(**(fmt or {})))}</p>'
    body = (
        f"<h1>{escape(t['heading'].format(client=client_name))}</h1>{error}"
        f'<form method="post" action="{escape(action)}">{_hidden(hidden)}'
        f'<label for="username">{t["username"]}</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" '
        f'autocomplete="username" required autofocus>'
        f'<label for="password">{t["password"]}</label>'
        f'<input type="password" id="password" name="password" autocomplete="current-password" '
        f"required>"
        f'<button type="submit">{t["submit"]}</button></form>'
    )
    for name, provider_action in providers:
        body += (
            f'<form method="post" action="{escape(provider_action)}">{_hidden(hidden)}'
            f'<button type="submit">{escape(t["external"].format(provider=name))}</button></form>'
        )
    return _page(lang, t["title"], body, status)


def consent_page(
    request: web.BaseRequest,
    *,
    client_name: str,
    action: str,
    hidden: dict[str, str],
    scope: tuple[str, ...],
) -> web.Response:
    lang = language(request)
    t = TEXT[lang]
    items = "".join(f"<li>{escape(s)}</li>" for s in scope)
    body = (
        f"<h1>{escape(t['consent_heading'].format(client=client_name))}</h1>"
        f"<p>{t['consent_scopes']}</p><ul>{items}</ul>"
        f'<form method="post" action="{escape(action)}">{_hidden(hidden)}'
        f'<button type="submit" name="decision" value="allow">{t["allow"]}</button> '
        f'<button type="submit" name="decision" value="deny">{t["deny"]}</button></form>'
    )
    return _page(lang, t["consent_title"], body, 200)


def error_page(
    request: web.BaseRequest, error: str, description: str, status: int = 400
) -> web.Response:
    lang = language(request)
    t = TEXT[lang]
    body = (
        f"<h1>{t['error_heading']}</h1>"
        f'<p class="error" role="alert"><code>{escape(error)}</code></p>'
        f"<p>{escape(description)}</p><p>{t['error_help']}</p>"
    )
    return _page(lang, t["error_title"], body, status)


def refused_page(
    request: web.BaseRequest, reason: str, *, restart: str | None = None, status: int = 403
) -> web.Response:
    """A form that was not accepted (``forms.Refusal``): what happened and how to go on; with
    ``restart``, a link that starts the same request again in this browser."""
    lang = language(request)
    t = TEXT[lang]
    action = (
        f'<a class="button" id="restart" href="{escape(restart)}">{t["refused_restart"]}</a>'
        if restart
        else f"<p>{t['refused_back']}</p>"
    )
    body = (
        f"<h1>{t['refused_title']}</h1>"
        f'<p class="error" role="alert">{t["refused_" + reason]}</p>{action}'
    )
    return _page(lang, t["refused_title"], body, status)


def login_failed_page(
    request: web.BaseRequest, reason: str, *, restart: str, status: int = 400
) -> web.Response:
    """The token handler could not complete a sign-in (the code was refused, the provider did
    not answer): what happened, and a link that starts again."""
    lang = language(request)
    t = TEXT[lang]
    body = (
        f"<h1>{t['refused_title']}</h1>"
        f'<p class="error" role="alert">{escape(t["login_failed"].format(reason=reason))}</p>'
        f'<a class="button" id="restart" href="{escape(restart)}">{t["refused_restart"]}</a>'
    )
    return _page(lang, t["refused_title"], body, status)


def message_page(request: web.BaseRequest, key: str, status: int = 200) -> web.Response:
    lang = language(request)
    t = TEXT[lang]
    return _page(lang, t["title"], f"<p>{escape(t[key])}</p>", status)


def logout_page(request: web.BaseRequest, *, action: str, hidden: dict[str, str]) -> web.Response:
    lang = language(request)
    t = TEXT[lang]
    body = (
        f"<h1>{t['logout_heading']}</h1>"
        f'<form method="post" action="{escape(action)}">{_hidden(hidden)}'
        f'<button type="submit">{t["logout_submit"]}</button></form>'
    )
    return _page(lang, t["logout_title"], body, 200)


def unavailable_page(request: web.BaseRequest, retry_after: int) -> web.Response:
    """A page a browser gets when the database does not answer (503, ``Retry-After``)."""
    lang = language(request)
    t = TEXT[lang]
    body = f'<h1>{t["unavailable_title"]}</h1><p role="alert">{t["unavailable"]}</p>'
    response = _page(lang, t["unavailable_title"], body, 503)
    response.headers[hdrs.RETRY_AFTER] = str(retry_after)
    return response
