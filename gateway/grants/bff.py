"""Sign-in through the token handler: OAuth 2.0 for Browser-Based Apps section 6.1 (the BFF),
as Curity's OAuth Agent (``/login/start``, ``/login/end``) and Duende BFF (``/bff/login``) do it.

The gateway is a confidential client that runs the authorization code flow with PKCE (S256), a
``state`` and a ``nonce`` (RFC 9700 section 2.1.1); the browser only navigates. ``begin`` makes
the authorization request and the login transaction that remembers it: sealed in a short-lived
``SameSite=Lax`` cookie of the browser that started (SECURITY-CHECKLIST item 76). ``complete``
checks the callback against that transaction (``state`` in constant time, the deadline, single
use), redeems the code as the client and verifies the ID token's nonce (items 77, 78). The
tokens then live in the session cookies only; none ever appears in a URL.

With the ``default`` provider the authorization server is this gateway's own: the browser goes
through its real ``/oauth2/authorize`` (login page, consent, SSO), and the code is redeemed by
the same use case as ``POST /oauth2/token``, with the client's secret.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from gateway.config.loader import DEFAULT_PROVIDER, LOGIN_CALLBACK
from gateway.config.model import AppConfig
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.grants.token import token_request
from gateway.oauth.errors import InvalidGrantError, InvalidRequestError
from gateway.oauth.params import Params
from gateway.oauth.rfc7636 import s256
from gateway.store import grants as grant_store
from gateway.tokens.jwt import ID_TOKEN_TYP, TokenInvalid
from gateway.tokens.seal import Sealer, b64url

TRANSACTION_PURPOSE = "cookie:__Host-GW-LOGIN"
STATE_ISSUER = "gateway:login-state"  # auth.assertion rows that make each state single-use
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
MAX_HINT = 255
# Errors an authorization server may send back that the application can act on; any other
# code reaches it as "login_failed" (the application never sees free text from the callback).
RELAYED_ERRORS = frozenset(
    {
        "access_denied",
        "login_required",
        "consent_required",
        "interaction_required",
        "account_selection_required",
        "temporarily_unavailable",
    }
)


class LoginRefused(Exception):  # noqa: N818 - a refusal, raised for the handler to render
    """A callback that cannot sign anyone in. ``reason``: ``missing`` (no transaction in this
    browser), ``forged`` (state or transaction not ours), ``expired``, ``replayed``; ``restart``
    is where the browser may start again (None when the transaction was unreadable)."""

    def __init__(self, reason: str, restart: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.restart = restart


@dataclass(frozen=True)
class Transaction:
    """What the callback needs from the request the browser was sent with."""

    state: str
    nonce: str
    verifier: str
    return_to: str
    expires: int
    client: str
    provider: str

    def seal(self, sealer: Sealer) -> str:
        return sealer.seal(json.dumps(asdict(self)).encode(), purpose=TRANSACTION_PURPOSE)

    @classmethod
    def unseal(cls, sealer: Sealer, value: str | None) -> Transaction | None:
        plain = sealer.unseal(value, purpose=TRANSACTION_PURPOSE) if value else None
        if plain is None:
            return None
        try:
            data = json.loads(plain)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_return_to(value: str | None, default: str, own_origin: str, app: AppConfig) -> str:
    """The absolute URL to send the browser to after signing in: a path of the gateway's own
    origin, or a URL under one of the app's ``javascript_origins`` (no open redirect).
    ``InvalidRequestError`` for anything else."""
    target = value or default
    if any(ord(ch) < 0x21 or ch == "\\" for ch in target) or len(target) > 2048:
        raise InvalidRequestError("return_to is not a usable URL")
    if target.startswith("/") and not target.startswith("//"):
        return own_origin + target
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise InvalidRequestError("return_to must be a path or an http(s) URL")
    allowed = {own_origin.lower(), *(o.lower() for o in app.javascript_origins)}
    if origin_of(target) not in allowed:
        raise InvalidRequestError("return_to is not an origin of this application")
    return target


def passthrough(params: Params) -> dict[str, str]:
    """``prompt``, ``login_hint`` and ``ui_locales`` as the application asked, checked."""
    chosen: dict[str, str] = {}
    prompt = params.get("prompt")
    if prompt is not None:
        values = prompt.split()
        if not values or set(values) - PROMPTS:
            raise InvalidRequestError("prompt must be none, login, consent or select_account")
        chosen["prompt"] = " ".join(values)
    for name in ("login_hint", "ui_locales"):
        value = params.get(name)
        if value is not None:
            if len(value) > MAX_HINT or any(not 0x20 <= ord(ch) <= 0x7E for ch in value):
                raise InvalidRequestError(f"{name} is not usable")
            chosen[name] = value
    return chosen


def begin(ctx: Context, params: Params) -> tuple[str, Transaction]:
    """The authorization request to send the browser to, and its transaction."""
    login = ctx.settings.login
    app = ctx.config.login_app()
    if login is None or app is None:
        raise InvalidRequestError("sign-in through the token handler is not configured")
    return_to = check_return_to(params.get("return_to"), login.return_to, ctx.own_origin, app)
    extra = passthrough(params)
    transaction = Transaction(
        state=b64url(secrets.token_bytes(32)),
        nonce=b64url(secrets.token_bytes(24)),
        verifier=b64url(secrets.token_bytes(48)),
        return_to=return_to,
        expires=ctx.now + login.transaction_ttl,
        client=app.client_id,
        provider=login.provider,
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": ctx.endpoint(LOGIN_CALLBACK),
            "scope": " ".join(app.scopes),
            "state": transaction.state,
            "nonce": transaction.nonce,
            "code_challenge": s256(transaction.verifier),
            "code_challenge_method": "S256",
            **extra,
        }
    )
    return f"{ctx.endpoint('/oauth2/authorize')}?{query}", transaction


def restart_url(ctx: Context, transaction: Transaction) -> str:
    return f"{ctx.endpoint('/login/start')}?{urlencode({'return_to': transaction.return_to})}"


@dataclass(frozen=True)
class Callback:
    """What the authorization server sent back: a code, or an error the application learns."""

    transaction: Transaction
    code: str | None
    error: str | None


async def check_callback(ctx: Context, transaction: Transaction | None, params: Params) -> Callback:
    """The callback matches the transaction this browser started, in time, and for the first
    time (SECURITY-CHECKLIST item 78); ``LoginRefused`` otherwise."""
    if transaction is None:
        raise LoginRefused("missing")
    restart = restart_url(ctx, transaction)
    state = params.get("state") or ""
    if not secrets.compare_digest(state.encode(), transaction.state.encode()):
        raise LoginRefused("forged", restart)
    if transaction.expires < ctx.now:
        raise LoginRefused("expired", restart)
    try:
        await grant_store.assertion_use(
            ctx.db,
            STATE_ISSUER,
            hashlib.sha256(state.encode()).hexdigest(),
            datetime.fromtimestamp(transaction.expires, UTC),
        )
    except InvalidGrantError:
        raise LoginRefused("replayed", restart) from None
    error = params.get("error")
    if error is not None:
        return Callback(transaction, None, error if error in RELAYED_ERRORS else "login_failed")
    code = params.get("code")
    if code is None:
        return Callback(transaction, None, "login_failed")
    return Callback(transaction, code, None)


async def redeem_own(ctx: Context, callback: Callback) -> TokenResult:
    """Redeem the code at this gateway's own authorization server, as the confidential client,
    through the token endpoint's use case; then check the ID token is this transaction's."""
    transaction = callback.transaction
    client = ctx.config.client(transaction.client)
    if client is None or client.config.client_secret is None or callback.code is None:
        raise InvalidGrantError("the login client is not configured")
    params = Params(
        [
            ("grant_type", "authorization_code"),
            ("code", callback.code),
            ("redirect_uri", ctx.endpoint(LOGIN_CALLBACK)),
            ("code_verifier", transaction.verifier),
            ("client_id", client.client_id),
            ("client_secret", client.config.client_secret.get_secret_value()),
        ],
        lenient=frozenset({"code"}),
    )
    _, result = await token_request(ctx, params, None)
    if result.id_token is not None:
        _check_nonce(ctx, result.id_token, client.client_id, transaction.nonce)
    return result


def _check_nonce(ctx: Context, id_token: str, client_id: str, nonce: str) -> None:
    try:
        claims: dict[str, Any] = ctx.verifier().verify(
            id_token, typ=ID_TOKEN_TYP, audience=client_id
        )
    except TokenInvalid as exc:
        raise InvalidGrantError(f"the ID token is not valid: {exc.reason}") from None
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not secrets.compare_digest(presented, nonce):
        raise InvalidGrantError("the ID token is not this sign-in's (nonce)")


def is_own(transaction: Transaction) -> bool:
    return transaction.provider == DEFAULT_PROVIDER
