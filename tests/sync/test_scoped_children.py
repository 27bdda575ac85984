"""Child rows follow their parent through a scoped link, in memory: a customer's
consents (`sync.schema.PARENTS`) are in a peer's scope exactly when the customer
is, whatever their own fields say.

* consents of a customer in scope arrive, those of others do not;
* a customer entering the scope brings its consents stored long before;
* a customer leaving it takes its consents with it (purged, in the receipt);
* a consent pushed for a customer the peer does not hold is refused and
  dropped there; one for a customer it holds, or makes in the same push, is kept;
* HQ's digest of the peer's scope matches the peer's copy throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sync.edits import Edit
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.scope import PeerScope
from sync.store.sqlite import SqliteStore, wall_clock_ms

CONSENT_FIELDS = frozenset({"customer_id", "purpose", "granted", "channel", "at_ms", "recorded_by", "site", "deleted"})
C1, C2, C3 = "01M84BWR790000000000000001", "01M84BWR790000000000000002", "01M84BWR790000000000000003"
K1, K2, K3, K4 = ("01M84BWR79000000000000K001", "01M84BWR79000000000000K002", "01M84BWR79000000000000K003",
                  "01M84BWR79000000000000K004")


def scope(segments: set[str]) -> PeerScope:
    def rule(collection: str, values: Mapping[str, Any]) -> bool:
        assert collection == "customers", "a consent is never weighed by a rule of its own"
        return values["segment"] in segments

    return PeerScope(node="branch-a", groups=frozenset({"branch-a"}), classes=frozenset(), rows=rule,
                     reads={"customers": ("segment",), "consents": ()},
                     fields={"customers": frozenset({"segment", "star_level", "deleted"}), "consents": CONSENT_FIELDS},
                     writable={"customers": frozenset({"star_level"}), "consents": CONSENT_FIELDS - {"deleted"}},
                     fingerprint="-".join(sorted(segments)))


def consent(row_id: str, customer: str, *, granted: bool = True, at_ms: int = 1_700_000_000_000) -> list[Edit]:
    values = {"customer_id": customer, "purpose": "marketing", "granted": granted, "channel": "phone",
              "at_ms": at_ms, "recorded_by": "u1", "site": "hq"}
    return [Edit("consents", row_id, name, "set", value) for name, value in values.items()]


class Link:
    def __init__(self, hq: SqliteStore, branch: SqliteStore, segments: set[str]) -> None:
        self.hq, self.branch, self.segments = hq, branch, segments
        self.receipts: list[list[str]] = []
        self.responder = Responder(hq, scope_for=lambda peer: scope(self.segments))
        self.replicator = Replicator(branch, LocalTransport(self.responder), upstream="hq", on_purge=self._receipt,
                                     page_limit=3)  # small pages: parents and children meet across pages

    def _receipt(self, rows: list[str], keys: int) -> list[Edit]:
        self.receipts.append(rows)
        return []

    async def sync(self) -> Any:
        report = await self.replicator.sync_once()
        again = await self.replicator.sync_once()  # confirms the last page; nothing more to move
        assert again.pulled == 0 and again.purged == 0
        assert await self.branch.digest(["customers", "consents"]) == await self.hq.digest(
            ["customers", "consents"], scope=scope(self.segments)), "the peer holds HQ's copy of its scope"
        return report

    async def consents(self) -> set[str]:
        return set(await self.branch.row_ids("consents"))


def run(test: Callable[[Link], Awaitable[None]], tmp: Path, segments: set[str]) -> None:
    async def go() -> None:
        hq = await SqliteStore.create(tmp / "hq.db", node_id="hq", role="hq", clock=Clock(wall_clock_ms, 60_000))
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


def test_consents_travel_with_their_customer_into_and_out_of_scope(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        hq = link.hq
        await hq.write_local([Edit("customers", C1, "segment", "set", "gold")])
        await hq.write_local([Edit("customers", C2, "segment", "set", "silver")])
        await hq.write_local(consent(K1, C1))
        await hq.write_local(consent(K2, C2))
        await hq.write_local(consent(K3, C3))  # a customer HQ does not hold (yet): nowhere to go
        for _ in range(5):  # later changes, so the consents lie well behind the branch's cursor
            await hq.write_local([Edit("customers", C1, "star_level", "set", _)])
        await link.sync()
        assert await link.consents() == {K1}

        await hq.write_local([Edit("customers", C2, "segment", "set", "gold")])  # enters, consent long stored
        await link.sync()
        assert await link.consents() == {K1, K2}
        row = await link.branch.read_row("consents", K2)
        assert row is not None and row["customer_id"] == C2 and row["granted"] and row["channel"] == "phone"

        await hq.write_local([Edit("customers", C1, "segment", "set", "silver")])  # leaves
        report = await link.sync()
        assert await link.consents() == {K2} and await link.branch.read_row("customers", C1) is None
        assert report.purged == 2
        assert sorted(link.receipts[-1]) == [f"consents/{K1}", f"customers/{C1}"]

        await hq.write_local(consent(K4, C1, granted=False))  # a new consent of a customer out of scope
        await hq.write_local([Edit("customers", C3, "segment", "set", "gold")])  # arrives with its old consent
        await link.sync()
        assert await link.consents() == {K2, K3}

    run(test, tmp_path, {"gold"})


def test_a_consent_pushed_for_a_customer_out_of_scope_is_refused_and_dropped(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        hq, branch = link.hq, link.branch
        await hq.write_local([Edit("customers", C1, "segment", "set", "gold")])
        await hq.write_local([Edit("customers", C2, "segment", "set", "silver")])
        await link.sync()
        await branch.write_local(consent(K1, C1))  # its customer: kept
        await branch.write_local(consent(K2, C2))  # a customer it does not hold: refused
        report = await link.replicator.sync_once()
        assert report.refused_upstream == len(consent(K2, C2))
        await link.sync()
        assert await link.consents() == {K1}
        assert await hq.read_row("consents", K1) is not None and await hq.read_row("consents", K2) is None

    run(test, tmp_path, {"gold"})


def test_a_consent_made_with_its_customer_in_one_push_is_kept(tmp_path: Path) -> None:
    async def test(link: Link) -> None:
        branch = link.branch
        await link.sync()
        # the branch makes a customer in its scope (its maker sets the field its scope is decided on)
        await branch.write_local([Edit("customers", C1, "segment", "set", "gold"), *consent(K1, C1)])
        report = await link.replicator.sync_once()
        assert report.refused_upstream == 0
        await link.sync()
        assert await link.hq.read_row("consents", K1) is not None and await link.consents() == {K1}

    run(test, tmp_path, {"gold"})
