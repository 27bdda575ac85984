"""Background key work every node does after changes arrive.

- Take the scope keys addressed to this node (``scope_key`` records) into its
  keystore, then shred the records: live keys live only in the keystore.
- Follow scope-key epochs: once the live version is here, re-wrap any data key
  still under an older version, then destroy the older versions.
- Shred the data keys of deleted (erased) customers, including keys that arrive
  after the deletion.
- At HQ: wrap each customer's data keys for every scope group it belongs to, and
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
from server.keyring import CUSTOMER_PII, INDEXED, Keyring, customer_groups, flush_wal
from sync.edits import Edit

log = logging.getLogger(__name__)

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
        self._retired_seq = 0
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
            retired = await self._retired_since_last_pass()
            if retired or report.keys_shredded or report.scope_keys_received or report.scope_keys_destroyed:
                if not await flush_wal(self.store):
                    self._retired_seq = 0  # look again next pass
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

    async def _retired_since_last_pass(self) -> bool:
        """Whether key records were shredded since the last pass, here or by sync
        (an erasure or a key rotation elsewhere): old keys, and the ciphertext
        they opened, may sit in the WAL until it is checkpointed."""
        high = await self.store.high_seq()
        found = await self.store.rows_after("keys", self._retired_seq, limit=1, deleted=True)
        self._retired_seq = high
        return bool(found)

    async def _epoch(self, group: str, field_class: str) -> int:
        rows = await self.store.find_rows("keys", kind="epoch", scope_group=group, field_class=field_class)
        return max((r["scope_version"] or 0 for r in rows), default=0)

    async def _follow_epochs(self, report: StewardReport) -> None:
        for epoch in await self.store.find_rows("keys", kind="epoch"):
            group, cls, live = epoch["scope_group"], epoch["field_class"], epoch["scope_version"]
            old = [k for k in self.keystore.scope_keys(group, cls) if k.version < live]
            if not old:
                continue
            new = self.keystore.scope_key(group, cls, live)
            if new is None:
                continue  # the live key has not reached this node yet: keep the old one until it has
            for key in old:
                records = await self.store.find_rows(
                    "keys", kind="data_key", scope_group=group, field_class=cls, scope_version=key.version, deleted=False
                )
                edits: list[Edit] = []
                for record in records:
                    try:
                        edits += self.keyring.rewrap_edits(record, new)
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
        """HQ: wrap data keys for groups that lack them; compute missing indexes.
        Only customers holding PII have either to do."""
        async for chunk in self._changed("customers", "_hq_seq", any_of=tuple(CUSTOMER_PII), deleted=False):
            records = await self.store.find_rows(
                "keys", customer_id=[r["row_id"] for r in chunk], kind="data_key", deleted=False, limit=len(chunk) * 40
            )
            by_customer: dict[str, list[dict[str, Any]]] = {}
            for record in records:
                by_customer.setdefault(record["customer_id"], []).append(record)
            edits: list[Edit] = []
            for row in chunk:
                edits += self._wrap_missing(row, by_customer.get(row["row_id"], []), report)
                edits += self._index_missing(row, by_customer.get(row["row_id"], []), report)
            if edits:
                await self.store.write_local(edits)

    def _wrap_missing(self, row: dict[str, Any], records: list[dict[str, Any]], report: StewardReport) -> list[Edit]:
        edits: list[Edit] = []
        groups = customer_groups(row, self.hq)
        have = {(r["field_class"], r["key_version"], r["scope_group"]) for r in records}
        for record in records:
            cls, version = record["field_class"], record["key_version"]
            missing = [g for g in groups if (cls, version, g) not in have]
            if not missing:
                continue
            try:
                key = self.keyring.unwrap_data_record(record)
            except UnwrapError:
                continue
            for group in missing:
                scope_key = self.keyring.latest_scope_key(group, cls)
                if scope_key is not None:
                    edits += self.keyring.wrap_data_key_edits(row["row_id"], cls, key, scope_key)
                    have.add((cls, version, group))
                    report.wrapped_for_groups += 1
        return edits

    def _index_missing(self, row: dict[str, Any], records: list[dict[str, Any]], report: StewardReport) -> list[Edit]:
        index_key = self.keyring.index_key()
        if index_key is None:
            return []
        edits: list[Edit] = []
        for field, (index_field, normalise) in INDEXED.items():
            sealed = row.get(field)
            if sealed is None or row.get(index_field) is not None:
                continue
            version = sealed_key_version(sealed)
            for record in records:
                if record["field_class"] == CUSTOMER_PII[field] and record["key_version"] == version:
                    try:
                        key = self.keyring.unwrap_data_record(record)
                        plain = open_field(key, FieldContext("customers", row["row_id"], field, key.version), sealed)
                        value = self.keyring.lookup_index(field, plain.decode())
                    except Exception:  # noqa: BLE001 - unopenable or unnormalisable: leave it unindexed
                        break
                    if value is not None:
                        edits.append(Edit("customers", row["row_id"], index_field, "set", value[1]))
                        report.indexed += 1
                    break
        return edits
