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

import asyncio
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from gateway.config.loader import DEFAULT_PROVIDER, LOGIN_CALLBACK
from gateway.config.model import AppConfig, check_provider_url
from gateway.errors import StoreError
from gateway.grants.context import Context, ExternalCallError
from gateway.grants.federation import ExternalSignInFailed, verify_id_token
from gateway.grants.issue import TokenResult
from gateway.grants.token import token_request
from gateway.oauth.errors import InvalidGrantError, InvalidRequestError
from gateway.oauth.params import Params
from gateway.oauth.rfc7636 import s256
from gateway.store import external
from gateway.store import grants as grant_store
from gateway.store import sessions as session_store
from gateway.tokens.external import ExternalTokens, profile
from gateway.tokens.jwt import ID_TOKEN_TYP, TokenInvalid, inspect
from gateway.tokens.remote import verify_issued_token
from gateway.tokens.seal import Sealer, b64url

log = logging.getLogger(__name__)

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
    browser), ``other_sign_in`` (the state is not this transaction's: another tab's, an old
    link's or a forger's), ``expired``, ``replayed``; ``restart``
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


async def begin(ctx: Context, params: Params) -> tuple[str, Transaction]:
    """The authorization request to send the browser to, and its transaction.
    ``ExternalSignInFailed`` when an external provider's metadata cannot be had."""
    login = ctx.settings.login
    app = ctx.config.login_app()
    if login is None or app is None:
        raise InvalidRequestError("sign-in through the token handler is not configured")
    return_to = check_return_to(params.get("return_to"), login.return_to, ctx.own_origin, app)
    # Third-party initiated login (OIDC Core 4): iss names the provider the sign-in starts at.
    iss = params.get("iss")
    expected = ctx.issuer if login.provider == DEFAULT_PROVIDER else app.issuers[0]
    if iss is not None and iss != expected:
        raise InvalidRequestError("iss is not the provider this token handler signs in with")
    extra = passthrough(params)
    endpoint = ctx.endpoint("/oauth2/authorize")
    if login.provider != DEFAULT_PROVIDER:
        endpoint = (await external_provider(ctx, app)).authorization_endpoint
        if "offline_access" in app.scopes and "prompt" not in extra:
            # OIDC Core 11: a refresh token for offline access is asked for with consent.
            extra["prompt"] = "consent"
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
    separator = "&" if "?" in endpoint else "?"
    return f"{endpoint}{separator}{query}", transaction


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
        raise LoginRefused("other_sign_in", restart)
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


async def redeem(ctx: Context, callback: Callback) -> TokenResult | ExternalTokens:
    """The tokens of a callback: from this gateway's own authorization server or from the
    external provider. ``OAuthError`` or ``ExternalSignInFailed`` when none can be had."""
    if is_own(callback.transaction):
        return await redeem_own(ctx, callback)
    return await redeem_external(ctx, callback)


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


# --- an external OpenID provider (login.provider names a provider file) --------------------

REFRESH_WAIT = 10  # seconds another request's refresh at the provider is waited for
# Seconds after which an unanswered claim is taken over (its holder died): longer than the
# holder's own budget (discovery, token call, key fetch: ExternalCall's timeout each).
CLAIM_TAKEOVER = 30
STALE_SUCCESSOR = 5  # seconds: a stored successor whose access token expires sooner is spent
EXTERNAL_KEEP = 86400  # seconds a used provider refresh token is remembered (lost responses)
DEFAULT_EXPIRES_IN = 300  # an access token whose lifetime the provider does not say


@dataclass(frozen=True)
class ExternalProvider:
    """The provider's endpoints, from its app's explicit URLs or its discovery document."""

    name: str
    issuer: str
    client_id: str
    client_secret: str
    auth_method: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    revocation_endpoint: str | None = None


async def external_provider(ctx: Context, app: AppConfig) -> ExternalProvider:
    """The login app's provider, described by its file and, for what it leaves out, by its
    discovery document. ``ExternalSignInFailed`` when that cannot be had."""
    login = ctx.settings.login
    assert login is not None
    assert app.client_secret is not None
    issuer = app.issuers[0]
    metadata: dict[str, Any] = {}
    if not (app.auth_uri and app.token_uri and app.keys_url):
        try:
            metadata = await ctx.authority.discover(issuer)
        except ExternalCallError as exc:
            raise ExternalSignInFailed(f"the provider cannot be reached ({exc})") from None
    urls: dict[str, str | None] = {
        "authorization_endpoint": app.auth_uri or _url(metadata, "authorization_endpoint"),
        "token_endpoint": app.token_uri or _url(metadata, "token_endpoint"),
        "jwks_uri": app.keys_url or _url(metadata, "jwks_uri"),
    }
    missing = [name for name, value in urls.items() if value is None]
    if missing:
        raise ExternalSignInFailed(f"the provider names no usable {', '.join(missing)}")
    method = app.token_endpoint_auth_method or "client_secret_basic"
    return ExternalProvider(
        name=login.provider,
        issuer=issuer,
        client_id=app.client_id,
        client_secret=app.client_secret.get_secret_value(),
        auth_method=method,
        authorization_endpoint=str(urls["authorization_endpoint"]),
        token_endpoint=str(urls["token_endpoint"]),
        jwks_uri=str(urls["jwks_uri"]),
        revocation_endpoint=app.revocation_uri or _url(metadata, "revocation_endpoint"),
    )


