"""Priority changes travel ahead, in memory: a do-not-call (any suppression
reason) and a consent record pending after a partition are in the first page
each way, even when the link drops again right after it.

* pull: the first page of a round carries the upstream's pending ones before
  the run's own changes; a request without ``priority`` does not (the control);
* push: the first batch of a round carries the node's pending ones;
* a run cut and resumed later (cursor past since) still puts new ones first;
* scope holds: nothing goes ahead to a peer that may not hold it, a row the peer
  does not hold is not sent ahead as a stub, and a consent sent ahead is
  recorded as held (purged with its customer when it leaves);
* the pre-page is bounded by the page limit and the run still completes;
* the read goes through the partial index of suppressed customers.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from sync.changes import Change, ChangesPage, PullRequest, RowDrop, decode_frame, encode_frame
from sync.edits import Edit
from sync.errors import LinkDownError
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.protocol import put_ahead
from sync.replicator import LocalTransport, Replicator, Route
from sync.responder import Responder
from sync.scope import PeerScope
from sync.store.ddl import PRIORITY
from sync.store.sqlite import SqliteStore, wall_clock_ms

CONSENT_FIELDS = frozenset({"customer_id", "purpose", "granted", "channel", "at_ms", "recorded_by", "site", "deleted"})


def ids(n: int, salt: int) -> list[str]:
    return sorted(new_ulid(1_700_000_000_000 + salt, os.urandom(10)) for _ in range(n))


def consent(row_id: str, customer: str, *, granted: bool = False, site: str = "hq") -> list[Edit]:
    values = {"customer_id": customer, "purpose": "marketing", "granted": granted, "channel": "phone",
              "at_ms": 1_700_000_000_000, "recorded_by": "u1", "site": site}
    return [Edit("consents", row_id, name, "set", value) for name, value in values.items()]


def do_not_call(row_id: str) -> list[Edit]:
    return [Edit("customers", row_id, "suppression", "add", "do_not_call")]


class CutAfter:
    """An in-memory link that carries ``allow[route]`` requests, then is down
    (None: no bound). Records every page and batch it carried."""

    def __init__(self, responder: Responder, **allow: int | None) -> None:
        self.inner = LocalTransport(responder)
        self.allow: dict[str, int | None] = {"push": None, "pull": None, **allow}
        self.pages: list[ChangesPage] = []
        self.pushes: list[list[Change]] = []

    async def __call__(self, route: Route, body: bytes) -> bytes:
        left = self.allow[route]
        if left is not None:
            if left <= 0:
                raise LinkDownError("hq", "cut by the test")
            self.allow[route] = left - 1
        if route == "push":
            message, _ = decode_frame(body, max_body_bytes=1 << 26)
            self.pushes.append(message.changes)  # type: ignore[union-attr]
        answer = await self.inner(route, body)
        if route == "pull":
            page, _ = decode_frame(answer, max_body_bytes=1 << 26)
            assert isinstance(page, ChangesPage)
            self.pages.append(page)
        return answer


Test = Callable[[SqliteStore, SqliteStore], Awaitable[None]]


def run(test: Test, tmp: Path) -> None:
    async def go() -> None:
        hq = await SqliteStore.create(tmp / "hq.db", node_id="hq", role="hq", clock=Clock(wall_clock_ms, 60_000))
        branch = await SqliteStore.create(tmp / "b.db", node_id="branch-a", role="branch",
                                          clock=Clock(wall_clock_ms, 60_000))
        await hq.enroll("branch-a", parent="hq", role="branch")
        await branch.enroll("hq", parent=None, role="hq")
        try:
            await test(hq, branch)
        finally:
            await hq.close()
            await branch.close()

    asyncio.run(go())


async def seed(store: SqliteStore, rows: list[str]) -> None:
    await store.write_local([Edit("customers", r, "segment", "set", "gold") for r in rows])


async def ordinary(store: SqliteStore, rows: list[str], value: int) -> None:
    """One ordinary change to each row, each row its own write (its own number)."""
    for r in rows:
        await store.write_local([Edit("customers", r, "star_level", "set", value)])


def replicator(branch: SqliteStore, transport: CutAfter, limit: int) -> Replicator:
    return Replicator(branch, transport, upstream="hq", page_limit=limit, push_limit=limit)


async def sync_until_cut(rep: Replicator) -> None:
    with pytest.raises(LinkDownError):
        await rep.sync_once()


async def star_levels(store: SqliteStore, rows: list[str]) -> list[int]:
    return [(await store.read_row("customers", r) or {}).get("star_level", -1) for r in rows]


def test_the_first_pulled_page_carries_the_pending_suppression_and_consents(tmp_path: Path) -> None:
    async def test(hq: SqliteStore, branch: SqliteStore) -> None:
        rows = ids(300, 1)
        await seed(hq, rows)
        await Replicator(branch, LocalTransport(Responder(hq)), upstream="hq").sync_once()
        before = await hq.high_seq()
        await ordinary(hq, rows[:150], 3)  # the partition: ordinary changes first ...
        await hq.write_local(do_not_call(rows[0]))  # ... a do-not-call and a withdrawal ...
        (k1,) = ids(1, 2)
        await hq.write_local(consent(k1, rows[1]))
        await ordinary(hq, rows[150:], 4)  # ... and more ordinary changes after them

        # the control: a page asked without priority has neither
        link = await branch.link("hq")
        assert link is not None
        plain, _ = decode_frame(await Responder(hq).handle("pull", encode_frame(PullRequest(
            node="branch-a", store_id=hq.store_id, since=before, cursor=before, limit=20,
            node_store_id=branch.store_id, scope=link.pull_scope))), max_body_bytes=1 << 26)
        assert isinstance(plain, ChangesPage) and plain.more
        assert {(c.collection, c.field) for c in plain.changes} == {("customers", "star_level")}

        transport = CutAfter(Responder(hq), pull=1)
        await sync_until_cut(replicator(branch, transport, 20))
        (page,) = transport.pages
        assert page.more, "the link dropped after the first page of a longer run"
        written = len(consent(k1, rows[1]))
        ahead = [(c.collection, c.row_id, c.field) for c in page.changes[: 1 + written]]
        assert ahead[0] == ("customers", rows[0], "suppression")
        assert {a[1] for a in ahead[1:]} == {k1}
        assert page.changes[1 + written].field == "star_level", "then the run's own changes"
        row = await branch.read_row("customers", rows[0])
        assert row is not None and row["suppression"] == ["do_not_call"]
        record = await branch.read_row("consents", k1)
        assert record is not None and record["granted"] is False and record["customer_id"] == rows[1]
        assert (await star_levels(branch, rows)).count(0) > 250, "most ordinary changes are still to come"

        await Replicator(branch, LocalTransport(Responder(hq)), upstream="hq").sync_once()
        assert await branch.digest() == await hq.digest()

    run(test, tmp_path)


def test_the_first_pushed_batch_carries_the_pending_suppression_and_consents(tmp_path: Path) -> None:
    async def test(hq: SqliteStore, branch: SqliteStore) -> None:
        rows = ids(300, 3)
        await seed(hq, rows)
        await Replicator(branch, LocalTransport(Responder(hq)), upstream="hq").sync_once()
        await ordinary(branch, rows[:200], 5)
        await branch.write_local(do_not_call(rows[-1]))
        (k1,) = ids(1, 4)
        await branch.write_local(consent(k1, rows[-2], site="branch-a"))
        await ordinary(branch, rows[200:], 6)

        transport = CutAfter(Responder(hq), push=1)
        await sync_until_cut(replicator(branch, transport, 20))
        (batch,) = transport.pushes
        assert (batch[0].collection, batch[0].row_id, batch[0].field) == ("customers", rows[-1], "suppression")
        assert {c.row_id for c in batch[1 : 1 + len(consent(k1, rows[-2]))]} == {k1}
        row = await hq.read_row("customers", rows[-1])
        assert row is not None and row["suppression"] == ["do_not_call"]
        record = await hq.read_row("consents", k1)
        assert record is not None and record["granted"] is False
        assert (await star_levels(hq, rows)).count(0) > 250, "most ordinary changes are still to go"

        await Replicator(branch, LocalTransport(Responder(hq)), upstream="hq").sync_once()
        assert await branch.digest() == await hq.digest()

    run(test, tmp_path)


def test_a_resumed_run_puts_what_is_new_first_again(tmp_path: Path) -> None:
    async def test(hq: SqliteStore, branch: SqliteStore) -> None:
        rows = ids(200, 5)
        await seed(hq, rows)
        await Replicator(branch, LocalTransport(Responder(hq)), upstream="hq").sync_once()
        await ordinary(hq, rows, 2)
        responder = Responder(hq)
        await sync_until_cut(replicator(branch, CutAfter(responder, pull=1), 20))
        link = await branch.link("hq")
        assert link is not None and link.pull_cursor > link.pull_since, "the run stopped half-way"

        await hq.write_local(do_not_call(rows[7]))  # written while the link was down again
        transport = CutAfter(responder, pull=1)
        await sync_until_cut(replicator(branch, transport, 20))
        assert transport.pages[0].since == link.pull_since and transport.pages[0].more
        row = await branch.read_row("customers", rows[7])
        assert row is not None and row["suppression"] == ["do_not_call"]

    run(test, tmp_path)


def scope(segments: set[str]) -> PeerScope:
    def rule(collection: str, values: Mapping[str, Any]) -> bool:
        return values["segment"] in segments

    return PeerScope(node="branch-a", groups=frozenset({"branch-a"}), classes=frozenset(), rows=rule,
                     reads={"customers": ("segment",), "consents": ()},
                     fields={"customers": frozenset({"segment", "star_level", "suppression", "deleted"}),
                             "consents": CONSENT_FIELDS},
                     writable={"customers": frozenset({"star_level"}), "consents": CONSENT_FIELDS - {"deleted"}},
                     fingerprint="-".join(sorted(segments)))


def test_priority_keeps_to_the_peers_scope(tmp_path: Path) -> None:
    async def test(hq: SqliteStore, branch: SqliteStore) -> None:
        receipts: list[list[str]] = []

        def receipt(rows: list[str], keys: int) -> list[Edit]:
            receipts.append(rows)
            return []

        responder = Responder(hq, scope_for=lambda peer: scope({"gold"}))
        gold, silver, entering = ids(1, 6)[0], ids(1, 7)[0], ids(1, 8)[0]
        others = ids(100, 9)
        await hq.write_local([Edit("customers", gold, "segment", "set", "gold"),
                              Edit("customers", silver, "segment", "set", "silver"),
                              Edit("customers", entering, "segment", "set", "silver")])
        await seed(hq, others)
        full = Replicator(branch, LocalTransport(responder), upstream="hq", on_purge=receipt)
        await full.sync_once()
        await full.sync_once()  # confirms what the branch holds
        assert await branch.read_row("customers", silver) is None

        await ordinary(hq, others, 1)
        k_gold, k_silver = ids(1, 10)[0], ids(1, 11)[0]
        for edits in (do_not_call(gold), do_not_call(silver), consent(k_gold, gold), consent(k_silver, silver),
                      do_not_call(entering), [Edit("customers", entering, "segment", "set", "gold")]):
            await hq.write_local(edits)
        transport = CutAfter(responder, pull=1)
        rep = Replicator(branch, transport, upstream="hq", page_limit=20, on_purge=receipt)
        await sync_until_cut(rep)
        sent = {(c.collection, c.row_id) for c in transport.pages[0].changes}
        assert ("customers", gold) in sent and ("consents", k_gold) in sent
        assert not sent & {("customers", silver), ("consents", k_silver), ("customers", entering)}
        assert (await branch.read_row("customers", gold) or {}).get("suppression") == ["do_not_call"]
        assert await branch.read_row("consents", k_gold) is not None
        assert await branch.read_row("customers", entering) is None, "no stub of a row the peer does not hold"

        # the customer leaves before the run reaches its consent: HQ knows the
        # consent sent ahead is held there, so it is purged with its customer
        await hq.write_local([Edit("customers", gold, "segment", "set", "silver")])
        await full.sync_once()
        await full.sync_once()
        assert await branch.read_row("consents", k_gold) is None and await branch.read_row("customers", gold) is None
        assert {f"consents/{k_gold}", f"customers/{gold}"} <= {r for rows in receipts for r in rows}
        assert await branch.digest(["customers", "consents"]) == await hq.digest(
            ["customers", "consents"], scope=scope({"gold"}))

    run(test, tmp_path)


def test_the_pre_page_is_bounded_and_the_run_completes(tmp_path: Path) -> None:
    async def test(hq: SqliteStore, branch: SqliteStore) -> None:
        rows = ids(120, 12)
        await seed(hq, rows)
        await Replicator(branch, LocalTransport(Responder(hq)), upstream="hq").sync_once()
        for r in rows:  # more pending priority states than a page holds
            await hq.write_local(do_not_call(r))
        transport = CutAfter(Responder(hq))
        report = await replicator(branch, transport, 30).sync_once()
        first = transport.pages[0]
        assert 30 <= len(first.changes) <= 31, "the pre-page fills the page, the run adds at least one row"
        assert report.pull_pages >= 4 and not transport.pages[-1].more
        assert await branch.digest() == await hq.digest()

    run(test, tmp_path)


def test_priority_read_uses_the_partial_index(tmp_path: Path) -> None:
    async def test(hq: SqliteStore, branch: SqliteStore) -> None:
        await seed(hq, ids(10, 13))
        conn = sqlite3.connect(hq.path)
        try:
            _, where = PRIORITY["customers"]
            plan = conn.execute(f"EXPLAIN QUERY PLAN SELECT _seq, row_id, _state FROM customers WHERE {where} "
                                "AND _seq > ? ORDER BY _seq LIMIT ?", (0, 10)).fetchall()
        finally:
            conn.close()
        assert "USING INDEX customers__suppressed" in " ".join(str(step[-1]) for step in plan)

    run(test, tmp_path)


def _change(row: str, field: str, hlc: int, value: bytes = b"\x01") -> Change:
    import msgspec

    return Change("customers", row, field, msgspec.Raw(value), hlc, "hq")


def test_put_ahead_sends_each_change_once_and_leaves_dropped_rows_to_the_run() -> None:
    a, b, c = "01M84BWR790000000000000001", "01M84BWR790000000000000002", "01M84BWR790000000000000003"
    prio = [_change(a, "suppression", 5), _change(b, "suppression", 6)]
    page = [_change(c, "star_level", 1), _change(a, "suppression", 5), _change(a, "suppression", 5, b"\x02")]
    out = put_ahead(prio, page, dropped=[("customers", b)])
    assert out == [prio[0], page[0], page[2]]
    assert put_ahead([], page) == page
    assert RowDrop("customers", b, "purge").row_id == b
