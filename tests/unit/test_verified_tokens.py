"""The token handler's cache of verified access tokens (gateway/proxy/credentials.py): bounded,
expired entries first, then the oldest; a full cache never forgets every session at once."""

from __future__ import annotations

from gateway.proxy.credentials import Principal, VerifiedTokens


class Now:
    def __init__(self) -> None:
        self.value = 1_000.0

    def __call__(self) -> float:
        return self.value


def principal(exp: float) -> Principal:
    return Principal("token", {"exp": exp, "sub": "u"}, True)


def test_entries_live_until_their_exp() -> None:
    now = Now()
    cache = VerifiedTokens(now, limit=10)
    cache.put("cookie-a", principal(1_060))
    assert cache.get("cookie-a") is not None
    assert cache.get("cookie-b") is None
    now.value = 1_060
    assert cache.get("cookie-a") is None
    assert len(cache) == 0


def test_a_full_cache_drops_expired_entries_first() -> None:
    now = Now()
    cache = VerifiedTokens(now, limit=10)
    for i in range(5):
        cache.put(f"short-{i}", principal(1_010))
    for i in range(5):
        cache.put(f"long-{i}", principal(2_000))
    now.value = 1_020
    cache.put("new", principal(2_000))
    assert [cache.get(f"long-{i}") is not None for i in range(5)] == [True] * 5
    assert cache.get("new") is not None
    assert len(cache) == 6


def test_a_full_cache_of_live_sessions_drops_the_oldest_tenth_only() -> None:
    cache = VerifiedTokens(Now(), limit=100)
    for i in range(100):
        cache.put(f"cookie-{i}", principal(5_000))
    cache.put("cookie-new", principal(5_000))
    kept = [i for i in range(100) if cache.get(f"cookie-{i}") is not None]
    assert kept == list(range(10, 100))
    assert cache.get("cookie-new") is not None
    assert len(cache) == 91


def test_claims_that_repeat_across_sessions_share_one_string() -> None:
    """Two sessions' cached claims hold one object for names and for the issuer, audience,
    client and scope (memory per cached session, issue 13), and equal values all the same."""
    import json

    from gateway.proxy.credentials import shared_strings

    raw = '{"iss": "https://gw.example", "aud": "api", "scope": "openid", "sub": "u-%d"}'
    first = shared_strings(json.loads(raw % 1))
    second = shared_strings(json.loads(raw % 2))
    assert first == json.loads(raw % 1)
    for name in ("iss", "aud", "scope"):
        assert first[name] is second[name]
    assert next(iter(first)) is next(iter(second))
    assert first["sub"] != second["sub"]
