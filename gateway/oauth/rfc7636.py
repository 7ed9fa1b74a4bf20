"""PKCE (RFC 7636), S256 only (RFC 9700 section 2.1.1).

Authorization request: a challenge must be 43 base64url characters with
``code_challenge_method=S256``; ``plain`` (also the default when the method is absent) is refused
with ``invalid_request``.
Token request: a verifier must be 43-128 unreserved characters; a malformed, missing or wrong
verifier is ``invalid_grant`` (SECURITY-CHECKLIST Appendix C-8).
"""

from __future__ import annotations

import hashlib
import re

from gateway.oauth.errors import InvalidGrantError, InvalidRequestError
from gateway.tokens.seal import b64url

S256 = "S256"
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # fullmatch: "$" would allow a final newline
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def s256(verifier: str) -> str:
    """BASE64URL(SHA256(ASCII(code_verifier))) (RFC 7636 section 4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def check_challenge(challenge: str | None, method: str | None, *, required: bool) -> str | None:
    """The validated challenge (or None when PKCE is not used and not required)."""
    if challenge is None:
        if method is not None:
            raise InvalidRequestError("code_challenge_method was sent without code_challenge")
        if required:
            raise InvalidRequestError("code_challenge is required (PKCE with S256)")
        return None
    if method != S256:
        raise InvalidRequestError("code_challenge_method must be S256; plain is not supported")
    if not CHALLENGE.fullmatch(challenge):
        raise InvalidRequestError("code_challenge must be 43 base64url characters (S256)")
    return challenge


def challenge_of_verifier(verifier: str | None) -> str | None:
    """The S256 challenge a verifier answers; ``invalid_grant`` when it is malformed."""
    if verifier is None:
        return None
    if not VERIFIER.fullmatch(verifier):
        raise InvalidGrantError("code_verifier must be 43 to 128 unreserved characters")
    return s256(verifier)
