"""Tampering with a node's audit chain in its SQLite file, directly: every kind
of edit is found by the chain check (`server.audit_verify.verify_chain`, which
`outpost audit verify` and the node's self-check run), at the right entry.

The store's triggers refuse UPDATE and DELETE, so each edit first drops them,
as someone with the file and the sqlite3 shell would."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from crypto.identity import NodeIdentity
from server.audit_verify import sign_checkpoint, verify_chain
from sync.audit import AuditDraft, AuditEntry, chain_entry, entry_hash
from sync.hlc import Clock
from sync.store import audit_rows
from sync.store.sqlite import SqliteStore, wall_clock_ms

NODE = "branch-a"
ENTRIES = 30
ROW = "01JD0QK2M6X3Z1V9A8B7C6D5R{}"


def _draft(i: int) -> AuditDraft:
    return AuditDraft(at_ms=1_000 + i, actor=f"user-{i % 3}", role="agent", action="read",
                      rows=(ROW.format(i % 10),), shown=("name", "phone"), masked=("id_number",), purpose="inbound_call")


def make_chain(path: Path, identity: NodeIdentity, *, checkpoint_at: tuple[int, ...] = (10, 20, 30)) -> None:
    async def go() -> None:
        store = await SqliteStore.create(path, node_id=NODE, role="branch", clock=Clock(wall_clock_ms, 60_000))
        try:
            for i in range(1, ENTRIES + 1):
                entry = await store.append_audit(_draft(i))
                if i in checkpoint_at:
                    await store.add_audit_checkpoint(sign_checkpoint(identity, entry.seq, entry.hash, 5_000 + i))
        finally:
            await store.close()

    asyncio.run(go())


def check(path: Path, identity: NodeIdentity) -> list[tuple[int, str]]:
    async def go() -> list[tuple[int, str]]:
        store = await SqliteStore.open(path, clock=Clock(wall_clock_ms, 60_000))
        try:
            report = await verify_chain(store, NODE, own_key=(identity.key_version, identity.public().sign_pub))
        finally:
            await store.close()
        return [(b.seq, b.kind) for b in report.breaks]

    return asyncio.run(go())


def tamper(path: Path, *statements: str, params: tuple[tuple[object, ...], ...] = ()) -> None:
    db = sqlite3.connect(path)
    try:
        for trigger in ("audit_entries_no_update", "audit_entries_retention", "audit_checkpoints_no_update"):
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for i, statement in enumerate(statements):
            db.execute(statement, params[i] if i < len(params) else ())
        db.commit()
    finally:
        db.close()


def read_entries(path: Path) -> list[AuditEntry]:
    db = sqlite3.connect(path)
    try:
        return [audit_rows.entry_of(r) for r in db.execute(f"{audit_rows.SELECT} ORDER BY seq")]
    finally:
        db.close()


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, NodeIdentity]:
    identity = NodeIdentity.generate(NODE)
    path = tmp_path / "branch-a.db"
    make_chain(path, identity)
    return path, identity


def test_an_untouched_chain_is_whole(chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    assert check(path, identity) == []


@pytest.mark.parametrize(("statement", "expected"), [
    ("UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 7", [(7, "edited")]),
    ("UPDATE audit_entries SET shown = 'name' WHERE seq = 12", [(12, "edited")]),
    ("UPDATE audit_entries SET purpose = NULL WHERE seq = 3", [(3, "edited")]),
    ("UPDATE audit_entries SET at_ms = at_ms + 1 WHERE seq = 25", [(25, "edited")]),
], ids=["actor", "fields-shown", "purpose", "time"])
def test_an_edited_entry_is_found_where_it_is(chain: tuple[Path, NodeIdentity], statement: str,
                                              expected: list[tuple[int, str]]) -> None:
    path, identity = chain
    tamper(path, statement)
    assert check(path, identity) == expected


def test_a_removed_entry_leaves_a_gap(chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    tamper(path, "DELETE FROM audit_entries WHERE seq = 15")
    assert check(path, identity) == [(15, "gap")]


def test_removing_the_last_entries_is_found_by_the_signed_checkpoint(chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    tamper(path, "DELETE FROM audit_entries WHERE seq > 27")
    assert check(path, identity) == [(28, "truncated")]


def test_two_swapped_entries_are_found(chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    tamper(path, "UPDATE audit_entries SET seq = -1 WHERE seq = 8", "UPDATE audit_entries SET seq = 8 WHERE seq = 9",
           "UPDATE audit_entries SET seq = 9 WHERE seq = -1")
    assert check(path, identity)[0] == (8, "edited")


def test_swapped_contents_keeping_the_numbers_break_the_links(chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    entries = {e.seq: e for e in read_entries(path)}
    a, b = entries[4], entries[5]
    # each row takes the other's content, then is re-hashed as an attacker would
    moved = [msgspec.structs.replace(b, seq=4), msgspec.structs.replace(a, seq=5)]
    moved = [msgspec.structs.replace(e, hash=entry_hash(e)) for e in moved]
    tamper(path, "DELETE FROM audit_entries WHERE seq IN (4, 5)",
           audit_rows.INSERT, audit_rows.INSERT,
           params=((), audit_rows.audit_params(moved[0]), audit_rows.audit_params(moved[1])))
    found = check(path, identity)
    assert found and found[0] == (4, "broken_link")


def test_an_inserted_entry_is_found_even_when_hashed_like_the_others(chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    entries = {e.seq: e for e in read_entries(path)}
    forged = chain_entry(NODE, 16, entries[15].hash, _draft(99))  # a proper hash after entry 15
    tamper(path, "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 15",
           "UPDATE audit_entries SET seq = seq - 999 WHERE seq > 1000",
           audit_rows.INSERT, params=((), (), audit_rows.audit_params(forged)))
    assert check(path, identity)[0] == (17, "edited")  # the old 16, renumbered


def test_a_chain_rewritten_whole_after_an_edit_differs_from_its_signed_checkpoints(
        chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    entries = read_entries(path)
    head = entries[0].prev
    rewritten = []
    for e in entries:  # who can write the file can recompute every hash, but cannot sign
        draft = AuditDraft(**{f: getattr(e, f) for f in AuditDraft.__struct_fields__})
        if e.seq == 5:
            draft = msgspec.structs.replace(draft, actor="someone-else")
        rewritten.append(chain_entry(NODE, e.seq, head, draft))
        head = rewritten[-1].hash
    tamper(path, "DELETE FROM audit_entries", *([audit_rows.INSERT] * len(rewritten)),
           params=((), *(audit_rows.audit_params(e) for e in rewritten)))
    assert check(path, identity) == [(10, "diverged"), (20, "diverged"), (30, "diverged")]


def test_a_forged_checkpoint_is_a_bad_signature(chain: tuple[Path, NodeIdentity]) -> None:
    path, identity = chain
    forger = NodeIdentity.generate(NODE)
    entries = {e.seq: e for e in read_entries(path)}
    forged = sign_checkpoint(forger, 15, entries[15].hash, 9_999)
    tamper(path, audit_rows.CHECKPOINT_INSERT, params=(audit_rows.checkpoint_params(forged),))
    assert check(path, identity) == [(15, "bad_signature")]


def test_the_store_refuses_updates_and_deletes_through_its_triggers(chain: tuple[Path, NodeIdentity]) -> None:
    path, _ = chain
    db = sqlite3.connect(path)
    try:
        for statement in ("UPDATE audit_entries SET actor = 'x'", "DELETE FROM audit_entries WHERE seq = 3",
                          "UPDATE audit_checkpoints SET seq = 1"):
            with pytest.raises(sqlite3.IntegrityError):
                db.execute(statement)
        assert db.execute("SELECT count(*) FROM audit_entries").fetchone() == (ENTRIES,)
    finally:
        db.close()


def test_retention_removes_old_entries_up_to_a_checkpoint_and_the_rest_still_verifies(
        chain: tuple[Path, NodeIdentity]) -> None:
    from server.audit_log import AuditLog
    from server.audit_retention import prune_audit

    path, identity = chain

    async def go() -> dict[str, int]:
        store = await SqliteStore.open(path, clock=Clock(wall_clock_ms, 60_000))
        try:
            # entries are at 1_001..1_030 ms; keep those from 1_025 on: checkpoint 20 is the last all-old one
            return await prune_audit(store, AuditLog(store, reveals_per_day=1), keep_ms=100_000 - 1_025,
                                     now_ms=100_000)
        finally:
            await store.close()

    assert asyncio.run(go()) == {NODE: 20}
    assert check(path, identity) == []
    kept = read_entries(path)
    assert kept[0].seq == 21 and kept[-1].action == "retention_purge" and kept[-1].counts == {NODE: 20}
    tamper(path, "DELETE FROM audit_entries WHERE seq = 21")  # below the anchor is gone; this is a gap
    assert check(path, identity) == [(21, "gap")]
