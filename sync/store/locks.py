"""The store's two locks, as decorators: a method runs alone on the writer
connection (its transaction never interleaves with another coroutine's
statements) or alone on the reader (no read lands inside another's snapshot)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


def writes(method: Callable[Concatenate[Any, _P], Awaitable[_T]]) -> Callable[Concatenate[Any, _P], Awaitable[_T]]:
    """Run the method alone on the writer connection: its transaction never
    interleaves with another coroutine's statements."""

    @functools.wraps(method)
    async def locked(self: Any, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with self._wlock:
            return await method(self, *args, **kwargs)

    return locked


def reads(method: Callable[Concatenate[Any, _P], Awaitable[_T]]) -> Callable[Concatenate[Any, _P], Awaitable[_T]]:
    """Run the method alone on the reader connection, so no read lands inside
    another's snapshot."""

    @functools.wraps(method)
    async def locked(self: Any, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with self._rlock:
            return await method(self, *args, **kwargs)

    return locked
