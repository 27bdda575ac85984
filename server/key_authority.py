"""HQ's part in the key hierarchy: it makes the scope keys, hands them to the
nodes of each group, rotates them, and erases customers by shredding their keys.

Who gets what comes from the access policy and HQ's registry (``[[nodes]]`` in
its site config): a node belongs to its own scope group and receives the scope
keys of the field classes the roles at its kind of site read (`grants`), less any
its registry entry's contract leaves out (``classes``, ``lookups``). HQ keeps
every scope key in its own keystore.

No web framework here: routes and the CLI call it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from crypto.identity import NodePublicKeys
from crypto.errors import UnwrapError
from crypto.keys import ScopeKey, new_key
from crypto.seal import FieldContext, open_field, seal_field, sealed_key_version
from server.config import NodeEntry, SiteConfig
from server.policy import NodeScope, Policy
from server.keyring import (
    CUSTOMER_PII,
    INDEX_CLASS,
    INDEX_GROUP,
    Keyring,
    NoScopeKeyError,
    epoch_row_id,
    flush_wal,
    record_edits,
    row_key_field,
    row_key_wraps,
)
from sync.audit import AuditDraft
from sync.edits import Edit
from sync.schema import FIELD_CLASSES, KeyRef, KeyWrap

log = logging.getLogger(__name__)

#: data-key records re-wrapped per transaction during a rotation
REWRAP_BATCH = 2_000


class NotInRegistryError(Exception):
    """Enrollment or a grant names a node HQ's registry does not list."""

    code = "not_in_registry"

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        super().__init__(f"node `{node_id}` is not in HQ's registry: add it under [[nodes]] in HQ's site config")
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"node": self.node_id}


class NoSuchScopeKeyError(Exception):
    """A rotation names a (group, class) scope key HQ does not have."""

    code = "no_such_scope_key"

    def __init__(self, group: str, field_class: str) -> None:
        self.group = group
        self.field_class = field_class
        super().__init__(f"HQ has no scope key `{group}/{field_class}`; groups are HQ and its registered nodes")
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"group": self.group, "field_class": self.field_class}


class CustomerGoneError(Exception):
    """The customer does not exist here, or is already deleted."""

    code = "not_found"

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(f"No live `customers` row `{customer_id}` here (never created, or already erased)")
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"collection": "customers", "row_id": self.customer_id}


class RotationReport(msgspec.Struct, frozen=True):
    group: str
    field_class: str
    old_version: int
    new_version: int
    rewrapped: int
    recipients: list[str]


class ErasureReport(msgspec.Struct, frozen=True):
    customer_id: str
    data_keys_shredded: int
    results_shredded: int
    rotations: list[RotationReport]


def grants(entry: NodeEntry, policy: Policy, scope: NodeScope | None = None) -> frozenset[str]:
    """The key classes a node receives: those its policy scope needs (``scope``, if
    the caller has it already), within its registry entry's contract."""
    contract = frozenset(entry.classes) | ({INDEX_CLASS} if entry.lookups else frozenset())
    return (scope or policy.node_scope(entry)).key_classes & contract


