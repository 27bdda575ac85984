"""HQ's retention purge on one store with a controlled clock (server/retention.py).

Results expire ``results_days`` after they were recorded, closed tasks
``closed_tasks_days`` after they closed; fresh results, open tasks and recently
closed ones stay. The purge tombstones (a result's sealed notes are shredded),
works in bounded batches, stops when told, and leaves one access event per
collection with its count.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from server.config import RetentionConfig
from server.retention import Retention
from sync.edits import Edit
from tests.retention.conftest import DAY_MS, T0, Hq, run


def test_expired_results_are_tombstoned_with_their_notes_shredded_and_fresh_ones_stay(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        old = [await hq.result(recorded_day=d) for d in (0, 1, 4.9)]
        fresh = [await hq.result(recorded_day=d) for d in (5.1, 20, 34)]
        hq.at(35)  # results recorded before day 5 have had their 30 days
        report = await hq.retention.purge()
        assert (report.results, report.tasks) == (3, 0)
        assert report.results_before_ms == T0 + 5 * DAY_MS
        assert await hq.deleted("results", old) == [True] * 3
        assert await hq.deleted("results", fresh) == [False] * 3
        for row_id in old:
            row = await hq.store.read_row("results", row_id)
            assert row is not None and row["notes"] is None  # shredded by the tombstone
            assert row["outcome"] == "connected"  # what is not secret stays, for the record
        for row_id in fresh:
            row = await hq.store.read_row("results", row_id)
            assert row is not None and row["notes"] is not None

    run(tmp_path, test)


def test_a_result_without_a_recorded_time_expires_from_when_it_was_written(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        hq.at(1)
        early = await hq.result(recorded_day=None)
        hq.at(10)
        late = await hq.result(recorded_day=None)
        hq.at(35)
        assert (await hq.retention.purge()).results == 1
        assert await hq.deleted("results", [early, late]) == [True, False]
        hq.at(40.5)
        assert (await hq.retention.purge()).results == 1
        assert await hq.deleted("results", [late]) == [True]

    run(tmp_path, test)


def test_closed_tasks_expire_from_when_they_closed_and_open_tasks_stay(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        open_ = [await hq.task(s) for s in ("open", "assigned", "in_progress")]
        closed = [await hq.task(s) for s in ("done", "archived", "cancelled")]
        edited_after = await hq.task("done")
        archived_later = await hq.task("done")
        hq.at(5)
        recently_closed = await hq.task("cancelled")
        closing_later = open_[0]
        hq.at(8)
        # an edit of another field does not restart the period; a later status does
        await hq.store.write_local([Edit("tasks", edited_after, "priority", "set", 1),
                                    Edit("tasks", archived_later, "status", "set", "archived"),
                                    Edit("tasks", closing_later, "status", "set", "done")])
        hq.at(11)
        report = await hq.retention.purge()
        assert report.tasks == 4
        assert report.tasks_closed_before_ms == T0 + 1 * DAY_MS
        assert await hq.deleted("tasks", [*closed, edited_after]) == [True] * 4
        assert await hq.deleted("tasks", [*open_, archived_later, recently_closed]) == [False] * 5
        hq.at(18.5)  # archived_later and closing_later closed on day 8, recently_closed on day 5
        assert (await hq.retention.purge()).tasks == 3
        assert await hq.deleted("tasks", [archived_later, closing_later, recently_closed]) == [True] * 3
        assert await hq.deleted("tasks", open_[1:]) == [False, False]  # still open: kept however old

    run(tmp_path, test)


def test_a_purge_purges_nothing_twice(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        await hq.result(recorded_day=0)
        await hq.task("done")
        hq.at(40)
        first = await hq.retention.purge()
        high = await hq.store.high_seq()
        second = await hq.retention.purge()
        assert (first.results, first.tasks, second.results, second.tasks) == (1, 1, 0, 0)
        assert await hq.store.high_seq() == high  # nothing written the second time

    run(tmp_path, test)


def test_the_purge_works_in_bounded_batches(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        results = [await hq.result(recorded_day=0) for _ in range(10)]
        tasks = [await hq.task(("done", "archived", "cancelled")[i % 3]) for i in range(7)]
        batches: list[int] = []
        write_local = hq.store.write_local

        async def counted(edits: list[Edit], **kwargs: Any) -> Any:
            batches.append(len(edits))
            return await write_local(edits, **kwargs)

        hq.store.write_local = counted  # type: ignore[method-assign]
        hq.at(40)
        report = await hq.retention.purge()
        assert (report.results, report.tasks) == (10, 7)
        assert batches and max(batches) <= 3 and sum(batches) == 17, batches
        assert await hq.deleted("results", results) == [True] * 10
        assert await hq.deleted("tasks", tasks) == [True] * 7

    run(tmp_path, test, batch_rows=3)


async def purges(hq: Hq) -> list[Any]:
    """HQ's audit entries of retention purges, in order."""
    return [e for e in await hq.store.audit_chain(hq.store.node_id, limit=1_000_000) if e.action == "retention_purge"]


def test_each_batch_a_purge_deletes_commits_with_its_audit_entry_and_count(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        await hq.result(recorded_day=0)
        await hq.result(recorded_day=0)
        await hq.task("done")
        hq.at(40)
        await hq.retention.purge()
        events = await purges(hq)
        assert [(e.collection, e.counts, e.purpose) for e in events] == [
            ("results", {"rows": 2}, "scheduled"), ("tasks", {"rows": 1}, "scheduled")]
        for e in events:
            assert (e.actor, e.role, e.outcome, e.status, e.rows) == ("system", None, "ok", 200, ())
            assert (e.fields, e.masked, e.reference) == (("deleted",), (), None)
            assert e.at_ms == T0 + 40 * DAY_MS
        # an idle scheduled pass leaves nothing; one the operator asks for is recorded all the same
        await hq.retention.purge()
        assert len(await purges(hq)) == 2
        await hq.retention.purge(purpose="requested")
        events = await purges(hq)
        assert [(e.actor, e.counts, e.purpose) for e in events[2:]] == [("operator", {"rows": 0}, "requested")]

    run(tmp_path, test)


def test_a_stop_ends_the_purge_after_the_current_batch_and_what_it_did_is_recorded(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        results = [await hq.result(recorded_day=0) for _ in range(10)]
        stop = asyncio.Event()
        write_local = hq.store.write_local

        async def then_stop(edits: list[Edit], **kwargs: Any) -> Any:
            out = await write_local(edits, **kwargs)
            stop.set()
            return out

        hq.store.write_local = then_stop  # type: ignore[method-assign]
        hq.at(40)
        report = await hq.retention.purge(stop=stop)
        assert (report.results, report.tasks) == (4, 0)
        assert sum(await hq.deleted("results", results)) == 4
        assert [(e.collection, e.counts) for e in await purges(hq)] == [("results", {"rows": 4})]

    run(tmp_path, test, batch_rows=4)


def test_the_scheduled_purge_runs_every_interval_until_stopped(tmp_path: Path) -> None:
    async def test(hq: Hq) -> None:
        retention = Retention(hq.store, hq.audit, RetentionConfig(results_days=30, interval_s=0.05))
        stop = asyncio.Event()
        runner = asyncio.create_task(retention.run(stop))
        await asyncio.sleep(0.1)  # a first pass at start: nothing to do
        old = await hq.result(recorded_day=0)
        hq.at(40)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if (await hq.deleted("results", [old]))[0]:
                break
        assert await hq.deleted("results", [old]) == [True]
        stop.set()
        await asyncio.wait_for(runner, 2)  # stops at once, not after its interval

    run(tmp_path, test)
