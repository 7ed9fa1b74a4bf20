"""OAuth 2.0 core (RFC 6749): client credentials, scopes, and the authorization request.

The authorization request is validated in the order RFC 6749 section 4.1.2.1 requires: until the
client and its exact redirect URI are known, an error is shown to the user (``PageError``) and never
redirected; after that, errors go back to the client (``RedirectError``) in the response mode of the
requested response type (query for ``code``, fragment whenever a token is returned).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

from gateway.config.model import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_IMPLICIT,
    AppConfig,
    check_scope_token,
)
from gateway.oauth import rfc7636
from gateway.oauth.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from gateway.oauth.params import Params

MAX_AUTHORIZATION_HEADER = 4096
DEFAULT_EXCLUDED_SCOPES = frozenset({"offline_access"})
RESPONSE_TYPES = frozenset(
    {
        frozenset({"code"}),
        frozenset({"token"}),
        frozenset({"id_token"}),
        frozenset({"code", "token"}),
        frozenset({"code", "id_token"}),
        frozenset({"id_token", "token"}),
        frozenset({"code", "id_token", "token"}),
    }
)
PROMPTS = frozenset({"none", "login", "consent", "select_account", "signin", "secret"})


# --- client authentication (section 2.3.1) ---------------------------------------------------


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str | None
    secret: str | None
    method: str  # "client_secret_basic", "client_secret_post" or "none"


def client_credentials(authorization: str | None, params: Params) -> ClientCredentials:
    """The credentials a request presents, by exactly one method (section 2.3)."""
    if authorization is None:
        client_id = params.get("client_id")
        secret = params.get("client_secret")
        if secret is not None and client_id is None:
            raise InvalidRequestError("client_secret was sent without client_id")
        return ClientCredentials(
            client_id, secret, "client_secret_post" if secret is not None else "none"
        )
    if len(authorization) > MAX_AUTHORIZATION_HEADER:
        raise InvalidClientError("client authentication failed")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClientError("client authentication must use HTTP Basic")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClientError("malformed Basic credentials") from None
    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon:
        raise InvalidClientError("malformed Basic credentials")
    client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    if not client_id:
        raise InvalidClientError("malformed Basic credentials")
    if params.was_sent("client_secret"):
        raise InvalidRequestError("use one client authentication method, not two")
    if "client_id" in params and params["client_id"] != client_id:
        raise InvalidRequestError("client_id differs from the authenticated client")
    return ClientCredentials(client_id, secret, "client_secret_basic")


# --- scopes (section 3.3) ---------------------------------------------------------------------


def parse_scope(value: str | None) -> tuple[str, ...] | None:
    """Space-delimited scope tokens, de-duplicated in order; None when absent."""
    if value is None:
        return None
    tokens: list[str] = []
    for token in value.split(" "):
        if not token:
            continue
        try:
            check_scope_token(token)
        except ValueError:
            raise InvalidScopeError("the scope contains an invalid character") from None
        if token not in tokens:
            tokens.append(token)
    return tuple(tokens)


def grant_scope(requested: tuple[str, ...] | None, client: AppConfig) -> tuple[str, ...]:
    """The scope to grant: the request when allowed, else ``invalid_scope``; absent means the
    client's scopes except ``offline_access``."""
    allowed = client.scopes
    if requested is None:
        return tuple(s for s in allowed if s not in DEFAULT_EXCLUDED_SCOPES)
    extra = [s for s in requested if s not in allowed]
    if extra:
        raise InvalidScopeError("the requested scope is not allowed for this client")
    return requested


def format_scope(scope: Iterable[str]) -> str:
    return " ".join(scope)


# --- the authorization request (section 4.1.1, 4.2.1; OIDC Core 3.1.2.1) ----------------------


class PageError(Exception):
    """An authorization error shown to the user: the redirect URI is not trusted."""

    def __init__(self, error: OAuthError) -> None:
        super().__init__(error.description)
        self.error = error


class RedirectError(Exception):
    """An authorization error returned to the client at its registered redirect URI."""

    def __init__(
        self, error: OAuthError, redirect_uri: str, state: str | None, fragment: bool
    ) -> None:
        super().__init__(error.description)
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state
        self.fragment = fragment

    def location(self, issuer: str) -> str:
        params = {"error": self.error.error}
        if self.error.description:
            params["error_description"] = self.error.description
        if self.state is not None:
            params["state"] = self.state
        params["iss"] = issuer
        return build_redirect(self.redirect_uri, params, fragment=self.fragment)


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    response_types: frozenset[str]
    scope: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    offline: bool
    prompt: frozenset[str]
    max_age: int | None
    login_hint: str | None
    # RFC 6749 4.1.3: the token request must repeat redirect_uri only if the request sent it.
    redirect_uri_sent: bool = True
    response_mode: str | None = None  # "query" or "fragment" when the client asked for one

    @property
    def fragment(self) -> bool:
        """OAuth 2.0 Multiple Response Type Encoding Practices section 2.1: tokens never go in
        the query; a code goes where ``response_mode`` says, by default the query."""
        return self.response_mode == "fragment" or self.response_types != frozenset({"code"})

    @property
    def is_oidc(self) -> bool:
        return "openid" in self.scope


