"""No action without its entry: each store operation that takes an audit entry
commits the entry in the transaction of what it records. Here the chain refuses
every new entry (a trigger, as a full disk or a corrupt index would), and each
operation must then change nothing; with the chain working, each leaves exactly
one entry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sync.audit import AuditDraft
from sync.changes import PullRequest, PushBatch
from sync.edits import Edit
from sync.hlc import Clock
from sync.responder import Responder, ServedSession
from sync.store.sqlite import SqliteStore, wall_clock_ms

HQ, BRANCH = "hq", "branch-a"
CUSTOMER = "01JD0QK2M6X3Z1V9A8B7C6D5E4"
REFUSE = "CREATE TRIGGER refuse_entries BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk full'); END"


def draft(action: str) -> AuditDraft:
    return AuditDraft(at_ms=wall_clock_ms(), actor="operator", action=action, collection="nodes", peer=BRANCH)


def on_session(session: ServedSession) -> AuditDraft:
    return AuditDraft(at_ms=wall_clock_ms(), actor=session.peer, role="node", action=f"sync_{session.route}",
                      collection="sync", peer=session.peer, counts=session.counts)


async def _stores(tmp: Path) -> tuple[SqliteStore, SqliteStore]:
    clock = Clock(wall_clock_ms, 60_000)
    hq = await SqliteStore.create(tmp / "hq.db", node_id=HQ, role="hq", clock=clock)
    branch = await SqliteStore.create(tmp / "branch.db", node_id=BRANCH, role="branch", clock=clock)
    await hq.enroll(BRANCH, parent=HQ, role="branch")
    await hq.write_local([Edit("customers", CUSTOMER, "star_level", "set", 3)])
    return hq, branch


async def _state(hq: SqliteStore) -> tuple[object, ...]:
    """What the operations below change at HQ, besides the chain."""
    node = await hq.node(BRANCH)
    link = await hq.link(BRANCH)
    row = await hq.read_row("customers", CUSTOMER)
    return (node, None if link is None else (link.acked_since, link.acked_through, link.served_cursor),
            None if row is None else row["star_level"], await hq.high_seq())


async def _entries(hq: SqliteStore) -> int:
    return len(await hq.audit_chain(HQ))


Operation = Callable[[SqliteStore, SqliteStore], Awaitable[object]]


async def _write(hq: SqliteStore, branch: SqliteStore) -> object:
    return await hq.write_local([Edit("customers", CUSTOMER, "star_level", "set", 6)], audit=draft("write"))


async def _offboard(hq: SqliteStore, branch: SqliteStore) -> object:
    return await hq.set_node_state(BRANCH, offboarding_ms=wall_clock_ms(), audit=draft("offboard"))


async def _enrol_keys(hq: SqliteStore, branch: SqliteStore) -> object:
    return await hq.set_node_keys(BRANCH, key_version=2, sign_pub=b"s" * 32, kem_pub=b"k" * 32,
                                  audit=draft("key_operation"))


async def _push(hq: SqliteStore, branch: SqliteStore) -> object:
    changes = await branch.write_local([Edit("customers", CUSTOMER, "star_level", "set", 7)])
    seq = await branch.high_seq()
    batch = PushBatch(node=BRANCH, store_id=branch.store_id, since=0, from_seq=0, to_seq=seq, changes=changes)
    return await Responder(hq, on_session=on_session).push(batch)


async def _pull(hq: SqliteStore, branch: SqliteStore) -> object:
    from sync.schema import SCHEMA_VERSION

    request = PullRequest(node=BRANCH, node_store_id=branch.store_id)
    return await Responder(hq, on_session=on_session).pull(request, SCHEMA_VERSION)


OPERATIONS: dict[str, Operation] = {
    "write": _write, "offboard": _offboard, "enrol keys": _enrol_keys, "push served": _push, "pull served": _pull,
}


@pytest.mark.parametrize("name", OPERATIONS)
def test_an_operation_whose_entry_cannot_be_written_does_not_happen(tmp_path: Path, name: str) -> None:
    async def go() -> None:
        hq, branch = await _stores(tmp_path)
        try:
            # the link exists (made on first contact, before anything it records)
            await hq.ensure_link(BRANCH, "downstream")
            await hq.reset_peer(BRANCH, branch.store_id)
            before, entries = await _state(hq), await _entries(hq)
            await hq._w.execute(REFUSE)  # noqa: SLF001 - the failure under test
            with pytest.raises(Exception, match="disk full"):
                await OPERATIONS[name](hq, branch)
            assert await _state(hq) == before, "the action happened without its entry"
            assert await _entries(hq) == entries
        finally:
            await hq.close()
            await branch.close()

    asyncio.run(go())


@pytest.mark.parametrize("name", OPERATIONS)
def test_an_operation_leaves_exactly_one_entry_with_it(tmp_path: Path, name: str) -> None:
    async def go() -> None:
        hq, branch = await _stores(tmp_path)
        try:
            before, entries = await _state(hq), await _entries(hq)
            await OPERATIONS[name](hq, branch)
            assert await _state(hq) != before, "the operation changed something"
            assert await _entries(hq) == entries + 1
        finally:
            await hq.close()
            await branch.close()

    asyncio.run(go())
