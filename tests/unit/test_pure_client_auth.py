"""Client credentials as a request presents them (RFC 6749 section 2.3): ``client_credentials`` in
``gateway.oauth.rfc6749``. Pure: a header value and parsed parameters in, a value or an error out.

Covered: ``client_secret_basic`` (scheme case-insensitive, form-urlencoded id and secret inside
the base64), ``client_secret_post``, ``none``; malformed ``Authorization`` headers (no 5xx:
``invalid_client`` with a Basic challenge); two methods at once; a body ``client_id`` that
differs from the Basic one; the header size limit.

SECURITY-CHECKLIST items 69 (basic and post), 72 (exactly one method), 73 (Basic credentials
use form-urlencoding) and 74 (malformed Authorization headers never cause 5xx).
"""

from __future__ import annotations

import base64

import pytest

from gateway.oauth.errors import InvalidClientError, InvalidRequestError, OAuthError
from gateway.oauth.params import Params
from gateway.oauth.rfc6749 import MAX_AUTHORIZATION_HEADER, ClientCredentials, client_credentials


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode("ascii")


MALFORMED = "malformed Basic credentials"
NOT_BASIC = "client authentication must use HTTP Basic"
TWO_METHODS = "use one client authentication method, not two"


@pytest.mark.parametrize(
    ("authorization", "pairs", "expected"),
    [
        pytest.param(None, [], ClientCredentials(None, None, "none"), id="nothing"),
        pytest.param(
            None, [("client_id", "pub")], ClientCredentials("pub", None, "none"), id="public"
        ),
        pytest.param(
            None,
            [("client_id", "cc"), ("client_secret", "ccs3cr3t")],
            ClientCredentials("cc", "ccs3cr3t", "client_secret_post"),
            id="69b-post",
        ),
        pytest.param(
            None,
            [("client_id", "cc"), ("client_secret", "")],
            ClientCredentials("cc", None, "none"),
            id="empty-secret-is-absent",
        ),
        pytest.param(
            "Basic Y2M6Y2NzM2NyM3Q=",
            [],
            ClientCredentials("cc", "ccs3cr3t", "client_secret_basic"),
            id="69a-basic",
        ),
        pytest.param(
            "basic Y2M6Y2NzM2NyM3Q=",
            [],
            ClientCredentials("cc", "ccs3cr3t", "client_secret_basic"),
            id="scheme-lower-case",
        ),
        pytest.param(
            "BASIC   Y2M6Y2NzM2NyM3Q=  ",
            [],
            ClientCredentials("cc", "ccs3cr3t", "client_secret_basic"),
            id="scheme-upper-case-extra-spaces",
        ),
        pytest.param(
            "Basic Y2M6Y2NzM2NyM3Q=",
            [("client_id", "cc")],
            ClientCredentials("cc", "ccs3cr3t", "client_secret_basic"),
            id="same-client-id-in-body",
        ),
        pytest.param(
            "Basic Y29uZiUzQXNwZWNpYWw6cCU0MHNzJTNBdyUyNXJkJTJCJTJG",
            [],
            ClientCredentials("conf:special", "p@ss:w%rd+/", "client_secret_basic"),
            id="73-form-urlencoded-inside",
        ),
        pytest.param(
            basic("a+b:c+d"),
            [],
            ClientCredentials("a b", "c d", "client_secret_basic"),
            id="plus-is-space",
        ),
        pytest.param(
            basic("cc:sec:ret"),
            [],
            ClientCredentials("cc", "sec:ret", "client_secret_basic"),
            id="first-colon-splits",
        ),
        pytest.param(
            basic("cc:"), [], ClientCredentials("cc", "", "client_secret_basic"), id="empty-secret"
        ),
    ],
)
def test_credentials_presented(
    authorization: str | None, pairs: list[tuple[str, str]], expected: ClientCredentials
) -> None:
    assert client_credentials(authorization, Params(pairs)) == expected


@pytest.mark.parametrize(
    ("authorization", "pairs", "error_class", "description"),
    [
        # item 74
        pytest.param("Basic", [], InvalidClientError, MALFORMED, id="74-basic-alone"),
        pytest.param("Basic !!!notbase64!!!", [], InvalidClientError, MALFORMED, id="74-not-b64"),
        pytest.param("Basic Y2M=", [], InvalidClientError, MALFORMED, id="74-no-colon"),
        pytest.param("Basic Og==", [], InvalidClientError, MALFORMED, id="74-colon-only"),
        pytest.param("Bearer xyz", [], InvalidClientError, NOT_BASIC, id="74-bearer"),
        pytest.param('Digest username="cc"', [], InvalidClientError, NOT_BASIC, id="74-digest"),
        pytest.param(
            "Basic " + "A" * 16384,
            [],
            InvalidClientError,
            "client authentication failed",
            id="74-16k",
        ),
        pytest.param("Basic Y2M6eA", [], InvalidClientError, MALFORMED, id="missing-padding"),
        pytest.param("Basic /w==", [], InvalidClientError, MALFORMED, id="not-utf8"),
        pytest.param("", [], InvalidClientError, NOT_BASIC, id="empty-header"),
        pytest.param("Y2M6Y2NzM2NyM3Q=", [], InvalidClientError, NOT_BASIC, id="no-scheme"),
        pytest.param(basic(":secret"), [], InvalidClientError, MALFORMED, id="empty-client-id"),
        # item 72: one method per request
        pytest.param(
            "Basic Y2M6Y2NzM2NyM3Q=",
            [("client_id", "cc"), ("client_secret", "ccs3cr3t")],
            InvalidRequestError,
            TWO_METHODS,
            id="72a-basic-and-post",
        ),
        pytest.param(
            "Basic Y2M6Y2NzM2NyM3Q=",
            [("client_secret", "")],
            InvalidRequestError,
            TWO_METHODS,
            id="basic-and-empty-body-secret",
        ),
        pytest.param(
            "Basic Y2M6Y2NzM2NyM3Q=",
            [("client_id", "conf")],
            InvalidRequestError,
            "client_id differs from the authenticated client",
            id="72b-other-client-id",
        ),
        pytest.param(
            None,
            [("client_secret", "x")],
            InvalidRequestError,
            "client_secret was sent without client_id",
            id="secret-without-id",
        ),
    ],
)
def test_credentials_refused(
    authorization: str | None,
    pairs: list[tuple[str, str]],
    error_class: type[OAuthError],
    description: str,
) -> None:
    with pytest.raises(OAuthError) as info:
        client_credentials(authorization, Params(pairs))
    assert type(info.value) is error_class
    assert info.value.description == description
    if error_class is InvalidClientError:
        assert isinstance(info.value, InvalidClientError)
        assert (info.value.error, info.value.status, info.value.challenge) == (
            "invalid_client",
            401,
            True,
        )
    else:
        assert (info.value.error, info.value.status) == ("invalid_request", 400)


@pytest.mark.parametrize(
    ("extra", "accepted"),
    [
        pytest.param(0, True, id="at-limit"),
        pytest.param(1, False, id="one-over"),
    ],
)
def test_authorization_header_size_limit(extra: int, accepted: bool) -> None:
    header = basic("cc:ccs3cr3t")
    header = header[:6] + " " * (MAX_AUTHORIZATION_HEADER - len(header) + extra) + header[6:]
    if accepted:
        assert client_credentials(header, Params([])) == ClientCredentials(
            "cc", "ccs3cr3t", "client_secret_basic"
        )
    else:
        with pytest.raises(InvalidClientError) as info:
            client_credentials(header, Params([]))
        assert info.value.description == "client authentication failed"
