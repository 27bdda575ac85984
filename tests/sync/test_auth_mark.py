"""`SqliteStore.auth_mark`: another process's commit moves it for every check
that starts `FOREIGN_STALE_S` after it; a reading older than
`FOREIGN_REFRESH_S` is renewed in the background without anyone waiting for it;
and the callers that must wait for one share one trip to the writer's thread (a
crowd of them once queued a trip each, and at saturation each trip cost a wait
at the back of the event loop's queue)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sync.edits import Edit
from sync.hlc import Clock
from sync.store.sqlite import FOREIGN_REFRESH_S, FOREIGN_STALE_S, SqliteStore

T0 = 1_800_000_000_000
U = "01JD0QK2M6X3Z1V9A8B7C6D5E4"


def test_readings_are_shared_renewed_ahead_and_waited_for_only_when_stale(tmp_path: Path) -> None:
    async def go() -> None:
        store = await SqliteStore.create(tmp_path / "hq.db", node_id="hq", role="hq", clock=Clock(lambda: T0, 60_000))
        other = await SqliteStore.open(tmp_path / "hq.db", clock=Clock(lambda: T0, 60_000))
        readings = 0
        execute_fetchall = store._w.execute_fetchall  # noqa: SLF001 - counted, still the real call

        async def counted(sql: str, *args: object) -> object:
            nonlocal readings
            readings += sql == "PRAGMA data_version"
            return await execute_fetchall(sql, *args)

        store._w.execute_fetchall = counted  # type: ignore[method-assign]  # noqa: SLF001

        async def foreign_commit(value: bool) -> None:  # another connection's, as another process's would be
            await other.write_local([Edit("users", U, "disabled", "set", value)])

        try:
            first = await asyncio.gather(*(store.auth_mark() for _ in range(50)))  # never read: all wait, for one trip
            assert readings == 1 and len(set(first)) == 1
            assert await store.auth_mark() == first[0] and readings == 1  # fresh: no trip

            await foreign_commit(True)
            time.sleep(FOREIGN_REFRESH_S)
            assert await store.auth_mark() == first[0]  # answered from the last reading, a new one started ...
            for _ in range(200):  # ... which a later call has, once the writer's thread answered
                await asyncio.sleep(0.01)
                if (renewed := await store.auth_mark()) != first[0]:
                    break
            assert readings == 2 and renewed != first[0]

            await foreign_commit(False)
            time.sleep(FOREIGN_STALE_S)
            stale = await asyncio.gather(*(store.auth_mark() for _ in range(50)))  # too old: all wait, for one trip
            assert readings == 3 and len(set(stale)) == 1 and stale[0] != renewed
        finally:
            await other.close()
            await store.close()

    asyncio.run(go())