def _url(metadata: Mapping[str, Any], name: str) -> str | None:
    """An endpoint of a discovery document: https (http only on loopback), else None."""
    value = metadata.get(name)
    if not isinstance(value, str):
        return None
    try:
        return check_provider_url(value)
    except ValueError:
        return None


async def _token_call(
    ctx: Context, provider: ExternalProvider, form: dict[str, str]
) -> dict[str, Any]:
    """POST to the provider's token endpoint as the confidential client."""
    if provider.auth_method == "client_secret_post":
        form = {**form, "client_id": provider.client_id, "client_secret": provider.client_secret}
        return await ctx.authority.external_call(provider.token_endpoint, form)
    return await ctx.authority.external_call(
        provider.token_endpoint, form, auth=(provider.client_id, provider.client_secret)
    )


async def redeem_external(ctx: Context, callback: Callback) -> ExternalTokens:
    """Redeem the code at the external provider; verify its ID token (signature against its
    keys, issuer, audience, expiry, nonce) and its access token when that is a JWT."""
    app = ctx.config.login_app()
    if app is None or callback.code is None:
        raise ExternalSignInFailed("the login client is not configured")
    provider = await external_provider(ctx, app)
    transaction = callback.transaction
    try:
        answer = await _token_call(
            ctx,
            provider,
            {
                "grant_type": "authorization_code",
                "code": callback.code,
                "redirect_uri": ctx.endpoint(LOGIN_CALLBACK),
                "code_verifier": transaction.verifier,
            },
        )
    except ExternalCallError as exc:
        raise ExternalSignInFailed(f"the provider refused the code ({exc})") from None
    id_token = answer.get("id_token")
    if not isinstance(id_token, str):
        raise ExternalSignInFailed("the provider sent no ID token")
    claims = await verify_id_token(
        ctx,
        id_token,
        keys_url=provider.jwks_uri,
        issuers=(provider.issuer,),
        client_id=provider.client_id,
        nonce=transaction.nonce,
    )
    session = uuid.uuid4()
    tokens = await _tokens(ctx, provider, answer, profile(claims), str(session), None)
    expires = await external.external_session_start(
        ctx.db,
        session,
        provider=provider.name,
        subject=str(claims["sub"]),
        ttl=ctx.settings.tokens.session_ttl,
    )
    return replace(tokens, session_expires=int(expires.timestamp()))


async def _tokens(
    ctx: Context,
    provider: ExternalProvider,
    answer: Mapping[str, Any],
    claims: Mapping[str, Any],
    session: str,
    predecessor: str | None,
    previous_refresh: str | None = None,
) -> ExternalTokens:
    """A token response of the provider, checked: a Bearer access token (a JWT one verified
    against the provider's keys), its lifetime, a refresh token if any. In a refresh
    (``previous_refresh`` set) keys that cannot be fetched do not lose the answer: it came
    straight from the provider's token endpoint over TLS (OIDC Core 3.1.3.7 (6)), and the
    access token counts for its ``expires_in``."""
    access = answer.get("access_token")
    if not isinstance(access, str) or not access or len(access) > 8192:
        raise ExternalSignInFailed("the provider sent no usable access token")
    if str(answer.get("token_type", "")).lower() != "bearer":
        raise ExternalSignInFailed("the provider's access token is not a Bearer token")
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    expires_at = ctx.now + min(expires_in, 86400)
    try:
        jwt_claims = await _verified_access_token(ctx, provider, access)
    except ExternalCallError as exc:
        if previous_refresh is None:
            raise ExternalSignInFailed(f"the provider's keys cannot be fetched ({exc})") from None
        log.warning("refreshed access token kept unverified: keys unavailable (%s)", exc)
        jwt_claims = None
    if jwt_claims is not None:
        expires_at = min(expires_at, int(jwt_claims["exp"]))
        if str(jwt_claims.get("sub", claims.get("sub"))) != str(claims.get("sub")):
            raise ExternalSignInFailed("the access token is someone else's (sub)")
    refresh = answer.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or len(refresh) > 4096):
        raise ExternalSignInFailed("the provider's refresh token is not usable")
    scope = answer.get("scope")
    return ExternalTokens(
        access_token=access,
        expires_at=expires_at,
        expires_in=max(expires_at - ctx.now, 1),
        session=session,
        provider=provider.name,
        client_id=provider.client_id,
        claims=dict(claims),
        scope=scope if isinstance(scope, str) else "",
        refresh_token=refresh or previous_refresh,
        predecessor=predecessor,
    )


