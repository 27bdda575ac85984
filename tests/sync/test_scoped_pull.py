"""Scoped pulls and pushes, in memory: two SQLite stores and a `Responder` whose
peer scope is a plain rule (customers whose ``segment`` is in a set), so the
mechanics are tested without the policy:

* a row entering the scope arrives whole, with fields it never saw change;
* a row leaving it is purged, once, with a receipt from the purge hook;
* a page lost on the way is not counted as held: the row comes again;
* a scope whose shape changes is weighed again from the start;
* a refused write makes the peer drop what it pushed and take the row whole,
  keeping its local writes not yet pushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sync.changes import ChangesPage, decode_frame
from sync.edits import Edit
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.scope import PeerScope
from sync.store.sqlite import SqliteStore, wall_clock_ms

FIELDS = frozenset({"segment", "star_level", "tags", "deleted"})
C1, C2, C3 = "01M84BWR790000000000000001", "01M84BWR790000000000000002", "01M84BWR790000000000000003"


def scope(segments: set[str], fields: frozenset[str] = FIELDS) -> PeerScope:
    def rule(collection: str, values: Mapping[str, Any]) -> bool:
        return values["segment"] in segments

    return PeerScope(node="branch-a", groups=frozenset({"branch-a"}), classes=frozenset(), rows=rule,
                     reads={"customers": ("segment",), "tasks": (), "results": ()},
                     fields={"customers": fields, "tasks": frozenset(), "results": frozenset()},
                     writable={"customers": frozenset({"star_level", "tags"})},
                     fingerprint="-".join(sorted(segments)) + "/" + "-".join(sorted(fields)))


class Link:
    """HQ and branch-a stores, and a replicator between them whose transport a test can break."""

    def __init__(self, hq: SqliteStore, branch: SqliteStore, segments: set[str]) -> None:
        self.hq, self.branch = hq, branch
        self.segments = segments
        self.fields = FIELDS
        self.scoped = True
        self.receipts: list[tuple[list[str], int]] = []
        self.responder = Responder(hq, scope_for=lambda peer: scope(self.segments, self.fields) if self.scoped else None)
        self.lose_next_page = False
        self.replicator = Replicator(branch, self._transport, upstream="hq", on_purge=self._receipt)

    async def _transport(self, route: str, body: bytes) -> bytes:
        answer = await LocalTransport(self.responder)(route, body)  # type: ignore[arg-type]
        if route == "pull" and self.lose_next_page:
            self.lose_next_page = False
            raise ConnectionError("the page was lost on the way")
        return answer

    def _receipt(self, rows: list[str], keys: int) -> list[Edit]:
        self.receipts.append((rows, keys))
        return []

    async def held(self) -> set[str]:
        return set(await self.branch.row_ids("customers"))


def run(test: Callable[[Link], Awaitable[None]], tmp: Path, segments: set[str]) -> None:
    async def go() -> None:
        clock = Clock(wall_clock_ms, 60_000)
        hq = await SqliteStore.create(tmp / "hq.db", node_id="hq", role="hq", clock=clock)
        branch = await SqliteStore.create(tmp / "b.db", node_id="branch-a", role="branch",
                                          clock=Clock(wall_clock_ms, 60_000))
        await hq.enroll("branch-a", parent="hq", role="branch")
        await branch.enroll("hq", parent=None, role="hq")
        try:
            await test(Link(hq, branch, segments))
        finally:
            await hq.close()
            await branch.close()

    asyncio.run(go())


def test_a_row_entering_scope_arrives_whole_and_leaving_it_is_purged_once(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "gold"),
                                   Edit("customers", C1, "star_level", "set", 5),
                                   Edit("customers", C1, "arpu_fen", "set", 9_900)])
        await link.hq.write_local([Edit("customers", C2, "segment", "set", "silver")])
        await link.replicator.sync_once()
        assert await link.held() == {C2}
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "silver")])  # enters
        await link.replicator.sync_once()
        row = await link.branch.read_row("customers", C1)
        assert await link.held() == {C1, C2} and row is not None and row["star_level"] == 5, "whole"
        assert row["arpu_fen"] == 0, "a field outside the peer's scope stays absent"
        await link.hq.write_local([Edit("customers", C2, "segment", "set", "gold")])  # leaves
        report = await link.replicator.sync_once()
        assert report.purged == 1 and await link.held() == {C1}
        assert link.receipts == [([f"customers/{C2}"], 0)]
        await link.hq.write_local([Edit("customers", C2, "star_level", "set", 1)])
        again = await link.replicator.sync_once()
        assert again.purged == 0 and len(link.receipts) == 1, "purged once: HQ knows it no longer holds it"

    run(test, tmp_path, {"silver"})


def test_a_lost_page_is_not_taken_as_held(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "gold"),
                                   Edit("customers", C1, "star_level", "set", 4)])
        await link.replicator.sync_once()
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "silver")])
        link.lose_next_page = True
        try:
            await link.replicator.sync_once()
        except ConnectionError:
            pass
        assert await link.held() == set()
        await link.replicator.sync_once()
        row = await link.branch.read_row("customers", C1)
        assert row is not None and row["star_level"] == 4, "sent whole again"

    run(test, tmp_path, {"silver"})


def test_a_changed_scope_is_weighed_again_from_the_start(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "gold"),
                                   Edit("customers", C2, "segment", "set", "silver")])
        await link.replicator.sync_once()
        assert await link.held() == {C2}
        link.segments = {"gold"}  # a new contract: no row changed
        report = await link.replicator.sync_once()
        assert await link.held() == {C1} and report.purged == 1
        assert await link.branch.digest(["customers"]) == await link.hq.digest(["customers"], scope=scope({"gold"}))

    run(test, tmp_path, {"silver"})


def test_a_field_the_scope_no_longer_holds_goes_from_the_peer(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "silver"),
                                   Edit("customers", C1, "star_level", "set", 3)])
        await link.replicator.sync_once()
        await link.branch.write_local([Edit("customers", C1, "tags", "add", "mine")])  # not pushed yet
        assert "star_level" in await link.branch.field_origins("customers", C1)
        link.fields = FIELDS - {"star_level"}  # a policy reload: the field is hidden from now on
        await link.replicator.sync_once()
        held = await link.branch.field_origins("customers", C1)
        assert "star_level" not in held and "segment" in held, held
        row = await link.branch.read_row("customers", C1)
        assert row is not None and row["tags"] == ["mine"], "the local write survives"
        narrow = scope({"silver"}, FIELDS - {"star_level"})
        assert await link.branch.digest(["customers"]) == await link.hq.digest(["customers"], scope=narrow)

    run(test, tmp_path, {"silver"})


def test_a_peer_that_synced_before_scopes_purges_what_it_may_not_hold(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "silver"),
                                   Edit("customers", C2, "segment", "set", "gold")])
        link.scoped = False  # an upstream that did not scope rows yet
        await link.replicator.sync_once()
        assert await link.held() == {C1, C2}
        link.scoped = True
        report = await link.replicator.sync_once()
        assert await link.held() == {C1} and report.purged == 1

    run(test, tmp_path, {"silver"})


def test_a_refused_write_is_answered_with_the_row_whole_and_unpushed_writes_stay(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "silver"),
                                   Edit("customers", C1, "star_level", "set", 3),
                                   Edit("customers", C3, "segment", "set", "silver")])
        await link.replicator.sync_once()
        await link.branch.write_local([Edit("customers", C1, "segment", "set", "platinum")])  # not writable
        await link.branch.write_local([Edit("customers", C2, "segment", "set", "silver"),
                                       Edit("customers", C2, "star_level", "set", 1)])  # a new row, in scope
        # push, then (before the pull) a local write the upstream has not seen
        original = link.replicator.transport

        async def write_between(route: str, body: bytes) -> bytes:
            if route == "pull" and not getattr(write_between, "done", False):
                write_between.done = True  # type: ignore[attr-defined]
                await link.branch.write_local([Edit("customers", C1, "tags", "add", "late")])
            return await original(route, body)

        link.replicator.transport = write_between
        first = await link.replicator.sync_once()
        assert first.refused_upstream == 1
        row = await link.branch.read_row("customers", C1)
        assert row is not None and row["segment"] == "silver" and row["star_level"] == 3, "HQ's copy again"
        assert row["tags"] == ["late"], "the write made after the push is kept"
        link.replicator.transport = original
        await link.replicator.sync_once()
        hq_row = await link.hq.read_row("customers", C1)
        assert hq_row is not None and hq_row["tags"] == ["late"] and hq_row["segment"] == "silver"
        assert await link.held() == {C1, C2, C3}
        assert await link.branch.digest(["customers"]) == await link.hq.digest(["customers"], scope=scope({"silver"}))

    run(test, tmp_path, {"silver"})


def test_a_write_moving_a_row_out_of_scope_is_undone(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        link_scope = scope({"silver"})
        wide = PeerScope(node="branch-a", groups=link_scope.groups, classes=link_scope.classes, rows=link_scope.rows,
                         reads=link_scope.reads, fields=link_scope.fields,
                         writable={"customers": frozenset({"segment", "star_level"})},
                         fingerprint=link_scope.fingerprint)
        link.responder.scope_for = lambda peer: wide
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "silver")])
        await link.replicator.sync_once()
        await link.branch.write_local([Edit("customers", C1, "segment", "set", "gold"),
                                       Edit("customers", C1, "star_level", "set", 7)])
        report = await link.replicator.sync_once()
        assert report.refused_upstream == 2, "both changes of the row, together"
        hq_row = await link.hq.read_row("customers", C1)
        assert hq_row is not None and (hq_row["segment"], hq_row["star_level"]) == ("silver", 0)
        row = await link.branch.read_row("customers", C1)
        assert row is not None and row["segment"] == "silver", "back in scope at the branch"

    run(test, tmp_path, {"silver"})


def test_pages_to_a_scoped_peer_name_their_scope(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        await link.hq.write_local([Edit("customers", C1, "segment", "set", "silver")])
        await link.replicator.sync_once()
        link_state = await link.branch.link("hq")
        fingerprint = scope({"silver"}).fingerprint
        assert link_state is not None and link_state.pull_scope.startswith(fingerprint + ".")
        frame = await link.responder.handle("pull", _pull_frame(link.branch.store_id, link_state))
        page, _ = decode_frame(frame, max_body_bytes=1 << 20)
        assert isinstance(page, ChangesPage) and page.scope.startswith(fingerprint + ".") and page.changes == []

    run(test, tmp_path, {"silver"})


def _pull_frame(store_id: str, link_state: Any) -> bytes:
    from sync.changes import encode_frame
    from sync.protocol import next_pull

    return encode_frame(next_pull("branch-a", store_id=store_id, peer_store_id=link_state.peer_store_id,
                                  since=link_state.pull_since, cursor=link_state.pull_cursor, limit=100,
                                  scope=link_state.pull_scope))