class KeyAuthority:
    """HQ's key operations over its keyring and registry."""

    def __init__(self, keyring: Keyring, config: SiteConfig, policy: Policy) -> None:
        self.keyring = keyring
        self.config = config
        #: the access policy in force (the node swaps in a reloaded one)
        self.policy = policy
        self.store = keyring.store
        self.keystore = keyring.keystore

    def groups(self) -> list[str]:
        return [self.config.node_id, *(e.node_id for e in self.config.nodes)]

    def _entry(self, node_id: str) -> NodeEntry:
        for entry in self.config.nodes:
            if entry.node_id == node_id:
                return entry
        raise NotInRegistryError(node_id)

    async def ensure_scope_keys(self) -> int:
        """Make version 1 of every scope key HQ lacks (each group x class, and the
        index key) and publish their epochs; returns how many were made."""
        made: list[ScopeKey] = []
        wanted = [(g, c) for g in self.groups() for c in FIELD_CLASSES] + [(INDEX_GROUP, INDEX_CLASS)]
        for group, cls in wanted:
            if self.keystore.latest_scope_key(group, cls) is None:
                key = ScopeKey(new_key(self.keyring.random), 1, group, cls)
                self.keystore.add_scope_key(key)
                made.append(key)
        if made:
            self.keystore.save()  # before any record depends on them
            edits = [e for k in made for e in _epoch_edits(k.group, k.field_class, k.version)]
            for key in made:
                edits.extend(await self._issue_edits(key))
            await self.store.write_local(edits)
            log.info("keys.scope made", extra={"count": len(made)})
        return len(made)

    async def _members(self, group: str, field_class: str) -> list[tuple[str, int, bytes]]:
        """(node, key version, key-receiving public key) of every enrolled node that
        should hold this scope key."""
        out = []
        for record in await self.store.nodes():
            if record.node_id == self.config.node_id or record.kem_pub is None or record.key_version is None:
                continue
            try:
                entry = self._entry(record.node_id)
            except NotInRegistryError:
                continue
            if field_class not in grants(entry, self.policy):
                continue
            if group != INDEX_GROUP and group != record.node_id:
                continue
            out.append((record.node_id, record.key_version, record.kem_pub))
        return out

    async def _issue_edits(self, key: ScopeKey) -> list[Edit]:
        edits: list[Edit] = []
        for node, version, kem_pub in await self._members(key.group, key.field_class):
            edits.extend(self.keyring.scope_key_edits(node, version, kem_pub, key))
        return edits

    async def enroll(self, public: NodePublicKeys, *, audit: AuditDraft | None = None) -> list[str]:
        """Record a node's public keys and send it the scope keys it is granted;
        returns the (group/class) keys issued. ``audit``: the entry recording the
        enrolment, committed with the wraps it issues."""
        entry = self._entry(public.node_id)
        classes = grants(entry, self.policy)
        edits: list[Edit] = []
        issued = []
        for key in self.keystore.scope_keys():
            if key.field_class not in classes or key.group not in (public.node_id, INDEX_GROUP):
                continue
            if key.version != self.keystore.latest_scope_key(key.group, key.field_class).version:  # type: ignore[union-attr]
                continue
            edits.extend(self.keyring.scope_key_edits(public.node_id, public.key_version, public.kem_pub, key))
            issued.append(f"{key.group}/{key.field_class}")
        if audit is not None:
            audit = msgspec.structs.replace(audit, counts={**audit.counts, "issued": len(issued)})
        # the registry change first: a failed issue leaves keys HQ can send again, never a
        # key wrapped for a node the registry does not know by that key
        await self.store.set_node_keys(
            public.node_id, key_version=public.key_version, sign_pub=public.sign_pub, kem_pub=public.kem_pub,
            audit=audit,
        )
        await self.store.write_local(edits)
        log.info("keys.enrolled", extra={"peer": public.node_id, "key_version": public.key_version, "issued": len(issued)})
        return sorted(issued)

    async def rotate_scope_key(self, group: str, field_class: str, *,
                               audit: AuditDraft | None = None) -> RotationReport:
        """Replace a scope key: make the next version, send it to the group's nodes,
        re-wrap every data key under it in batches, publish the new epoch (nodes then
        destroy the old version), and destroy the old version here. ``audit``: the
        entry recording the rotation, committed with the new key's first wraps."""
        old = self.keystore.latest_scope_key(group, field_class)
        if old is None:
            raise NoSuchScopeKeyError(group, field_class)
        new = ScopeKey(new_key(self.keyring.random), old.version + 1, group, field_class)
        self.keystore.add_scope_key(new)
        self.keystore.save()
        issue = await self._issue_edits(new)
        await self.store.write_local(issue, audit=audit)
        rewrapped = await self._rewrap(group, field_class, old.version, new)  # older ones were destroyed before
        await self.store.write_local(_epoch_edits(group, field_class, new.version))
        self.keystore.drop_scope_keys_below(group, field_class, new.version)
        self.keystore.save()
        await flush_wal(self.store)  # the old wraps leave the WAL too
        report = RotationReport(
            group=group,
            field_class=field_class,
            old_version=old.version,
            new_version=new.version,
            rewrapped=rewrapped,
            recipients=sorted({e.value.recipient for e in issue if e.field == "ref"}),
        )
        log.info(
            "keys.scope rotated",
            extra={"group": group, "class": field_class, "version": new.version, "rewrapped": rewrapped},
        )
        return report

    async def _rewrap(self, group: str, field_class: str, version: int, new: ScopeKey) -> int:
        """Re-wrap the data keys wrapped under ``version`` of a scope key under ``new``."""
        done = 0
        async for wraps in self.keyring.wraps_under(group, field_class, version, batch=REWRAP_BATCH):
            edits: list[Edit] = []
            for wrap in wraps:
                try:
                    edits += self.keyring.rewrap_edits(wrap, new)
                    done += 1
                except UnwrapError as exc:  # damaged: it stays unreadable
                    log.warning("keys.rewrap failed", extra={"row_id": wrap.customer_id, "reason": exc.reason})
            if edits:
                await self.store.write_local(edits)
        return done

    async def erase_customer(self, customer_id: str, *, audit: AuditDraft | None = None) -> ErasureReport:
        """PIPL Art. 47: tombstone the customer (shredding its sealed fields), shred its
        data keys and its results' notes, rotate every scope key that wrapped its
        data keys, and truncate the WAL so no page of the old keys stays behind.
        ``audit``, the erasure's entry, is committed with the tombstone."""
        row = await self.store.read_row("customers", customer_id)
        if row is None or row["deleted"]:
            raise CustomerGoneError(customer_id)
        keys = await self.store.find_rows("keys", customer_id=customer_id, kind="data_key")
        in_row = row_key_wraps(customer_id, row)  # the tombstone shreds these with the sealed fields
        results = await self.store.find_rows("results", customer_id=customer_id, deleted=False)
        edits = [Edit("customers", customer_id, "deleted", "set", True)]
        edits += [Edit("keys", k["row_id"], "deleted", "set", True) for k in keys if not k["deleted"]]
        edits += [Edit("results", r["row_id"], "deleted", "set", True) for r in results]
        if audit is not None:
            audit = msgspec.structs.replace(audit, counts={"data_keys": len(keys) + len(in_row),
                                                           "results": len(results)})
        await self.store.write_local(edits, audit=audit)
        pairs = sorted(
            {(k["scope_group"], k["field_class"]) for k in keys} | {(w.group, w.field_class) for w in in_row}
        )
        rotations = [await self.rotate_scope_key(g, c) for g, c in pairs]
        await flush_wal(self.store)
        log.info(
            "customer.erased",
            extra={"row_id": customer_id, "keys": len(keys), "results": len(results), "rotations": len(rotations)},
        )
        return ErasureReport(
            customer_id=customer_id,
            data_keys_shredded=sum(1 for k in keys if not k["deleted"]) + len(in_row),
            results_shredded=len(results),
            rotations=rotations,
        )

    async def rotate_customer_keys(self, customer_ids: Iterable[str]) -> int:
        """Give customers new data keys and re-seal their fields under them, one
        transaction per customer; the old keys are shredded. Returns how many."""
        done = 0
        for customer_id in customer_ids:
            if await rotate_customer_keys(self.keyring, customer_id, flush=False):
                done += 1
        if done:
            await flush_wal(self.store)
        return done


