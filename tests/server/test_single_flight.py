"""`SingleFlight`: calls for one key while its run is under way share that run,
its result or its exception; one caller's cancellation leaves the others' run
alone; a call after the run ended starts another."""

from __future__ import annotations

import asyncio
import gc

import pytest

from server.single_flight import SingleFlight


def test_calls_meanwhile_share_one_run_and_its_outcome() -> None:
    async def go() -> None:
        flights: SingleFlight[str] = SingleFlight()
        runs: list[str] = []
        gate = asyncio.Event()

        async def work(key: str) -> str:
            runs.append(key)
            await gate.wait()
            if key == "bad":
                raise LookupError(key)
            return key.upper()

        calls = [asyncio.ensure_future(flights.run(k, lambda k=k: work(k))) for k in ("a", "a", "a", "b", "bad", "bad")]
        await asyncio.sleep(0)
        calls[0].cancel()  # the first caller gives up: the others still get the run's result
        gate.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(outcomes[0], asyncio.CancelledError)
        assert outcomes[1:4] == ["A", "A", "B"]
        assert all(isinstance(o, LookupError) for o in outcomes[4:])
        assert sorted(runs) == ["a", "b", "bad"]  # one run per key
        assert await flights.run("a", lambda: work("a")) == "A" and runs.count("a") == 2  # ended: runs again

    asyncio.run(go())


def test_a_run_that_fails_with_no_one_waiting_is_not_reported_as_unretrieved() -> None:
    async def go() -> None:
        flights: SingleFlight[None] = SingleFlight()
        unretrieved: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unretrieved.append(context))

        async def fail() -> None:
            await asyncio.sleep(0)
            raise LookupError("x")

        call = asyncio.ensure_future(flights.run("k", fail))
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.01)
        gc.collect()  # a future's unretrieved exception is reported when it is collected
        assert unretrieved == []

    asyncio.run(go())
