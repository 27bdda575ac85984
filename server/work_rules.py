"""The work rules at a node: a periodic sweep of its rows (server/work/).

Every node sweeps, HQ and branches alike, offline too: it loads the customers,
tasks and results it holds, runs `server.work.cadence.sweep` at its clock's
``now``, and commits the edits. The rules are a function of the rows and the
instant, and the tasks they make have name-based ids, so two nodes holding the
same rows make the same rows, which merge into one after sync.

A node commits only what it may write: with its `server.policy.NodeScope`
given, a row whose edits the node's scope would not accept upstream (a field
its roles may not write, a task outside its rows) is left to a node that may
(HQ), instead of being refused at merge there. Where a node holds only part of
a customer's history (a branch does not hold results recorded at another
site), it may decide a care contact is due that HQ knows is not; the task it
makes is the same row HQ would make in that period, so nothing is duplicated.

Edits are committed ``batch_rows`` rows at a time, one collection per
transaction, each with one audit entry (action ``work_rules``, actor
``system``, the collection and changed field names, ``counts.rows`` and
``counts.edits``). Birthdays are opened for the sweep only, counted in one
audit entry (field ``birthday``, ``counts.opened``); the rules never store or
log them. An idle sweep records nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from crypto.errors import OpenError
from crypto.seal import FieldContext, open_field, sealed_key_version
from server.audit_log import SYSTEM, AuditLog
from server.config import WorkConfig
from server.work.calendar import WorkCalendar
from server.work.cadence import sweep
from sync.edits import Edit, InvalidEditError
from sync.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

Born = tuple[int, int] | None
#: customer row -> (month, day) of the birthday, or None; may be async
BirthdayOf = Callable[[Mapping[str, Any]], Born | Awaitable[Born]]
ACTION = "work_rules"


class WorkReport(msgspec.Struct, kw_only=True):
    """One sweep: what it decided and what it committed."""

    ran_at_ms: int
    #: rows changed (tasks made or moved, customers updated), and their edits
    rows: int = 0
    edits: int = 0
    #: rows decided but left to a node that may write them (outside this node's scope)
    skipped_rows: int = 0
    #: rows that changed under the sweep and were left to the next one
    conflicts: int = 0
    birthdays_opened: int = 0


def calendar_of(work: WorkConfig) -> WorkCalendar:
    """The node's work calendar from its ``[work]`` config."""
    return WorkCalendar(tz=work.tz, holidays=frozenset(work.holidays), working_days=frozenset(work.working_days))


