"""Scoped replication on running nodes, under the repository's policy (sites/).

HQ, branch-a, branch-b and partner-x run as `outpost serve` processes on
loopback (sync on demand). Checks read the nodes' SQLite files and keystores,
not only their APIs: what a node does not hold cannot leak from it.

* a branch holds its home customers, partner-x the customers contracted to it,
  each with only the fields its roles see, and no key of a class it may not read;
* a customer leaving a node's scope (moved branch, partner contract revoked) is
  purged there with its keys, and HQ keeps the node's signed receipt;
* a write the node's policy does not allow is refused at HQ, and the node
  converges back to HQ's copy.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from crypto.keystore import open_keystore
from server.demo import DEMO_ID_CONSENT, demo_person
from server.node_process import NodeProcess
from server.config import load_site
from server.policy import load_policy
from tests.conftest import POLICY_FILE, LoopThread, enrolled_nodes

pytestmark = pytest.mark.system

BELOW = ("branch-a", "branch-b", "partner-x")
#: customers whose contract with partner-x a test revoked
REVOKED: list[str] = []


@dataclass
class Nodes:
    hq: NodeProcess
    below: dict[str, NodeProcess]
    #: customer id -> (home branch, contracted to partner-x)
    customers: dict[str, tuple[str, bool]] = field(default_factory=dict)

    async def create(self, home: str, *, partner: bool) -> str:
        person = demo_person(200 + len(self.customers))
        card = await self.hq.call("POST", "/customers", json={
            "home_branch": home, "partners_add": ["partner-x"] if partner else [], "star_level": 2, **person,
            **DEMO_ID_CONSENT})
        self.customers[card["row_id"]] = (home, partner)
        return str(card["row_id"])

    async def sync(self, rounds: int = 2) -> dict[str, dict[str, Any]]:
        reports: dict[str, dict[str, Any]] = {}
        for _ in range(rounds):
            for name, node in self.below.items():
                reports[name] = await node.sync_now()
        return reports

    def expected(self, site: str) -> set[str]:
        if site == "partner-x":
            return {c for c, (_, partner) in self.customers.items() if partner}
        return {c for c, (home, _) in self.customers.items() if home == site}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Nodes]:
    out: list[Nodes] = []

    async def seed(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        out.append(Nodes(hq, below))
        for i in range(8):
            await out[0].create("branch-a" if i % 2 else "branch-b", partner=i % 3 == 0)
        await out[0].sync()

    with enrolled_nodes(aio, tmp_path_factory.mktemp("scoped"), BELOW, seed):
        yield out[0]


def query(node: NodeProcess, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{node.data_dir / f'{node.site}.db'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def held(node: NodeProcess) -> set[str]:
    return {r for (r,) in query(node, "SELECT row_id FROM customers")}


def consents_held(node: NodeProcess) -> set[str]:
    """The customers whose consent records the node holds (each customer has one:
    the consent its ID number needs); they travel with their customer."""
    return {c for (c,) in query(node, "SELECT customer_id FROM consents")}


def fields_held(node: NodeProcess) -> set[str]:
    names: set[str] = set()
    for (state,) in query(node, "SELECT _state FROM customers"):
        names |= set(msgspec.msgpack.decode(state))
    return names


# ---------------------------------------------------------------- what each node holds


def test_each_node_holds_only_the_customers_its_scope_admits(nodes: Nodes) -> None:
    for site, node in nodes.below.items():
        assert held(node) == nodes.expected(site), site
        assert consents_held(node) == nodes.expected(site), site
    assert held(nodes.hq) == set(nodes.customers) == consents_held(nodes.hq)


def test_each_node_holds_only_the_fields_its_roles_see(nodes: Nodes) -> None:
    policy = load_policy(POLICY_FILE)
    for site, node in nodes.below.items():
        scope = policy.node_scope(load_site(POLICY_FILE.parent / f"{site}.toml"))
        present = fields_held(node)
        assert present and present <= scope.fields["customers"], (site, present - scope.fields["customers"])
    assert not fields_held(nodes.below["partner-x"]) & {
        "email", "id_number", "birthday", "address", "notes", "phone_index", "home_branch", "contact_key"}


def test_the_partner_holds_no_key_of_a_class_it_may_not_read(nodes: Nodes) -> None:
    partner = nodes.below["partner-x"]
    classes = {c for (c,) in query(partner, "SELECT DISTINCT field_class FROM keys")}
    assert classes and classes <= {"contact", "profile"}, classes
    keystore = open_keystore(partner.data_dir / "partner-x.keystore", partner.passphrase)
    assert {k.field_class for k in keystore.scope_keys()} <= {"contact", "profile"}


def test_every_node_matches_hqs_copy_of_its_scope(nodes: Nodes, aio: LoopThread) -> None:
    async def check() -> None:
        for site, node in nodes.below.items():
            mine, expected = await node.digest(), await nodes.hq.digest(peer=site)
            assert (mine["digest"], mine["keys_digest"]) == (expected["digest"], expected["keys_digest"]), site

    aio.run(check(), timeout=60)


# ---------------------------------------------------------------- leaving scope


def test_revoking_the_partners_contract_purges_the_customer_and_its_keys_there(
        nodes: Nodes, aio: LoopThread) -> None:
    partner = nodes.below["partner-x"]
    customer = next(c for c, (_, contracted) in nodes.customers.items() if contracted)
    assert customer in held(partner)
    assert query(partner, "SELECT count(*) FROM keys WHERE customer_id = ?", customer) != [(0,)]

    async def revoke() -> list[dict[str, Any]]:
        await nodes.hq.call("PATCH", f"/customers/{customer}", json={"partners_remove": ["partner-x"]})
        REVOKED.append(customer)
        home, _ = nodes.customers[customer]
        nodes.customers[customer] = (home, False)
        first = await partner.sync_now()
        again = await partner.sync_now()
        assert (first["purged"], again["purged"]) == (2, 0), (first, again)  # the customer and its consent
        missing = await partner.client.get(f"/customers/{customer}")
        assert missing.status_code == 404
        return await nodes.hq.call("GET", "/purge-receipts", params={"peer": "partner-x"})  # type: ignore[no-any-return]

    receipts = aio.run(revoke(), timeout=60)
    assert customer not in held(partner) and held(partner) == nodes.expected("partner-x")
    assert query(partner, "SELECT count(*) FROM keys WHERE customer_id = ?", customer) == [(0,)]
    mine = [r for r in receipts if f"customers/{customer}" in r["rows"]]
    assert len(mine) == 1 and mine[0]["verified"] and mine[0]["keys_purged"] >= 1, receipts
    (consent,) = query(nodes.hq, "SELECT row_id FROM consents WHERE customer_id = ?", customer)
    assert f"consents/{consent[0]}" in mine[0]["rows"] and consents_held(partner) == nodes.expected("partner-x")
    assert customer in held(nodes.hq), "HQ keeps the customer"
    assert query(nodes.hq, "SELECT count(*) FROM keys WHERE customer_id = ? AND scope_group = 'partner-x' "
                           "AND wrapped IS NOT NULL", customer) == [(0,)], "HQ no longer wraps its keys for the partner"


def test_a_tampered_receipt_no_longer_verifies(nodes: Nodes, aio: LoopThread) -> None:
    receipts = aio.run(nodes.hq.call("GET", "/purge-receipts"), timeout=30)
    assert receipts, "an earlier test made one"
    target = receipts[0]["row_id"]
    db = nodes.hq.data_dir / "hq.db"

    def shift(by: int) -> dict[str, dict[str, Any]]:
        conn = sqlite3.connect(db, timeout=10)
        try:
            conn.execute("UPDATE purge_receipts SET keys_purged = keys_purged + ? WHERE row_id = ?", (by, target))
            conn.commit()
        finally:
            conn.close()
        return {r["row_id"]: r for r in aio.run(nodes.hq.call("GET", "/purge-receipts"), timeout=30)}

    assert shift(+1)[target]["verified"] is False
    assert shift(-1)[target]["verified"] is True, "as signed again"


def test_a_customer_moved_to_another_branch_arrives_whole_and_leaves_the_old_one(
        nodes: Nodes, aio: LoopThread) -> None:
    a, b = nodes.below["branch-a"], nodes.below["branch-b"]
    customer = next(c for c, (home, _) in nodes.customers.items() if home == "branch-b")

    async def move() -> dict[str, Any]:
        await nodes.hq.call("PATCH", f"/customers/{customer}", json={"home_branch": "branch-a"})
        nodes.customers[customer] = ("branch-a", nodes.customers[customer][1])
        await nodes.sync(rounds=3)
        return await a.call("GET", f"/customers/{customer}")  # type: ignore[no-any-return]

    card = aio.run(move(), timeout=60)
    assert card["unavailable"] == [] and card["name"] == demo_person(200 + list(nodes.customers).index(customer))["name"]
    assert held(a) == nodes.expected("branch-a") and held(b) == nodes.expected("branch-b")
    assert consents_held(a) == nodes.expected("branch-a") and consents_held(b) == nodes.expected("branch-b")


def test_assigning_a_customer_to_the_partner_brings_it_there_whole_with_its_key(
        nodes: Nodes, aio: LoopThread) -> None:
    partner = nodes.below["partner-x"]
    never = next(c for c, (_, contracted) in nodes.customers.items() if not contracted and c not in REVOKED)
    assert never not in held(partner) and REVOKED and REVOKED[0] not in held(partner)

    async def assign(customer: str) -> dict[str, Any]:
        await nodes.hq.call("PATCH", f"/customers/{customer}", json={"partners_add": ["partner-x"]})
        nodes.customers[customer] = (nodes.customers[customer][0], True)
        deadline = time.monotonic() + 15
        while True:  # the row comes at once; its key once HQ's key steward has wrapped it for the partner
            await partner.sync_now()
            card: dict[str, Any] = await partner.call("GET", f"/customers/{customer}")
            if not card["unavailable"] or time.monotonic() > deadline:
                return card
            await asyncio.sleep(0.2)

    for customer in (never, REVOKED[0]):  # a first contract, and one renewed after a revocation
        person = demo_person(200 + list(nodes.customers).index(customer))
        card = aio.run(assign(customer), timeout=60)
        assert (card["name"], card["phone"], card["unavailable"]) == (person["name"], person["phone"], []), customer
        assert card["star_level"] == 2, "fields written before it entered the scope came with it"
    assert held(partner) == nodes.expected("partner-x") == consents_held(partner)


# ---------------------------------------------------------------- refused writes


def test_a_refused_partner_write_converges_back(nodes: Nodes, aio: LoopThread) -> None:
    partner = nodes.below["partner-x"]
    customer = next(iter(nodes.expected("partner-x")))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        await partner.call("PATCH", f"/customers/{customer}", json={"star_level": 6})
        first = await partner.sync_now()
        second = await partner.sync_now()
        return first, second, await partner.call("GET", f"/customers/{customer}")

    first, second, card = aio.run(scenario(), timeout=60)
    assert first["refused_upstream"] == 1 and second["refused_upstream"] == 0
    assert card["star_level"] == 2, "HQ's value again"
    assert aio.run(nodes.hq.call("GET", f"/customers/{customer}"), timeout=30)["star_level"] == 2


def test_a_partner_write_to_a_field_it_does_not_hold_is_refused_and_dropped_there(
        nodes: Nodes, aio: LoopThread) -> None:
    partner = nodes.below["partner-x"]
    customer = next(iter(nodes.expected("partner-x")))

    async def scenario() -> dict[str, Any]:
        await partner.call("PATCH", f"/customers/{customer}", json={"segment": "mine-now"})
        report = await partner.sync_now()
        await partner.sync_now()
        return report

    report = aio.run(scenario(), timeout=60)
    assert report["refused_upstream"] == 1
    (state,) = query(partner, "SELECT _state FROM customers WHERE row_id = ?", customer)[0]
    assert "segment" not in msgspec.msgpack.decode(state), "absent at the partner again"
    assert aio.run(nodes.hq.call("GET", f"/customers/{customer}"), timeout=30)["segment"] is None


# ---------------------------------------------------------------- offboarding (last: it ends partner-x)


def test_offboarding_purges_the_partner_collects_its_receipt_and_retires_it(nodes: Nodes, aio: LoopThread) -> None:
    partner = nodes.below["partner-x"]
    contracted = nodes.expected("partner-x")
    assert contracted and held(partner) == contracted

    async def scenario() -> str:
        command = asyncio.create_task(asyncio.to_thread(nodes.hq._run, "offboard", "partner-x", "--wait", "60"))
        while not command.done():  # the partner syncs while the command waits for its purge
            await asyncio.sleep(0.5)
            try:
                await partner.sync_now()
            except RuntimeError:
                break  # retired: HQ refuses it from now on
        return await command

    out = aio.run(scenario(), timeout=120)
    assert f"revoked {len(contracted)} customers" in out and "credentials retired" in out, out
    assert held(partner) == set() and query(partner, "SELECT count(*) FROM keys WHERE deleted = 0") == [(0,)]
    assert consents_held(partner) == set()
    assert query(partner, "SELECT count(*) FROM users WHERE deleted = 0") == [(0,)]
    state = aio.run(nodes.hq.call("GET", "/partners/partner-x/offboard"), timeout=30)
    assert state["purged"] and state["retired_ms"] and state["rows_held"] == 0
    refused = aio.run(partner.client.post("/sync/now"), timeout=30)
    assert refused.status_code >= 400, "HQ refuses a retired node"
    assert query(nodes.hq, "SELECT kem_pub FROM nodes WHERE node_id = 'partner-x'") == [(None,)], "nothing wraps for it"
    keystore = open_keystore(partner.data_dir / "partner-x.keystore", partner.passphrase)
    assert keystore.scope_keys() == [], "its scope keys destroyed in its keystore too"
    for customer in contracted:
        (partners,) = query(nodes.hq, "SELECT partners FROM customers WHERE row_id = ?", customer)[0]
        assert "partner-x" not in partners
