"""`SqliteStore.auth_mark`: another process's commit moves it within
`FOREIGN_RECHECK_S`, and requests that find its reading due at once share one
trip to the writer's thread (a crowd of them once queued a trip each)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sync.edits import Edit
from sync.hlc import Clock
from sync.store.sqlite import FOREIGN_RECHECK_S, SqliteStore

T0 = 1_800_000_000_000
U = "01JD0QK2M6X3Z1V9A8B7C6D5E4"


async def _store(path: Path) -> SqliteStore:
    return await SqliteStore.create(path, node_id="hq", role="hq", clock=Clock(lambda: T0, 60_000))


def test_a_crowd_shares_one_reading_and_a_foreign_commit_moves_the_mark(tmp_path: Path) -> None:
    async def go() -> None:
        store = await _store(tmp_path / "hq.db")
        other = await SqliteStore.open(tmp_path / "hq.db", clock=Clock(lambda: T0, 60_000))
        pragmas = 0
        execute_fetchall = store._w.execute_fetchall  # noqa: SLF001 - counted, still the real call

        async def counted(sql: str, *args: object) -> object:
            nonlocal pragmas
            pragmas += sql == "PRAGMA data_version"
            return await execute_fetchall(sql, *args)

        store._w.execute_fetchall = counted  # type: ignore[method-assign]  # noqa: SLF001
        try:
            marks = await asyncio.gather(*(store.auth_mark() for _ in range(50)))
            assert pragmas == 1 and len(set(marks)) == 1
            assert await store.auth_mark() == marks[0] and pragmas == 1  # not due again yet

            await other.write_local([Edit("users", U, "disabled", "set", True)])  # another connection's, as another process's would be
            assert await store.auth_mark() == marks[0]  # seen only at the next reading ...
            time.sleep(FOREIGN_RECHECK_S)
            moved = await asyncio.gather(*(store.auth_mark() for _ in range(50)))
            assert pragmas == 2 and len(set(moved)) == 1 and moved[0] != marks[0]  # ... by all, in one trip
        finally:
            await other.close()
            await store.close()

    asyncio.run(go())