async def _verified_access_token(
    ctx: Context, provider: ExternalProvider, token: str
) -> dict[str, Any] | None:
    """The claims of a JWT access token, verified against the provider's keys (RFC 9068:
    signature, ``iss``, ``exp``; the audience is the API's to check); None for an opaque one."""
    try:
        header, _ = inspect(token)
    except TokenInvalid:
        return None  # opaque: trusted for its expires_in, as the provider issued it to us
    fetch = ctx.authority.remote_keys_at
    if fetch is None:
        raise ExternalSignInFailed("the provider's keys cannot be fetched")
    kid = header.get("kid")
    keys = await fetch(provider.jwks_uri, kid if isinstance(kid, str) else None, must_answer=True)
    try:
        return verify_issued_token(token, keys, issuers=(provider.issuer,), now=ctx.now)
    except TokenInvalid as exc:
        raise ExternalSignInFailed(f"the access token is not valid: {exc.reason}") from None


@dataclass(frozen=True)
class ExternalRefresh:
    """What a browser's ``__Secure-RT`` holds for an external provider's session."""

    token: str
    session_id: str
    source: str
    claims: Mapping[str, Any]


async def refresh_external(ctx: Context, cookie: ExternalRefresh, depth: int = 0) -> ExternalTokens:
    """A transparent refresh at the provider, under the same rules as the gateway's own:
    single-flight across replicas, the same successor within the grace, a lost response
    recovered, a replay after a delivered successor refused (sql/functions/065_...).

    ``InvalidGrantError``: sign in again. ``ExternalCallError``: the provider could not be
    asked (the session is kept)."""
    app = ctx.config.login_app()
    if app is None or cookie.source != (ctx.settings.login and ctx.settings.login.provider):
        raise InvalidGrantError("the provider of this session is no longer configured")
    try:
        session = uuid.UUID(cookie.session_id)
    except ValueError:
        raise InvalidGrantError("the session is not readable") from None
    digest = hashlib.sha256(cookie.token.encode()).digest()
    for _ in range(int(REFRESH_WAIT / 0.1)):
        claim = await external.external_refresh_claim(
            ctx.db, digest, session, wait=CLAIM_TAKEOVER, keep=EXTERNAL_KEEP
        )
        ends = int(claim.session_expires.timestamp()) if claim.session_expires else None
        if claim.outcome == "claimed":
            break
        if claim.outcome == "done" and claim.successor_sealed is not None:
            sealed = claim.successor_sealed
            plain = ctx.authority.master.unseal(sealed, purpose=_successor_purpose(digest))
            tokens = ExternalTokens.from_json(plain.decode()) if plain else None
            if tokens is None or tokens.session != cookie.session_id:
                raise InvalidGrantError("the stored successor is not this session's")
            fresh = tokens.expires_at > ctx.now + STALE_SUCCESSOR
            if fresh or depth > 0 or tokens.refresh_token is None:
                return replace(tokens, session_expires=ends)
            # The stored answer's access token is spent (a response lost long ago): go on from
            # its refresh token, or, when the provider kept the same one, refresh again.
            if tokens.refresh_token != cookie.token:
                successor = replace(cookie, token=tokens.refresh_token)
                return await refresh_external(ctx, successor, depth=1)
            await external.external_refresh_delivered(ctx.db, digest)  # drops the unrotated row
            continue
        if claim.outcome in ("replayed", "refused", "ended"):
            raise InvalidGrantError(f"the refresh token was {claim.outcome}")
        await asyncio.sleep(0.1)  # another request is refreshing it
    else:
        raise ExternalCallError("another refresh of this session did not finish")
    provider = await _provider_or_release(ctx, app, digest)
    try:
        answer = await _token_call(
            ctx, provider, {"grant_type": "refresh_token", "refresh_token": cookie.token}
        )
    except ExternalCallError as exc:
        if exc.error is not None:  # the provider answered: it refuses this token
            await external.external_refresh_refused(ctx.db, digest)
            raise InvalidGrantError(f"the provider refused the refresh ({exc.error})") from None
        await external.external_refresh_release(ctx.db, digest)
        raise
    claims: Mapping[str, Any] = cookie.claims
    id_token = answer.get("id_token")
    try:
        if isinstance(id_token, str):
            claims = await _refreshed_claims(ctx, provider, id_token, claims)
        tokens = await _tokens(
            ctx, provider, answer, claims, cookie.session_id, digest.hex(), cookie.token
        )
    except ExternalSignInFailed:
        await external.external_refresh_refused(ctx.db, digest)
        raise InvalidGrantError("the provider's answer to the refresh is not usable") from None
    tokens = replace(tokens, session_expires=ends)
    sealed = ctx.authority.master.seal(
        tokens.to_json().encode(), purpose=_successor_purpose(digest)
    )
    try:
        await external.external_refresh_store(
            ctx.db,
            digest,
            sealed,
            grace=ctx.settings.tokens.refresh_grace,
            rotated=tokens.refresh_token != cookie.token,
        )
    except StoreError as exc:
        # The provider has answered (and may have rotated the token): this browser keeps the
        # answer; only the recovery of a lost response is not possible for it.
        log.warning("the successor of an external refresh could not be stored: %s", exc)
    return tokens


