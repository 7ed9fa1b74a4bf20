"""The application's source of "now": one object per application, so that tests move time
instead of sleeping (``advance``), and every decision about an expiry reads the same clock."""

from __future__ import annotations

import time
from collections.abc import Callable

Now = Callable[[], float]  # seconds since the epoch, as ``Clock.time`` gives them


class Clock:
    """Wall-clock seconds since the epoch, plus an offset that only tests change."""

    def __init__(self) -> None:
        self._offset = 0.0

    @property
    def offset(self) -> float:
        """Seconds this clock runs ahead of the wall clock (0 but in tests)."""
        return self._offset

    def time(self) -> float:
        return time.time() + self._offset

    def now(self) -> int:
        """Whole seconds, as tokens, forms and the database record them."""
        return int(self.time())

    def advance(self, seconds: float) -> None:
        """Move this application's time forward (tests)."""
        self._offset += seconds


class Budget:
    """Seconds one request may still spend waiting for the database, across all its
    statements (time spent elsewhere, hashing a password, say, does not count)."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds
