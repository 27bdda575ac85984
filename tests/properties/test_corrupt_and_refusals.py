"""Refusals at the store: a second value under one stamp is refused and the first
kept; a batch holding one invalid change is refused whole, pulled or pushed."""

from __future__ import annotations

import asyncio
import os

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.changes import Change, ChangesPage, PushBatch, RefusedChange, encode_frame
from sync.errors import ClockDriftError, MalformedBatchError, SyncError
from sync.hlc import Clock, pack
from sync.ids import new_ulid
from sync.merge import encode_value
from sync.protocol import validate_changes
from sync.replicator import Replicator
from sync.responder import Responder
from sync.store.sqlite import SqliteStore
from tests.properties.strategies import REGISTERS, REPRESENTATIVES, corrupt_pair, values
from tests.properties.test_replica_convergence import T0_MS, dump, scratch_dir

MAX_DRIFT_MS = 60_000
ROWS = tuple(new_ulid(T0_MS, bytes([i]) * 10) for i in range(6))
few = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def clock() -> Clock:
    return Clock(lambda: T0_MS, MAX_DRIFT_MS)


async def hq_with_branch(directory: str) -> SqliteStore:
    hq = await SqliteStore.create(os.path.join(directory, "hq.db"), node_id="hq", role="hq", clock=clock())
    await hq.enroll("branch-a", parent="hq", role="branch")
    return hq


def change(spec_key: str, row_id: str, value: object, hlc: int, origin: str = "branch-a") -> Change:
    spec = REPRESENTATIVES[spec_key]
    return Change(spec.collection, row_id, spec.name, msgspec.Raw(encode_value(value)), hlc, origin)  # type: ignore[arg-type]


def push(changes: list[Change], seq: int) -> PushBatch:
    """The branch's run of rows (seq - 1, seq]: one row per push."""
    return PushBatch(node="branch-a", store_id="01HF7YAT00AAAAAAAAAAAAAAAA", since=seq - 1, from_seq=seq - 1, to_seq=seq, changes=changes)


@pytest.mark.parametrize("merge_type", sorted(REGISTERS))
@few
@given(data=st.data())
def test_second_value_under_one_stamp_is_refused_and_the_first_kept(merge_type: str, data: st.DataObject) -> None:
    """Pushed or pulled, a change reusing a stored (hlc, origin) with another value
    is answered with RefusedChange(index, "corrupt"); the rest of its batch applies."""
    spec = REPRESENTATIVES[merge_type]
    first, second = data.draw(corrupt_pair(spec))
    v1, v2 = spec.decoder.decode(first.raw), spec.decoder.decode(second.raw)
    other = change("lww", ROWS[1], data.draw(values(REPRESENTATIVES["lww"])), first.hlc)

    async def scenario(directory: str) -> None:
        hq = await hq_with_branch(directory)
        try:
            responder = Responder(hq)
            ack = await responder.push(push([change(merge_type, ROWS[0], v1, first.hlc)], 1))
            assert (ack.applied, ack.refused) == (1, [])
            before = await hq.digest()
            ack = await responder.push(push([other, change(merge_type, ROWS[0], v2, first.hlc)], 2))
            assert ack.refused == [RefusedChange(1, "corrupt")] and ack.applied == 1
            row = await hq.read_row(spec.collection, ROWS[0])
            assert row is not None and row[spec.name] == v1
            assert (await dump(hq))[(spec.collection, ROWS[0], spec.name)] == (first.raw, first.hlc, "branch-a")
            assert await hq.digest() != before  # the other change did apply
        finally:
            await hq.close()
        # the same through pulls, in either order of arrival
        for i, (kept_value, refused_value) in enumerate([(v1, v2), (v2, v1)]):
            puller = await SqliteStore.create(os.path.join(directory, f"b{i}.db"), node_id="branch-b", role="branch", clock=clock())
            try:
                for value in (kept_value, refused_value):
                    kept = await puller.digest()
                    report = await puller.apply_pulled(
                        validate_changes([change(merge_type, ROWS[2], value, first.hlc)], clock=puller.clock),
                        peer="hq", peer_store_id=hq.store_id, since=0, cursor=0,
                    )
                assert report.refused == [RefusedChange(0, "corrupt")] and report.applied == 0
                assert await puller.digest() == kept
                row = await puller.read_row(spec.collection, ROWS[2])
                assert row is not None and row[spec.name] == kept_value
            finally:
                await puller.close()

    with scratch_dir() as directory:
        asyncio.run(scenario(directory))