async def _refreshed_claims(
    ctx: Context, provider: ExternalProvider, id_token: str, claims: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The user's claims after a refresh that returned an ID token (OIDC Core 12.2): the same
    ``sub``; kept as they were when the provider's keys cannot be fetched just now."""
    fetch = ctx.authority.remote_keys_at
    try:
        kid = inspect(id_token)[0].get("kid")
        if fetch is not None:  # fetched now, so that unavailable keys can be told apart
            await fetch(provider.jwks_uri, kid if isinstance(kid, str) else None, must_answer=True)
    except TokenInvalid:
        raise ExternalSignInFailed("the refreshed ID token is not a JWT") from None
    except ExternalCallError as exc:
        log.warning("refreshed ID token not checked: the provider's keys unavailable (%s)", exc)
        return claims
    fresh = await verify_id_token(
        ctx,
        id_token,
        keys_url=provider.jwks_uri,
        issuers=(provider.issuer,),
        client_id=provider.client_id,
        nonce=None,
    )
    if fresh.get("sub") != claims.get("sub"):
        raise ExternalSignInFailed("the refreshed ID token is someone else's")
    return profile(fresh)


async def _provider_or_release(ctx: Context, app: AppConfig, digest: bytes) -> ExternalProvider:
    try:
        return await external_provider(ctx, app)
    except ExternalSignInFailed as exc:
        await external.external_refresh_release(ctx.db, digest)
        raise ExternalCallError(str(exc)) from None


def _successor_purpose(digest: bytes) -> str:
    return f"external-refresh:{digest.hex()}"


async def mark_external_delivered(ctx: Context, predecessor: str) -> None:
    """A browser presented the access token that the refresh of ``predecessor`` (hex SHA-256)
    produced: that response arrived."""
    try:
        digest = bytes.fromhex(predecessor)
    except ValueError:
        return
    await external.external_refresh_delivered(ctx.db, digest)


async def end_session(ctx: Context, session: str) -> None:
    """End an external session that was started but cannot be used."""
    await session_store.session_revoke(ctx.db, uuid.UUID(session), "unusable")


async def end_external(ctx: Context, refresh_token: str, source: str) -> None:
    """Sign-out of an external provider's session: its refresh token revoked at the provider
    (RFC 7009) when it has a revocation endpoint. Best effort: the cookies go either way. A
    token of a provider that is no longer the configured one is not sent anywhere."""
    app = ctx.config.login_app()
    login = ctx.settings.login
    if app is None or login is None or source != login.provider:
        return
    try:
        provider = await external_provider(ctx, app)
        if provider.revocation_endpoint is None:
            return
        form = {"token": refresh_token, "token_type_hint": "refresh_token"}
        if provider.auth_method == "client_secret_post":
            form |= {"client_id": provider.client_id, "client_secret": provider.client_secret}
            await ctx.authority.external_call(provider.revocation_endpoint, form, body_ignored=True)
        else:
            await ctx.authority.external_call(
                provider.revocation_endpoint,
                form,
                auth=(provider.client_id, provider.client_secret),
                body_ignored=True,
            )
    except (ExternalSignInFailed, ExternalCallError) as exc:
        log.warning("could not revoke the refresh token at the provider: %s", exc)
