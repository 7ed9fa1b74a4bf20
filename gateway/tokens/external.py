"""Tokens of an external OpenID provider as the token handler keeps them (``login.provider``).

The provider's access token is forwarded upstream as it is; what the gateway knows about it is
kept beside it, sealed in the same cookie: when it expires (its JWT ``exp`` after the signature
was checked, else ``expires_in`` from the token response), the token handler's session it
belongs to, and the user's claims from the verified ID token. So the hot path needs no call to
the provider and no database: the sealed cookie is the verified state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The claims kept from an ID token (and a JWT access token): who the user is, nothing else.
PROFILE_CLAIMS = (
    "iss",
    "sub",
    "preferred_username",
    "name",
    "email",
    "email_verified",
    "auth_time",
)
MARKER = "ext"


@dataclass(frozen=True)
class ExternalTokens:
    """One token response of the provider, checked, with what the cookies need."""

    access_token: str
    expires_at: int
    expires_in: int
    session: str  # the token handler's session (the SID cookie), a random id
    provider: str  # the provider file's name
    client_id: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    scope: str = ""
    refresh_token: str | None = None
    predecessor: str | None = None  # hex SHA-256 of the refresh token this response came from
    session_expires: int | None = None  # when the session ends at the latest (epoch seconds)

    def session_seconds(self, ttl: int) -> int:
        """Seconds the session cookies may live: ``ttl`` at most, and no longer than the
        session (counted from when this answer was made, ``expires_at - expires_in``)."""
        if self.session_expires is None:
            return ttl
        made = self.expires_at - self.expires_in
        return max(min(ttl, self.session_expires - made), 0)

    @property
    def access_claims(self) -> dict[str, Any]:
        """What the token handler forwards identity headers from and answers /login/user with."""
        claims = dict(self.claims)
        claims.update(
            {"exp": self.expires_at, "sid": self.session, "src": self.provider, "scope": self.scope}
        )
        claims.setdefault("client_id", self.client_id)
        if self.predecessor:
            claims["rph"] = self.predecessor
        return claims

    def access_cookie(self) -> bytes:
        """The plain text of the ``__Secure-AT`` cookie (sealed by the caller)."""
        payload = {
            "x": MARKER,
            "at": self.access_token,
            "exp": self.expires_at,
            "sid": self.session,
            "src": self.provider,
            "cid": self.client_id,
            "scope": self.scope,
            "c": dict(self.claims),
        }
        if self.predecessor:
            payload["p"] = self.predecessor
        return json.dumps(payload, separators=(",", ":")).encode()

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.access_token,
                "exp": self.expires_at,
                "ein": self.expires_in,
                "sid": self.session,
                "src": self.provider,
                "cid": self.client_id,
                "c": dict(self.claims),
                "scope": self.scope,
                "rt": self.refresh_token,
                "p": self.predecessor,
                "sx": self.session_expires,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ExternalTokens | None:
        try:
            data = json.loads(text)
            return cls(
                access_token=str(data["at"]),
                expires_at=int(data["exp"]),
                expires_in=int(data["ein"]),
                session=str(data["sid"]),
                provider=str(data["src"]),
                client_id=str(data["cid"]),
                claims=dict(data["c"]),
                scope=str(data["scope"]),
                refresh_token=str(data["rt"]) if data.get("rt") else None,
                predecessor=str(data["p"]) if data.get("p") else None,
                session_expires=int(data["sx"]) if data.get("sx") else None,
            )
        except (ValueError, KeyError, TypeError):
            return None


def parse_access_cookie(plain: str) -> dict[str, Any] | None:
    """The ``__Secure-AT`` plain text of an external token, as ``access_cookie`` wrote it, or
    None (the gateway's own access tokens are JWTs, not JSON)."""
    if not plain.startswith("{"):
        return None
    try:
        data = json.loads(plain)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("x") != MARKER:
        return None
    if not isinstance(data.get("at"), str) or not isinstance(data.get("exp"), int):
        return None
    if not isinstance(data.get("sid"), str) or not isinstance(data.get("c"), dict):
        return None
    return data


def principal_claims(data: Mapping[str, Any]) -> dict[str, Any]:
    """The claims of an external access cookie (``parse_access_cookie``)."""
    claims = dict(data["c"])
    claims.update(
        {
            "exp": data["exp"],
            "sid": data["sid"],
            "src": data.get("src"),
            "scope": data.get("scope", ""),
        }
    )
    claims.setdefault("client_id", data.get("cid"))
    if data.get("p"):
        claims["rph"] = data["p"]
    return claims


def profile(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims the token handler keeps about the user (no nonce, no audience, no times but
    ``auth_time``)."""
    return {name: claims[name] for name in PROFILE_CLAIMS if name in claims}