class WorkRules:
    """A node's sweep of the work rules (see the module docstring)."""

    def __init__(self, store: SqliteStore, audit: AuditLog, calendar: WorkCalendar, *,
                 birthday_of: BirthdayOf | None = None, scope: Any = None, interval_s: float = 900.0,
                 batch_rows: int = 500, page_rows: int = 5_000) -> None:
        if batch_rows < 1 or page_rows < 1:
            raise ValueError("batch_rows and page_rows must be >= 1")
        self.store = store
        self.audit = audit
        self.calendar = calendar
        self.birthday_of = birthday_of
        #: the node's `server.policy.NodeScope` (None: write everything decided)
        self.scope = scope
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.page_rows = page_rows
        self._lock = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``interval_s`` until ``stop`` is set. The first sweep waits
        an interval too: a node that starts (or restarts after a crash, or after
        days offline) first syncs, so it decides on what the others decided
        meanwhile, not on its stale copy."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
                return
            except TimeoutError:
                pass
            try:
                await self.sweep_once()
            except Exception:  # noqa: BLE001 - a failed sweep is retried next time; the node keeps serving
                log.exception("work_rules.sweep failed")

    async def _all(self, collection: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after = ""
        while True:
            page = await self.store.find_rows(collection, limit=self.page_rows, after=after)
            rows += page
            if len(page) < self.page_rows:
                return rows
            after = page[-1]["row_id"]

    async def decide(self, *, now_ms: int) -> tuple[list[Edit], dict[tuple[str, str], dict[str, Any]], int]:
        """The sweep's edits at ``now_ms`` (before the scope filter), the rows
        they were decided on, and how many birthdays were opened."""
        customers = await self._all("customers")
        tasks = await self._all("tasks")
        results = await self._all("results")
        consents = await self._all("consents")
        born: dict[str, tuple[int, int]] = {}
        opened = 0
        if self.birthday_of is not None:
            for c in customers:
                if c.get("deleted") or c.get("birthday") is None:
                    continue
                value = self.birthday_of(c)
                if inspect.isawaitable(value):
                    value = await value
                opened += 1
                if value is not None:
                    born[c["row_id"]] = value
        edits = sweep(customers, tasks, results, now_ms=now_ms, calendar=self.calendar,
                      birthday_of=born.get if self.birthday_of is not None else None, consents=consents)
        rows = {("customers", c["row_id"]): c for c in customers}
        rows.update({("tasks", t["row_id"]): t for t in tasks})
        return edits, rows, opened

    async def sweep_once(self, *, now_ms: int | None = None) -> WorkReport:
        """Run the rules at ``now_ms`` (the store's clock by default) and commit
        what they decide (see the module docstring)."""
        async with self._lock:
            now = self.store.clock.now_ms() if now_ms is None else now_ms
            report = WorkReport(ran_at_ms=now)
            edits, rows, opened = await self.decide(now_ms=now)
            report.birthdays_opened = opened
            if opened:
                await self.audit.record(SYSTEM, "read", collection="customers", fields=("birthday",),
                                        purpose="birthday_care", counts={"opened": opened})
            groups: dict[tuple[str, str], list[Edit]] = defaultdict(list)
            for e in edits:
                groups[(e.collection, e.row_id)].append(e)
            allowed: dict[str, list[list[Edit]]] = defaultdict(list)
            for key, group in groups.items():
                if self._may_write(key, rows.get(key), group):
                    allowed[key[0]].append(group)
                else:
                    report.skipped_rows += 1
            for collection in sorted(allowed):
                groups_of = allowed[collection]
                for i in range(0, len(groups_of), self.batch_rows):
                    await self._commit(collection, groups_of[i:i + self.batch_rows], report)
            if report.rows or report.skipped_rows:
                log.info("work_rules.swept", extra={"rows": report.rows, "edits": report.edits,
                                                    "skipped": report.skipped_rows, "conflicts": report.conflicts})
            return report

    def _may_write(self, key: tuple[str, str], row: Mapping[str, Any] | None, group: list[Edit]) -> bool:
        if self.scope is None:
            return True
        collection, row_id = key
        after = dict(row) if row is not None else {"row_id": row_id}
        for e in group:
            if e.op == "set":
                after[e.field] = e.value
        return all(self.scope.may_write(collection, after, e.field) for e in group)

    async def _commit(self, collection: str, groups: list[list[Edit]], report: WorkReport) -> None:
        edits = [e for g in groups for e in g]
        try:
            await self.store.write_local(edits, audit=self._entry(collection, groups))
        except InvalidEditError:
            # a row changed under the sweep (a status moved on meanwhile): row by row, the rest goes in
            for group in groups:
                try:
                    await self.store.write_local(group, audit=self._entry(collection, [group]))
                except InvalidEditError:
                    report.conflicts += 1
                    continue
                report.rows += 1
                report.edits += len(group)
            return
        report.rows += len(groups)
        report.edits += len(edits)

    def _entry(self, collection: str, groups: list[list[Edit]]) -> Any:
        fields = sorted({e.field for g in groups for e in g})
        return self.audit.draft(SYSTEM, ACTION, collection=collection, fields=fields, purpose="scheduled",
                                counts={"rows": len(groups), "edits": sum(len(g) for g in groups)})


def keyring_birthdays(keyring: Any) -> BirthdayOf:
    """``birthday_of`` for a node: opens a customer's sealed birthday with the
    keys this node holds (None when it holds none, or the value is no date)."""
    async def birthday_of(row: Mapping[str, Any]) -> Born:
        sealed = row.get("birthday")
        if sealed is None:
            return None
        version = sealed_key_version(sealed)
        if version is None:
            return None
        keys, _ = await keyring.data_keys(row["row_id"], row)
        key = keys.get(("identity", version))
        if key is None:
            return None
        try:
            text = open_field(key, FieldContext("customers", row["row_id"], "birthday", version), sealed).decode()
        except (OpenError, UnicodeDecodeError):
            return None
        return month_day(text)

    return birthday_of


def month_day(text: str) -> Born:
    """(month, day) of a ``YYYY-MM-DD`` date, or None."""
    parts = text.strip().split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    month, day = int(parts[1]), int(parts[2])
    return (month, day) if 1 <= month <= 12 and 1 <= day <= 31 else None
