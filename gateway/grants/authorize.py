"""The authorization endpoint's decision (RFC 6749 section 4.1, 4.2; OIDC Core 3.1.2).

validated request + browser session?
  no session, or prompt=login, or max_age exceeded -> prompt=none ? login_required : login page
  client asks for consent and the scope is not consented -> prompt=none ? consent_required
                                                            : consent page
  otherwise -> issue: a code (query), or tokens / code + tokens (fragment), with state and iss
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.loader import Client
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.oauth.errors import ConsentRequiredError, LoginRequiredError
from gateway.oauth.rfc6749 import AuthorizationRequest, RedirectError, build_redirect, format_scope
from gateway.store import grants as grant_store
from gateway.store import sessions as store
from gateway.store.errors import SessionEndedError
from gateway.store.sessions import Session

LOGIN_PROMPTS = frozenset({"login", "signin", "secret", "select_account"})


@dataclass(frozen=True)
class Interaction:
    """The browser must see a page first: ``login`` or ``consent``."""

    page: str


async def decide(
    ctx: Context,
    client: Client,
    request: AuthorizationRequest,
    session: Session | None,
    *,
    fresh_login: bool = False,
    consented: bool = False,
) -> str | Interaction:
    """Where to send the browser (a redirect to the client), or which page to show first."""

    def refuse(error: LoginRequiredError | ConsentRequiredError) -> RedirectError:
        return RedirectError(error, request.redirect_uri, request.state, request.fragment)

    if session is None or (not fresh_login and _must_login(request, session, ctx.now)):
        if "none" in request.prompt:
            raise refuse(LoginRequiredError("the user is not signed in"))
        return Interaction("login")
    if client.config.consent and not consented:
        granted = await store.consent_get(ctx.db, session.user_id, client.client_id)
        if "consent" in request.prompt or not set(request.scope) <= set(granted):
            if "none" in request.prompt:
                raise refuse(ConsentRequiredError("the user has not consented"))
            return Interaction("consent")
    if consented:
        await store.consent_grant(ctx.db, session.user_id, client.client_id, request.scope)
    try:
        return await _issue(ctx, client, request, session)
    except SessionEndedError:  # ended between the lookup and the code: sign in again
        raise refuse(LoginRequiredError("the user is not signed in")) from None


def _must_login(request: AuthorizationRequest, session: Session, now: float) -> bool:
    if request.prompt & LOGIN_PROMPTS:
        return True
    if request.max_age is not None:
        return now - session.auth_time.timestamp() > request.max_age
    return False


async def _issue(
    ctx: Context, client: Client, request: AuthorizationRequest, session: Session
) -> str:
    params: dict[str, str] = {}
    code = None
    if "code" in request.response_types:
        code = issue.new_secret()
        await grant_store.code_issue(
            ctx.db,
            code_hash=issue.secret_hash(code),
            client_id=client.client_id,
            user_id=session.user_id,
            session_id=session.session_id,
            redirect_uri=request.redirect_uri if request.redirect_uri_sent else None,
            scope=request.scope,
            nonce=request.nonce,
            code_challenge=request.code_challenge,
            offline=request.offline,
            ttl=ctx.settings.tokens.code_ttl,
        )
        params["code"] = code
    if request.response_types & {"token", "id_token"}:
        family_id = await grant_store.family_open(
            ctx.db,
            session_id=session.session_id,
            client_id=client.client_id,
            user_id=session.user_id,
            scope=request.scope,
            origin="implicit",
        )
        access = None
        holder = await issue.holder(
            ctx,
            request.scope,
            session.user_id,
            session.username,
            session.email,
            session.name,
            email_verified=session.email_verified,
        )
        if "token" in request.response_types:
            ttl = issue.access_ttl(ctx, client, service=False)
            access = issue.mint_access_token(
                ctx,
                client,
                subject=str(session.user_id),
                scope=request.scope,
                session_id=session.session_id,
                family_id=family_id,
                ttl=ttl,
                username=session.username,
                organizations=holder.organizations,
            )
            params.update(access_token=access, expires_in=str(ttl))
            params["token_type"] = "Bearer"  # noqa: S105
            params["scope"] = format_scope(request.scope)
        if "id_token" in request.response_types:
            params["id_token"] = issue.mint_id_token(
                ctx,
                client,
                user=holder.profile(),
                scope=request.scope,
                session_id=session.session_id,
                family_id=family_id,
                auth_time=int(session.auth_time.timestamp()),
                nonce=request.nonce,
                access_token=access,
                code=code,
            )
    if request.state is not None:
        params["state"] = request.state
    params["iss"] = ctx.issuer
    return build_redirect(request.redirect_uri, params, fragment=request.fragment)