async def rotate_customer_keys(keyring: Keyring, customer_id: str, *, flush: bool = True,
                               audit: AuditDraft | None = None) -> bool:
    """New data keys for one customer, its fields re-sealed, its old keys shredded,
    in one transaction (any node holding its keys may do it), then (``flush``) the
    WAL checkpointed so neither the old ciphertext nor the old keys stay there. A
    class whose fields do not all open here is left as it is. False if nothing
    was rotated. ``audit``, the rotation's entry, is committed with it."""
    row = await keyring.store.read_row("customers", customer_id)
    if row is None or row["deleted"]:
        return False
    keys, newest = await keyring.data_keys(customer_id, row)
    edits: list[Edit] = []
    rotated: set[str] = set()
    for cls, version in sorted(newest.items()):
        fresh = keyring.new_data_key(version + 1)
        reseal: list[Edit] = []
        for field in (f for f, c in CUSTOMER_PII.items() if c == cls):
            sealed = row.get(field)
            if sealed is None:
                continue
            sealed_version = sealed_key_version(sealed)
            old = keys.get((cls, sealed_version)) if sealed_version is not None else None
            if old is None:
                break
            plain = open_field(old, FieldContext("customers", customer_id, field, old.version), sealed)
            ctx = FieldContext("customers", customer_id, field, fresh.version)
            reseal.append(Edit("customers", customer_id, field, "set", seal_field(fresh, ctx, plain)))
        else:
            try:
                wraps = keyring.wrap_everywhere(customer_id, row, cls, fresh)
            except NoScopeKeyError:
                continue
            if not any(e.collection == "customers" for e in wraps):
                # no home-group key here: the old wrap in the row goes; HQ wraps the new key there
                wraps.append(Edit("customers", customer_id, row_key_field(cls), "set", None))
            edits += wraps + reseal
            rotated.add(cls)
    if not rotated:
        return False
    records = await keyring.data_key_records(customer_id)
    edits += [Edit("keys", r["row_id"], "deleted", "set", True) for r in records if r["field_class"] in rotated]
    await keyring.store.write_local(edits, audit=audit)
    if flush:
        await flush_wal(keyring.store)
    return True


def _epoch_edits(group: str, field_class: str, version: int) -> list[Edit]:
    return record_edits(
        epoch_row_id(group, field_class),
        KeyRef(kind="epoch", scope_group=group, field_class=field_class),  # type: ignore[arg-type]
        KeyWrap(scope_version=version),
    )
