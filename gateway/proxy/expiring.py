"""A bounded map of values that expire: what the token handler remembers per process (verified
access tokens, refused ones, the results of recent refreshes)."""

from __future__ import annotations

import itertools
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """Values until their ``until`` time, at most ``limit`` of them. When full, the expired
    entries go first, then the least recently stored tenth: a busy process never forgets
    everything at once (a flood of new keys cannot reset what is in use)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[K, tuple[float, V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, until: float, now: float) -> None:
        if self._entries.pop(key, None) is None and len(self._entries) >= self._limit:
            self._make_room(now)
        self._entries[key] = (until, value)  # at the end: the order is the order of storing

    def clear(self) -> None:
        self._entries.clear()

    def _make_room(self, now: float) -> None:
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        excess = len(self._entries) - self._limit + max(1, self._limit // 10)
        if excess > 0:
            for key in list(itertools.islice(self._entries, excess)):
                del self._entries[key]