def build_redirect(
    uri: str, params: Mapping[str, str] | Sequence[tuple[str, str]], *, fragment: bool
) -> str:
    """``uri`` with ``params`` added to its query (keeping what is there) or set as fragment;
    ``uri`` unchanged when there are none."""
    parts = urlsplit(uri)
    encoded = urlencode(params)
    if not encoded:
        return uri
    if fragment:
        return urlunsplit(parts._replace(fragment=encoded))
    query = f"{parts.query}&{encoded}" if parts.query else encoded
    return urlunsplit(parts._replace(query=query))


def validate_authorization_request(
    params: Params, lookup_client: Callable[[str], AppConfig | None]
) -> AuthorizationRequest:
    """Check an authorization request; raise ``PageError`` or ``RedirectError``."""
    # 1. Client and redirect URI: nothing may be redirected before both are trusted.
    client_id = params.get("client_id")
    if client_id is None:
        raise PageError(InvalidRequestError("client_id is missing"))
    client = lookup_client(client_id)
    if client is None:
        raise PageError(InvalidClientError("unknown client_id", status=400))
    scope_text = params.get("scope")
    redirect_uri = params.get("redirect_uri")
    redirect_uri_sent = redirect_uri is not None
    if redirect_uri is None:
        is_oidc = scope_text is not None and "openid" in scope_text.split(" ")
        if len(client.redirect_uris) != 1 or is_oidc:
            raise PageError(InvalidRequestError("redirect_uri is missing"))
        redirect_uri = client.redirect_uris[0]
    elif redirect_uri not in client.redirect_uris:
        raise PageError(InvalidRequestError("redirect_uri is not registered for this client"))

    state = params.get("state")
    raw_types = params.get("response_type")
    response_types = frozenset(raw_types.split(" ")) if raw_types else frozenset()
    # Errors use the response type's default mode; an unknown type gets the query.
    fragment = response_types in RESPONSE_TYPES and response_types != frozenset({"code"})

    def fail(error: OAuthError) -> RedirectError:
        return RedirectError(error, redirect_uri, state, fragment)

    # 2. Everything else goes back to the client.
    if state is not None and any(not 0x20 <= ord(ch) <= 0x7E for ch in state):
        raise fail(InvalidRequestError("state must be visible ASCII characters"))
    for name in ("request", "request_uri"):
        if name in params:
            raise fail(
                _CodedError(f"{name}_not_supported", f"the {name} parameter is not supported")
            )
    if not response_types:
        raise fail(InvalidRequestError("response_type is missing"))
    if response_types not in RESPONSE_TYPES:
        raise fail(UnsupportedResponseTypeError("this response_type is not supported"))
    mode = params.get("response_mode")
    if mode not in (None, "query", "fragment") or (fragment and mode == "query"):
        raise fail(InvalidRequestError("response_mode is not allowed for this response_type"))
    fragment = fragment or mode == "fragment"  # honoured from here on, errors included
    grants = client.effective_grant_types
    if "code" in response_types and GRANT_AUTHORIZATION_CODE not in grants:
        raise fail(UnauthorizedClientError("this client may not use the authorization code flow"))
    if response_types - {"code"} and GRANT_IMPLICIT not in grants:
        raise fail(UnauthorizedClientError("this client may not receive tokens from /authorize"))
    try:
        scope = grant_scope(parse_scope(scope_text), client)
    except InvalidScopeError as exc:
        raise fail(exc) from None
    if "id_token" in response_types and "openid" not in scope:
        raise fail(InvalidRequestError("response_type id_token needs the openid scope"))
    nonce = params.get("nonce")
    if "id_token" in response_types and nonce is None:
        raise fail(InvalidRequestError("nonce is required when an id_token is returned"))
    prompt = frozenset(params.get("prompt", "").split())
    if prompt - PROMPTS:
        raise fail(InvalidRequestError("unknown prompt value"))
    if "none" in prompt and len(prompt) > 1:
        raise fail(InvalidRequestError("prompt=none cannot be combined with other values"))
    access_type = params.get("access_type", "online")
    if access_type not in ("online", "offline"):
        raise fail(InvalidRequestError("access_type must be online or offline"))
    max_age = params.get("max_age")
    if max_age is not None and not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 9):
        raise fail(InvalidRequestError("max_age must be a number of seconds"))
    try:
        challenge = rfc7636.check_challenge(
            params.get("code_challenge"),
            params.get("code_challenge_method"),
            required="code" in response_types and client.requires_pkce,
        )
    except InvalidRequestError as exc:
        raise fail(exc) from None
    return AuthorizationRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        response_types=response_types,
        scope=scope,
        state=state,
        nonce=nonce,
        code_challenge=challenge,
        offline=access_type == "offline" or "offline_access" in scope,
        prompt=prompt,
        max_age=int(max_age) if max_age is not None else None,
        login_hint=params.get("login_hint"),
        redirect_uri_sent=redirect_uri_sent,
        response_mode=mode,
    )


class _CodedError(OAuthError):
    """An error whose code is given at construction (OIDC ``request_not_supported`` and kin)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.error = code
