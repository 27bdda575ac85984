"""Retention at HQ: a scheduled purge of expired results and closed tasks.

HQ's ``[retention]`` (`server.config.RetentionConfig`) says how long the work's
leftovers are kept:

* a result ``results_days`` after its ``recorded_at_ms`` (a result without one:
  after it was written, the earliest stamp of its row);
* a task that is ``done``, ``archived`` or ``cancelled`` ``closed_tasks_days``
  after it reached that status: the stamp of its ``status`` field. Status only
  moves forward, so a closed task never reopens, and an edit of another field
  (a counter, a note on the assignee) does not restart the period. Open tasks
  are never purged here.

A purge tombstones the expired rows through `write_local`, like any deletion
made at HQ: the tombstones replicate to every node that holds the rows, which
delete them too, and a tombstone shreds a result's sealed notes wherever it
lands (a branch that edits a purged task meanwhile loses: delete wins). Only HQ
purges; the nodes below follow by sync.

Candidates come from indexes of the live rows (`SqliteStore.index_live_rows`:
results by ``recorded_at_ms``, tasks by ``status``), which HQ builds on its first
purge, so a run reads the expired results and the closed tasks, not the table.
Rows are tombstoned ``batch_rows`` at a time, one transaction each, so a purge
never holds the write lock for long and syncs go on between batches.

Each batch commits with its audit entry: action ``retention_purge``, actor
``system`` (scheduled) or ``operator`` (asked for), the collection, the changed
field (``deleted``), purpose ``scheduled`` or ``requested``, and the count
(``counts.rows``). A run an operator asks for that finds nothing is recorded
too; an idle scheduled pass records nothing. Then audit entries past
``audit_days`` go (`server.audit_retention.prune_audit`), itself recorded.

No web framework here: the node schedules `Retention.run`; the route
(``POST /retention/run``) and ``outpost retention run hq`` call `Retention.purge`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import msgspec

from server.audit_log import OPERATOR, SYSTEM, AuditLog
from server.audit_retention import prune_audit
from server.config import RetentionConfig
from server.keyring import flush_wal
from sync.edits import Edit
from sync.hlc import wall_ms_of
from sync.schema import TaskStatus
from sync.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
#: the statuses after which a task is only kept for the record
CLOSED_STATUSES: tuple[TaskStatus, ...] = ("done", "archived", "cancelled")
#: why a purge ran: on its schedule, or because the operator asked
Purpose = Literal["scheduled", "requested"]


class RetentionReport(msgspec.Struct, kw_only=True):
    """One purge at HQ: how many rows of each collection it tombstoned, and the
    cut-offs it applied (Unix ms). The deletions reach the other nodes by sync."""

    #: when the purge ran, by HQ's clock
    ran_at_ms: int
    #: results tombstoned: recorded before `results_before_ms`
    results: int
    #: tasks tombstoned: done, archived or cancelled before `tasks_closed_before_ms`
    tasks: int
    results_before_ms: int
    tasks_closed_before_ms: int


class Retention:
    """HQ's purge of expired rows (see the module docstring)."""

    def __init__(self, store: SqliteStore, audit: AuditLog, periods: RetentionConfig, *,
                 batch_rows: int = 1_000) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        self.store = store
        self.audit = audit
        self.periods = periods
        self.batch_rows = batch_rows
        #: one purge at a time: a requested run waits for a scheduled one
        self._lock = asyncio.Lock()
        self._indexed = False
        self._purpose: Purpose = "scheduled"

    async def run(self, stop: asyncio.Event) -> None:
        """Purge now, then every ``interval_s``, until ``stop`` is set (a purge in
        progress ends after its current batch)."""
        while not stop.is_set():
            try:
                await self.purge(stop=stop)
            except Exception:  # noqa: BLE001 - a failed purge is retried next time; the node keeps serving
                log.exception("retention.purge failed")
            try:
                await asyncio.wait_for(stop.wait(), self.periods.interval_s)
            except TimeoutError:
                pass

    async def purge(self, *, purpose: Purpose = "scheduled", now_ms: int | None = None,
                    stop: asyncio.Event | None = None) -> RetentionReport:
        """Tombstone the results and closed tasks whose period has run out by
        ``now_ms`` (HQ's clock by default), and record it (see the module
        docstring). A ``stop`` set meanwhile ends it after the current batch;
        what it purged until then is recorded and reported."""
        async with self._lock:
            if not self._indexed:
                await self.store.index_live_rows("results", "recorded_at_ms")
                await self.store.index_live_rows("tasks", "status")
                self._indexed = True
            now = self.store.clock.now_ms() if now_ms is None else now_ms
            report = RetentionReport(
                ran_at_ms=now, results=0, tasks=0,
                results_before_ms=now - self.periods.results_days * DAY_MS,
                tasks_closed_before_ms=now - self.periods.closed_tasks_days * DAY_MS,
            )
            self._purpose = purpose
            report.results = await self._purge_results(report.results_before_ms, stop)
            report.tasks = await self._purge_tasks(report.tasks_closed_before_ms, stop)
            if purpose == "requested" and not (report.results or report.tasks):
                await self.audit.record(OPERATOR, "retention_purge", collection="results", purpose=purpose,
                                        counts={"rows": 0})
            await prune_audit(self.store, self.audit, keep_ms=self.periods.audit_days * DAY_MS, now_ms=now)
            if report.results or report.tasks:
                await flush_wal(self.store)  # the shredded notes leave the WAL too
                log.info("retention.purged", extra={"results": report.results, "tasks": report.tasks,
                                                    "purpose": purpose})
            return report

    async def _purge_results(self, before_ms: int, stop: asyncio.Event | None) -> int:
        purged = 0
        while not _stopped(stop):
            expired = await self.store.live_rows_before(
                "results", "recorded_at_ms", before_ms, limit=self.batch_rows)
            done = await self._tombstone("results", expired) if expired else 0
            if not done:
                break
            purged += done
        # results that state no time: from when they were written
        after = ""
        while not _stopped(stop):
            rows = await self.store.live_row_stamps(
                "results", after=after, limit=self.batch_rows, recorded_at_ms=None)
            if not rows:
                break
            after = rows[-1][0]
            expired = [row_id for row_id, stamp in rows if wall_ms_of(stamp) < before_ms]
            if expired:
                purged += await self._tombstone("results", expired)
        return purged

    async def _purge_tasks(self, closed_before_ms: int, stop: asyncio.Event | None) -> int:
        purged = 0
        for status in CLOSED_STATUSES:
            after = ""
            while not _stopped(stop):
                rows = await self.store.live_row_stamps(
                    "tasks", "status", after=after, limit=self.batch_rows, status=status)
                if not rows:
                    break
                after = rows[-1][0]
                expired = [row_id for row_id, stamp in rows if wall_ms_of(stamp) < closed_before_ms]
                if expired:
                    purged += await self._tombstone("tasks", expired)
        return purged

    async def _tombstone(self, collection: str, row_ids: list[str]) -> int:
        """Delete the rows in one transaction, with its audit entry; returns how
        many it deleted (not those deleted meanwhile by someone else, an erasure)."""
        entry = self.audit.draft(OPERATOR if self._purpose == "requested" else SYSTEM, "retention_purge",
                                 collection=collection, fields=("deleted",), purpose=self._purpose,
                                 counts={"rows": len(row_ids)})
        changes = await self.store.write_local([Edit(collection, r, "deleted", "set", True) for r in row_ids],
                                               audit=entry)
        return sum(1 for c in changes if c.field == "deleted")


def _stopped(stop: asyncio.Event | None) -> bool:
    return stop is not None and stop.is_set()
