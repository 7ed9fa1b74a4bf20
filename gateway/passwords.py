"""Password hashing with argon2id (RFC 9106 parameters from argon2-cffi's defaults).

``verify`` of an unknown account still spends the time of one hash (``verify_dummy``), so the
answer's timing does not reveal whether an account exists.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

if TYPE_CHECKING:
    from gateway.config.model import PasswordHashing


def client_secret_hasher() -> PasswordHasher:
    """argon2id with light parameters for client secrets: they are machine-generated and only
    hashed at rest (clients authenticate against the configuration), so the cost of a password
    hash would only slow every start-up down."""
    return PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()

    @classmethod
    def configured(cls, cost: PasswordHashing) -> Passwords:
        """argon2id at the configured cost (``passwords`` in gateway.json)."""
        return cls(
            PasswordHasher(
                time_cost=cost.time_cost,
                memory_cost=cost.memory_cost,
                parallelism=cost.parallelism,
            )
        )

    @property
    def cost(self) -> tuple[int, int, int]:
        return (self._hasher.time_cost, self._hasher.memory_cost, self._hasher.parallelism)

    @functools.cached_property
    def _dummy(self) -> str:
        """Made at the first unknown account, not at start-up: every process (each command, each
        worker) would otherwise spend a hash before doing anything."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; an absent hash costs the same time and fails."""
        if password_hash is None:
            self.verify_dummy(password)
            return False
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            self._hasher.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def check_new_password(password: str) -> str | None:
    """Why ``password`` cannot be used, or None when it can."""
    if not password:
        return "the password is empty"
    if len(password) > 1024:
        return "the password is longer than 1024 characters"
    if any(ord(ch) < 0x20 for ch in password):
        return "the password contains control characters"
    return None
