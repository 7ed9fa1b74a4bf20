"""OpenID Connect Back-Channel Logout 1.0 section 2.4, without I/O: the logout token's claims and
header, signed as the client's ID tokens are (the gateway's key, or HS256 with the secret)."""

from __future__ import annotations

import uuid
from pathlib import Path

import jwt
import pytest

from gateway.backchannel.sender import logout_token
from gateway.config import load_config
from gateway.oauth.oidc_backchannel import is_delivered, logout_token_claims
from gateway.store.backchannel import ClaimedLogout
from gateway.tokens.keys import KeyRing, generate_signing_key
from tests.support import write_conf

EVENT = "http://schemas.openid.net/event/backchannel-logout"
SECRET = "hs-secret-0123456789abcdefghijklmnopq"


def test_the_claims_name_user_and_session_and_never_a_nonce() -> None:
    claims = logout_token_claims(
        issuer="https://id.example.com",
        client_id="chat",
        subject="u-1",
        session_id="s-1",
        now=1_800_000_000,
        jti="j-1",
    )
    assert claims == {
        "iss": "https://id.example.com",
        "aud": "chat",
        "iat": 1_800_000_000,
        "exp": 1_800_000_120,
        "jti": "j-1",
        "sub": "u-1",
        "sid": "s-1",
        "events": {EVENT: {}},
    }


@pytest.mark.parametrize(("status", "delivered"), [(200, True), (204, True), (400, False)])
def test_only_200_and_204_are_delivered(status: int, delivered: bool) -> None:
    assert is_delivered(status) is delivered
    assert not is_delivered(302)  # redirects are not followed, nor taken for a success
    assert not is_delivered(500)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "HS256"])
def test_the_token_is_signed_as_the_clients_id_tokens_are(tmp_path: Path, algorithm: str) -> None:
    app = {"client_id": "chat", "client_secret": SECRET, "redirect_uris": ["https://c.test/cb"]}
    if algorithm == "HS256":
        app["algorithm"] = "HS256"
    config = load_config(
        write_conf(tmp_path, gateway={"issuer": "https://id.example.com"}, clients={"chat": app}),
        environ={},
    )
    key = generate_signing_key("ES256" if algorithm == "ES256" else "RS256")
    claimed = ClaimedLogout(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "chat", 1, uuid.uuid4())
    client = config.client("chat")
    assert client is not None
    token = logout_token(config, client, KeyRing([key]), claimed, 1_800_000_000)

    header = jwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    assert header["alg"] == algorithm
    verifying = SECRET if algorithm == "HS256" else key.public_key
    claims = jwt.decode(
        token,
        verifying,  # type: ignore[arg-type]
        algorithms=[algorithm],
        audience="chat",
        issuer="https://id.example.com",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert (claims["sub"], claims["sid"]) == (str(claimed.user_id), str(claimed.session_id))
    assert "nonce" not in claims
    if algorithm != "HS256":
        assert header["kid"] == key.kid
