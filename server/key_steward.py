"""Background key work every node does after changes arrive.

- Take the scope keys addressed to this node (``scope_key`` records) into its
  keystore, then shred the records: live keys live only in the keystore.
- Follow scope-key epochs: once the live version is here, re-wrap any data key
  still under an older version, then destroy the older versions.
- Shred the data keys of deleted (erased) customers, including keys that arrive
  after the deletion.
- At HQ: wrap each customer's data keys for every scope group it belongs to (in
  the row for its home group, which changes when the customer moves), and
  fill in blind indexes a node without the index key could not compute.

After shredding anything it truncates the WAL (`SqliteStore.checkpoint`), so the
old wraps leave the WAL file as well as the database pages (secure_delete).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from crypto.errors import UnwrapError
from crypto.seal import FieldContext, open_field, sealed_key_version
from server.key_authority import rotate_customer_keys
from server.keyring import (
    CUSTOMER_PII,
    INDEXED,
    Keyring,
    WrappedDataKey,
    customer_groups,
    flush_wal,
    home_group,
    record_wrap,
    row_key_wraps,
)
from sync.edits import Edit

log = logging.getLogger(__name__)

#: above every key version: dropping the keys below it drops them all
NO_VERSION = 1 << 32

_CHUNK = 1_000


class StewardReport(msgspec.Struct):
    scope_keys_received: int = 0
    scope_keys_destroyed: int = 0
    rewrapped: int = 0
    keys_shredded: int = 0
    wrapped_for_groups: int = 0
    indexed: int = 0


class KeySteward:
    """Runs `run_once` on demand (`trigger`) and every ``interval_s``."""

    def __init__(self, keyring: Keyring, *, is_hq: bool, hq: str, interval_s: float = 5.0) -> None:
        self.keyring = keyring
        self.store = keyring.store
        self.keystore = keyring.keystore
        self.is_hq = is_hq
        self.hq = hq
        self.interval_s = interval_s
        self._customers_seq = 0
        self._keys_seq = 0
        self._hq_seq = 0
        self._retired_seen = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def trigger(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - a failed pass is retried; the node keeps serving
                log.exception("keys.steward failed")
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def run_once(self) -> StewardReport:
        async with self._lock:
            report = StewardReport()
            await self._receive(report)
            await self._follow_epochs(report)
            await self._shred_deleted(report)
            if self.is_hq:
                await self._complete_customers(report)
            retired = self._retired_since_last_pass()
            if retired or report.keys_shredded or report.scope_keys_received or report.scope_keys_destroyed:
                if not await flush_wal(self.store):
                    self._retired_seen = -1  # look again next pass
            if any(msgspec.structs.astuple(report)):
                log.info("keys.steward", extra=msgspec.structs.asdict(report))
            return report

    async def _receive(self, report: StewardReport) -> None:
        records = await self.store.find_rows(
            "keys", kind="scope_key", recipient=self.store.node_id, deleted=False
        )
        taken = []
        for record in records:
            if record["wrapped"] is None:
                continue
            try:
                key = self.keyring.unwrap_scope_record(record)
            except UnwrapError as exc:
                log.warning("keys.scope unwrap failed", extra={"row_id": record["row_id"], "reason": exc.reason})
                continue
            if key.version >= await self._epoch(key.group, key.field_class):
                self.keystore.add_scope_key(key)  # an older one was destroyed already: never revive it
            taken.append(record["row_id"])
        if taken:
            self.keystore.save()  # durable before the records that carried them are shredded
            await self.store.write_local([Edit("keys", row, "deleted", "set", True) for row in taken])
            report.scope_keys_received += len(taken)
            report.keys_shredded += len(taken)

    def _retired_since_last_pass(self) -> bool:
        """Whether secret values were replaced or shredded since the last pass, here
        or by sync (a key rotation or an erasure elsewhere, an edited phone): the
        old keys or ciphertext may sit in the WAL until it is checkpointed."""
        seen, self._retired_seen = self._retired_seen, self.store.retired_secrets
        return seen != self._retired_seen

    async def _epoch(self, group: str, field_class: str) -> int:
        rows = await self.store.find_rows("keys", kind="epoch", scope_group=group, field_class=field_class)
        return max((r["scope_version"] or 0 for r in rows), default=0)

    async def _follow_epochs(self, report: StewardReport) -> None:
        for epoch in await self.store.find_rows("keys", kind="epoch"):
            group, cls, live = epoch["scope_group"], epoch["field_class"], epoch["scope_version"]
            if epoch["deleted"] or live is None:  # HQ withdrew the key (an offboarded partner): destroy every version
                if self.keystore.scope_keys(group, cls):
                    report.scope_keys_destroyed += self.keystore.drop_scope_keys_below(group, cls, NO_VERSION)
                    self.keystore.save()
                continue
            old = [k for k in self.keystore.scope_keys(group, cls) if k.version < live]
            if not old:
                continue
            new = self.keystore.scope_key(group, cls, live)
            if new is None:
                continue  # the live key has not reached this node yet: keep the old one until it has
            for key in old:
                async for wraps in self.keyring.wraps_under(group, cls, key.version):
                    edits: list[Edit] = []
                    for wrap in wraps:
                        try:
                            edits += self.keyring.rewrap_edits(wrap, new)
                            report.rewrapped += 1
                        except UnwrapError:
                            continue
                    if edits:
                        await self.store.write_local(edits)
            report.scope_keys_destroyed += self.keystore.drop_scope_keys_below(group, cls, live)
            self.keystore.save()

    async def _changed(self, collection: str, cursor: str, **match: Any) -> AsyncIterator[list[dict[str, Any]]]:
        """Chunks of the rows of ``collection`` written after the steward's cursor
        attribute ``cursor`` that ``match`` (see `rows_after`); the cursor moves on
        as each chunk is handed out, and to the store's high mark at the end."""
        high = await self.store.high_seq()
        while rows := await self.store.rows_after(collection, getattr(self, cursor), limit=_CHUNK, **match):
            yield [r for _, r in rows]
            setattr(self, cursor, rows[-1][0])
        setattr(self, cursor, max(getattr(self, cursor), high))

    async def _shred_deleted(self, report: StewardReport) -> None:
        doomed: set[str] = set()
        async for deleted in self._changed("customers", "_customers_seq", deleted=True):
            ids = [r["row_id"] for r in deleted]
            doomed.update(r["row_id"] for r in await self.store.find_rows("keys", customer_id=ids, deleted=False))
        async for keys in self._changed("keys", "_keys_seq", kind="data_key", deleted=False):
            owners = sorted({r["customer_id"] for r in keys})
            gone = {g["row_id"] for g in await self.store.find_rows("customers", row_id=owners, deleted=True)}
            doomed.update(r["row_id"] for r in keys if r["customer_id"] in gone)
        if doomed:
            await self.store.write_local([Edit("keys", row, "deleted", "set", True) for row in sorted(doomed)])
            report.keys_shredded += len(doomed)

    async def _complete_customers(self, report: StewardReport) -> None:
        """HQ: wrap data keys for groups that lack them (the home group in the row,
        partners as records); compute missing indexes. Only customers holding PII
        have either to do."""
        async for chunk in self._changed("customers", "_hq_seq", any_of=tuple(CUSTOMER_PII), deleted=False):
            records = await self.store.find_rows(
                "keys", customer_id=[r["row_id"] for r in chunk], kind="data_key", deleted=False, limit=len(chunk) * 40
            )
            by_customer: dict[str, list[WrappedDataKey]] = {}
            emptied: dict[str, set[str]] = {}  # customer -> groups whose wrap was emptied
            for record in records:
                if record["wrapped"] is not None:
                    by_customer.setdefault(record["customer_id"], []).append(record_wrap(record))
                else:
                    emptied.setdefault(record["customer_id"], set()).add(record["scope_group"])
            edits: list[Edit] = []
            renewed: list[str] = []
            for row in chunk:
                groups = customer_groups(row, self.hq)
                records = by_customer.get(row["row_id"], [])
                stale = {w.record for w in records if w.group not in groups and w.record is not None}
                # a partner no longer contracted for the customer: its wraps are emptied (it purged the
                # row and its key records). Emptied, not deleted: deleting names the record for good.
                edits += [Edit("keys", record, "wrap", "set", None) for record in sorted(stale)]
                report.keys_shredded += len(stale)
                if emptied.get(row["row_id"], set()) & groups:
                    # contracted again: the partner gets new keys (its old ones, and the old records
                    # it purged, open nothing now), and every group their wraps
                    renewed.append(row["row_id"])
                    continue
                wraps = row_key_wraps(row["row_id"], row) + [w for w in records if w.record not in stale]
                edits += self._wrap_missing(row, wraps, report)
                edits += self._index_missing(row, wraps, report)
            if edits:
                await self.store.write_local(edits)
            for customer_id in renewed:
                if await rotate_customer_keys(self.keyring, customer_id, flush=False):
                    report.rewrapped += 1

    def _wrap_missing(self, row: dict[str, Any], wraps: list[WrappedDataKey], report: StewardReport) -> list[Edit]:
        """The wraps of each class's newest data key that the customer's groups lack:
        the row's own (home group) holds the newest key under the home group's
        scope key; each other group has a record."""
        edits: list[Edit] = []
        home = home_group(row, self.hq)
        newest: dict[str, int] = {}
        for wrap in wraps:
            newest[wrap.field_class] = max(newest.get(wrap.field_class, 0), wrap.key_version)
        for cls, version in newest.items():
            mine = [w for w in wraps if w.field_class == cls and w.key_version == version]
            placed = {(w.group, w.record is None) for w in mine}  # (group, carried in the row)
            missing = [g for g in sorted(customer_groups(row, self.hq)) if (g, g == home) not in placed]
            if not missing:
                continue
            key = None
            for wrap in mine:
                try:
                    key = self.keyring.unwrap(wrap)
                    break
                except UnwrapError:
                    continue
            if key is None:
                continue
            for group in missing:
                scope_key = self.keyring.latest_scope_key(group, cls)
                if scope_key is not None:
                    edits += self.keyring.wrap_data_key_edits(row["row_id"], cls, key, scope_key, in_row=group == home)
                    report.wrapped_for_groups += 1
        return edits

    def _index_missing(self, row: dict[str, Any], wraps: list[WrappedDataKey], report: StewardReport) -> list[Edit]:
        index_key = self.keyring.index_key()
        if index_key is None:
            return []
        edits: list[Edit] = []
        for field, (index_field, normalise) in INDEXED.items():
            sealed = row.get(field)
            if sealed is None or row.get(index_field) is not None:
                continue
            version = sealed_key_version(sealed)
            for wrap in wraps:
                if wrap.field_class == CUSTOMER_PII[field] and wrap.key_version == version:
                    try:
                        key = self.keyring.unwrap(wrap)
                        plain = open_field(key, FieldContext("customers", row["row_id"], field, key.version), sealed)
                        value = self.keyring.lookup_index(field, plain.decode())
                    except Exception:  # noqa: BLE001 - unopenable or unnormalisable: leave it unindexed
                        continue
                    if value is not None:
                        edits.append(Edit("customers", row["row_id"], index_field, "set", value[1]))
                        report.indexed += 1
                    break
        return edits
