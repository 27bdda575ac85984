"""Consents between real nodes (`outpost serve` processes on loopback, the
repository's sites and policy): a withdrawal of marketing consent recorded at a
branch puts the customer on suppression at HQ and at the partner working it
after sync; a new grant at HQ lifts only that reason everywhere. Consent records
travel with their customer, and hold no personal information."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from server.demo import DEMO_ID_CONSENT, demo_person
from server.node_process import NodeProcess
from server.pii_scan import needle_forms
from tests.conftest import LoopThread, enrolled_nodes

BELOW = ("branch-a", "branch-b", "partner-x")


@dataclass
class Nodes:
    hq: NodeProcess
    below: dict[str, NodeProcess]
    customer: str = ""
    other: str = ""

    async def sync(self, *sites: str) -> None:
        for _ in range(2):
            for site in sites or BELOW:
                await self.below[site].sync_now()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Nodes]:
    out: list[Nodes] = []

    async def seed(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        n = Nodes(hq, below)
        card = await hq.call("POST", "/customers", json={
            **demo_person(700), **DEMO_ID_CONSENT, "home_branch": "branch-a", "partners_add": ["partner-x"],
            "suppression_add": ["do_not_call"]})
        n.customer = card["row_id"]
        other = await hq.call("POST", "/customers", json={
            **demo_person(701), **DEMO_ID_CONSENT, "home_branch": "branch-b"})
        n.other = other["row_id"]
        await n.sync()
        out.append(n)

    with enrolled_nodes(aio, tmp_path_factory.mktemp("consent-nodes"), BELOW, seed):
        yield out[0]


def query(node: NodeProcess, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{node.data_dir / f'{node.site}.db'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_a_withdrawal_at_a_branch_suppresses_the_customer_at_every_node_that_holds_it(
        nodes: Nodes, aio: LoopThread) -> None:
    a, b, x = (nodes.below[s] for s in BELOW)

    async def scenario() -> dict[str, Any]:
        recorded = await a.call("POST", f"/customers/{nodes.customer}/consents",
                                json={"purpose": "marketing", "granted": False, "channel": "phone"})
        await nodes.sync("branch-a", "partner-x", "branch-b")
        return {
            "recorded": recorded,
            "hq": await nodes.hq.call("GET", f"/customers/{nodes.customer}"),
            "x": await x.call("GET", f"/customers/{nodes.customer}"),
            "hq_consents": await nodes.hq.call("GET", f"/customers/{nodes.customer}/consents"),
            "x_consents": await x.call("GET", f"/customers/{nodes.customer}/consents"),
            "b_consents": (await b.client.get(f"/customers/{nodes.customer}/consents")).status_code,
        }

    got = aio.run(scenario(), timeout=90)
    assert sorted(got["recorded"]["suppression"]) == ["do_not_call", "refused_marketing"]
    assert sorted(got["hq"]["suppression"]) == ["do_not_call", "refused_marketing"], "reached HQ"
    assert sorted(got["x"]["suppression"]) == ["do_not_call", "refused_marketing"], "reached the partner"
    marketing = [r for r in got["hq_consents"]["records"] if r["purpose"] == "marketing"]
    assert [(r["granted"], r["site"], r["channel"]) for r in marketing] == [(False, "branch-a", "phone")]
    at_partner = [r for r in got["x_consents"]["records"] if r["purpose"] == "marketing"]
    assert at_partner and at_partner[0]["granted"] is False
    assert at_partner[0]["channel"] is None and at_partner[0]["site"] is None, "no role there sees them: not held there"
    assert got["b_consents"] == 404, "branch-b holds neither the customer nor its consents"
    assert query(b, "SELECT count(*) FROM consents WHERE customer_id = ?", nodes.customer) == [(0,)]


def test_a_new_grant_at_hq_lifts_only_refused_marketing_everywhere(nodes: Nodes, aio: LoopThread) -> None:
    a, x = nodes.below["branch-a"], nodes.below["partner-x"]

    async def scenario() -> list[dict[str, Any]]:
        await nodes.hq.call("POST", f"/customers/{nodes.customer}/consents",
                            json={"purpose": "marketing", "granted": True, "channel": "web"})
        await nodes.sync("branch-a", "partner-x")
        return [await n.call("GET", f"/customers/{nodes.customer}") for n in (nodes.hq, a, x)]

    for card in aio.run(scenario(), timeout=90):
        assert card["suppression"] == ["do_not_call"]

    async def history() -> dict[str, Any]:
        return await a.call("GET", f"/customers/{nodes.customer}/consents")  # type: ignore[no-any-return]

    state = {s["purpose"]: s["granted"] for s in aio.run(history(), timeout=30)["current"]}
    assert state == {"id_number": True, "marketing": True}


def test_an_id_number_written_at_a_branch_needs_the_consent_that_came_from_hq(nodes: Nodes, aio: LoopThread) -> None:
    """The consent recorded at HQ with the customer reached its branch, so the
    branch's operator may correct the number; a customer whose consent was
    withdrawn there may not get one."""
    a = nodes.below["branch-a"]
    corrected = demo_person(702)["id_number"]

    async def scenario() -> tuple[int, int, Any]:
        ok = await a.client.patch(f"/customers/{nodes.customer}", json={"id_number": corrected})
        await a.call("POST", f"/customers/{nodes.customer}/consents",
                     json={"purpose": "id_number", "granted": False, "channel": "paper"})
        refused = await a.client.patch(f"/customers/{nodes.customer}", json={"id_number": demo_person(703)["id_number"]})
        return ok.status_code, refused.status_code, refused.json()

    ok, refused, problem = aio.run(scenario(), timeout=60)
    assert ok == 200 and refused == 422 and problem["code"] == "consent_required"


def test_consent_rows_hold_no_personal_information(nodes: Nodes, aio: LoopThread) -> None:
    aio.run(nodes.sync(), timeout=90)
    values = [v for i in (700, 701, 702, 703) for v in demo_person(i).values()]
    needles = needle_forms(values)
    for node in (nodes.hq, *nodes.below.values()):
        rows = query(node, "SELECT * FROM consents")
        blob = repr(rows).encode() + b"".join(v for r in rows for v in r if isinstance(v, bytes))
        assert [n for n in needles if n in blob] == [], node.site
    # two ID-number consents given with the creates, marketing withdrawn and given again, ID number withdrawn
    assert len(query(nodes.hq, "SELECT * FROM consents")) == 5
