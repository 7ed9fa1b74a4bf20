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
