"""OAuth 2.0 Token Exchange (RFC 8693): request validation.

``subject_token_type`` is required (section 2.1; the reference defaulted it to ``jwt``, which the
RFC does not allow). Every malformed request and every unacceptable subject or actor token is
``invalid_request`` (section 2.2.2), not ``invalid_grant``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.oauth.errors import InvalidRequestError
from gateway.oauth.params import Params

PREFIX = "urn:ietf:params:oauth:token-type:"
JWT = PREFIX + "jwt"
ACCESS_TOKEN = PREFIX + "access_token"
REFRESH_TOKEN = PREFIX + "refresh_token"
ID_TOKEN = PREFIX + "id_token"
SUBJECT_TYPES = frozenset({JWT, ACCESS_TOKEN, REFRESH_TOKEN, ID_TOKEN})
ACTOR_TYPES = frozenset({JWT, ACCESS_TOKEN})
ISSUABLE = frozenset({ACCESS_TOKEN, JWT})


@dataclass(frozen=True)
class ExchangeRequest:
    subject_token: str
    subject_token_type: str
    actor_token: str | None
    actor_token_type: str | None
    requested_token_type: str
    audience: str | None


def validate_exchange(params: Params) -> ExchangeRequest:
    subject = params.get("subject_token")
    subject_type = params.get("subject_token_type")
    if subject is None:
        raise InvalidRequestError("subject_token is required")
    if subject_type is None:
        raise InvalidRequestError("subject_token_type is required")
    if subject_type not in SUBJECT_TYPES:
        raise InvalidRequestError("this subject_token_type is not supported")
    actor = params.get("actor_token")
    actor_type = params.get("actor_token_type")
    if actor is not None and actor_type is None:
        raise InvalidRequestError("actor_token_type is required with actor_token")
    if actor is None and actor_type is not None:
        raise InvalidRequestError("actor_token_type was sent without actor_token")
    if actor_type is not None and actor_type not in ACTOR_TYPES:
        raise InvalidRequestError("this actor_token_type is not supported")
    requested = params.get("requested_token_type", ACCESS_TOKEN)
    if requested not in ISSUABLE:
        raise InvalidRequestError("only access tokens can be requested")
    return ExchangeRequest(
        subject, subject_type, actor, actor_type, requested, params.get("audience")
    )
