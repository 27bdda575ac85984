"""Password hashing: Argon2id through argon2-cffi's `PasswordHasher`.

The cost is argon2-cffi's default (RFC 9106's low-memory profile: 3 passes over
64 MiB, 4 lanes) unless ``OUTPOST_ARGON2_COST`` says ``TIME,MEMORY_KIB,PARALLELISM``
(tests set a cheap one; a hash records its own parameters, so it verifies
wherever it was made). Hashes travel in the replicated ``users`` rows, so every
node of a user's site can check a password while HQ is away.

`PasswordCheck.verify` is the only way in: it runs the hash in a worker thread
(a few at a time: each takes its memory cost), and for an unknown user it
verifies against a dummy hash of the same cost, so the answer takes as long
whether or not the username exists. Passwords are never logged, and no error
here carries one.
"""

from __future__ import annotations

import asyncio
import os
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: ``TIME,MEMORY_KIB,PARALLELISM`` for new hashes (and the dummy); unset: the library's default
COST_ENV = "OUTPOST_ARGON2_COST"
#: hashes computed at once; each holds its memory cost (64 MiB by default)
CONCURRENT_HASHES = 2


class PasswordCostError(ValueError):
    """``OUTPOST_ARGON2_COST`` is not ``TIME,MEMORY_KIB,PARALLELISM``."""

    def __init__(self, value: str) -> None:
        super().__init__(f"{COST_ENV} must be TIME,MEMORY_KIB,PARALLELISM (e.g. 3,65536,4), got {value!r}")


def password_hasher(cost: str | None = None) -> PasswordHasher:
    """An Argon2id hasher at ``cost`` (``TIME,MEMORY_KIB,PARALLELISM``), else the
    environment's ``OUTPOST_ARGON2_COST``, else argon2-cffi's default."""
    cost = os.environ.get(COST_ENV, "") if cost is None else cost
    if not cost:
        return PasswordHasher(type=Type.ID)
    try:
        time_cost, memory_kib, parallelism = (int(p) for p in cost.split(","))
    except ValueError:
        raise PasswordCostError(cost) from None
    if time_cost < 1 or parallelism < 1 or memory_kib < 8 * parallelism:
        raise PasswordCostError(cost)
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)


class PasswordCheck:
    """Hashes and verifies passwords off the event loop, a few at a time."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or password_hasher()
        self._dummy: str | None = None
        self._slots = asyncio.Semaphore(CONCURRENT_HASHES)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``; with no hash (unknown user,
        or one without a password) a dummy is checked instead, and the answer is False."""
        if stored_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(24))
            await self._verify(self._dummy, password)
            return False
        return await self._verify(stored_hash, password)

    async def _verify(self, stored_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._check, stored_hash, password)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