#: ways to spoil one change of a batch, and the error that refuses the batch
SPOILERS: dict[str, tuple[type[SyncError], str]] = {
    "value out of range": (MalformedBatchError, ".value"),
    "unknown field": (MalformedBatchError, ".field"),
    "bad row id": (MalformedBatchError, ".row_id"),
    "bad origin": (MalformedBatchError, ".origin"),
    "unknown collection": (MalformedBatchError, ".collection"),
    "stamped in the future": (ClockDriftError, ".hlc"),
}


def spoil(c: Change, how: str) -> Change:
    match how:
        case "value out of range":
            return msgspec.structs.replace(c, value=msgspec.Raw(encode_value(8)))
        case "unknown field":
            return msgspec.structs.replace(c, field="star_levels")
        case "bad row id":
            return msgspec.structs.replace(c, row_id="customer-1")
        case "bad origin":
            return msgspec.structs.replace(c, origin="Branch-A")
        case "unknown collection":
            return msgspec.structs.replace(c, collection="customer")
        case "stamped in the future":
            return msgspec.structs.replace(c, hlc=pack(T0_MS + MAX_DRIFT_MS + 1))
    raise AssertionError(how)


async def pull_cursor(store: SqliteStore) -> tuple[int, int]:
    link = await store.link("hq")
    return (0, 0) if link is None else (link.pull_since, link.pull_cursor)


async def acked(store: SqliteStore) -> tuple[int, int]:
    link = await store.link("branch-a")
    return (0, 0) if link is None else (link.acked_since, link.acked_through)


valid_batches = st.lists(
    st.tuples(st.sampled_from(ROWS), st.integers(0, 7), st.integers(0, 50)), min_size=1, max_size=6
).map(lambda rows: [change("lww", r, v, pack(T0_MS - 1_000, c)) for r, v, c in rows])


@few
@given(batch=valid_batches, how=st.sampled_from(sorted(SPOILERS)), data=st.data())
def test_batch_with_one_invalid_change_is_refused_whole(batch: list[Change], how: str, data: st.DataObject) -> None:
    """validate_changes names the bad change; a pulled page or a push holding it
    stores nothing and moves no cursor; without it, the same batch applies."""
    index = data.draw(st.integers(0, len(batch)))
    bad = [*batch[:index], spoil(batch[min(index, len(batch) - 1)], how), *batch[index:]]
    error, where = SPOILERS[how]
    if how != "unknown collection":  # that one is stopped earlier, by the frame decoder
        with pytest.raises(error) as info:
            validate_changes(bad, clock=clock())
        assert info.value.where == f"$.changes[{index}]{where}"  # type: ignore[attr-defined]

    async def scenario(directory: str) -> None:
        hq = await hq_with_branch(directory)
        branch = await SqliteStore.create(os.path.join(directory, "a.db"), node_id="branch-a", role="branch", clock=clock())
        pages = [[change("lww", ROWS[0], 1, pack(T0_MS - 5_000), origin="hq")], bad, batch]

        async def upstream(route: str, body: bytes) -> bytes:
            """HQ answers pushes; pulls get the next crafted page."""
            if route == "push":
                return await Responder(hq).handle(route, body)
            changes = pages.pop(0)
            return encode_frame(
                ChangesPage(node="hq", store_id=hq.store_id, changes=changes, since=0, cursor=9, high=9, more=False, now_ms=T0_MS)
            )

        try:
            replicator = Replicator(branch, upstream, upstream="hq")  # type: ignore[arg-type]
            await replicator.sync_once()
            before, cursor = await branch.digest(), await pull_cursor(branch)
            with pytest.raises(error):
                await replicator.sync_once()
            assert await branch.digest() == before and await pull_cursor(branch) == cursor == (9, 9)
            await replicator.sync_once()
            assert await branch.digest() != before  # the batch alone was fine

            responder = Responder(hq)
            before, (since, through) = await hq.digest(), await acked(hq)

            def next_batch(changes: list[Change]) -> PushBatch:
                return PushBatch(node="branch-a", store_id=branch.store_id, since=since, from_seq=through, to_seq=through + 1, changes=changes)

            with pytest.raises(error):
                await responder.handle("push", encode_frame(next_batch(bad)))
            assert await hq.digest() == before and await acked(hq) == (since, through)
            ack = await responder.push(next_batch(batch))
            assert ack.acked_through == through + 1 and await hq.digest() != before
        finally:
            await hq.close()
            await branch.close()

    with scratch_dir() as directory:
        asyncio.run(scenario(directory))
