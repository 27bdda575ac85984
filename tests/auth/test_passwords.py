"""Argon2id hashing: the cost comes from the environment in tests, never weaker by default."""

from __future__ import annotations

import asyncio
import time

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from server.passwords import COST_ENV, PasswordCheck, PasswordCostError, password_hasher


def test_default_cost_is_argon2_cffis_default_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(COST_ENV, raising=False)
    params = extract_parameters(password_hasher().hash("x" * 12))
    default = PasswordHasher()
    assert params.type is Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        default.time_cost, default.memory_cost, default.parallelism)
    assert params.memory_cost >= 65_536 and params.time_cost >= 3  # RFC 9106 low-memory profile or stronger


def test_environment_sets_the_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COST_ENV, "2,16,2")
    params = extract_parameters(password_hasher().hash("secret-pass"))
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism) == (Type.ID, 2, 16, 2)


@pytest.mark.parametrize("cost", ["cheap", "1,8", "0,8,1", "1,4,1", "1,8,0", "a,b,c"])
def test_a_bad_cost_is_refused_with_its_form(cost: str) -> None:
    with pytest.raises(PasswordCostError, match="TIME,MEMORY_KIB,PARALLELISM"):
        password_hasher(cost)


def test_verify_accepts_the_password_and_refuses_others() -> None:
    async def check() -> tuple[bool, bool, bool, bool, bool]:
        passwords = PasswordCheck()
        stored = await passwords.hash("correct horse battery staple")
        assert stored.startswith("$argon2id$") and "correct" not in stored
        return (
            await passwords.verify(stored, "correct horse battery staple"),
            await passwords.verify(stored, "correct horse battery stapl"),
            await passwords.verify(stored, ""),
            await passwords.verify("$argon2id$not-a-hash", "correct horse battery staple"),
            await passwords.verify(None, "correct horse battery staple"),
        )

    assert asyncio.run(check()) == (True, False, False, False, False)


def test_unknown_user_costs_a_hash_like_a_known_one() -> None:
    """With no stored hash, `verify` checks a dummy of the same cost: an unknown
    username takes about as long as a wrong password."""
    passwords = PasswordCheck(password_hasher("2,4096,1"))  # slow enough to time

    async def timed() -> tuple[float, float]:
        stored = await passwords.hash("the real password")
        await passwords.verify(None, "warm-up")  # makes the dummy once
        t0 = time.perf_counter()
        for _ in range(8):
            await passwords.verify(stored, "a wrong password")
        known = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(8):
            await passwords.verify(None, "a wrong password")
        return known, time.perf_counter() - t0

    known, unknown = asyncio.run(timed())
    # without the dummy an unknown name would answer in microseconds, not milliseconds
    assert 1 / 3 < unknown / known < 3, (known, unknown)
