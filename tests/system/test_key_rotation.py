"""Key rotation on running nodes: node keys, a scope key, a customer's data keys.

One HQ and two branches (`outpost serve` processes on loopback, background sync
on) serve the whole module; rotations go through the CLI (`outpost rotate-keys`),
the checks through the HTTP API, the keystores (opened with their passphrase) and
byte searches of every database file (main, -wal, -journal).

Key records are found by their row ids (`server.keyring` names them after what
they hold), never by the columns of the ``keys`` table: any blob in such a row is
what a byte search looks for.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crypto.keystore import Keystore, open_keystore
from server.demo import DEMO_ID_CONSENT, demo_person
from crypto.wrap import RowKey, unpack_row_key
from server.keyring import scope_key_row_id
from server.node_process import NodeProcess
from tests.conftest import LoopThread

pytestmark = pytest.mark.system

BRANCHES = ("branch-a", "branch-b")
#: the classes each PII field of `demo_person` belongs to
CLASSES = {"name": "contact", "phone": "contact", "id_number": "identity", "address": "address", "email": "contact"}
SEALED_FIELDS = tuple(CLASSES)


@dataclass
class Cluster:
    hq: NodeProcess
    branches: dict[str, NodeProcess]
    #: customer id -> (home branch, the PII it was created with, as edited since)
    customers: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    #: persons used so far (each customer gets a distinct one)
    persons: int = 0

    @property
    def nodes(self) -> list[NodeProcess]:
        return [self.hq, *self.branches.values()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("rotation")
    token = secrets.token_urlsafe(24)
    hq = NodeProcess("hq", workdir, token=token)
    branches = {name: NodeProcess(name, workdir, token=token, upstream_url=hq.url) for name in BRANCHES}
    nodes = Cluster(hq, branches)

    async def start() -> None:
        await asyncio.to_thread(hq.init)
        await hq.start()
        await asyncio.gather(*(asyncio.to_thread(b.init) for b in branches.values()))
        await asyncio.gather(*(b.start() for b in branches.values()))
        for branch in branches.values():
            await branch.enroll()
        await settle(nodes)

    try:
        aio.run(start(), timeout=120)
        yield nodes
    finally:
        async def stop() -> None:
            await asyncio.gather(*(n.stop() for n in reversed(nodes.nodes)), return_exceptions=True)

        aio.run(stop(), timeout=90)
        for node in nodes.nodes:
            node.kill()


# ---------------------------------------------------------------- helpers


async def settle(cluster: Cluster, rounds: int = 3) -> None:
    """Sync every branch with HQ until key work on both sides has travelled
    (push, HQ's key steward, pull, the branch's key steward)."""
    for _ in range(rounds):
        for branch in cluster.branches.values():
            await branch.sync_now()


async def create_customers(cluster: Cluster, home: str, count: int, *, at: NodeProcess | None = None) -> list[str]:
    """``count`` customers of ``home`` with a name, phone, ID number, address and e-mail,
    created at ``at`` (HQ by default)."""
    node = at or cluster.hq
    ids = []
    for _ in range(count):
        person = demo_person(cluster.persons)
        cluster.persons += 1
        body: dict[str, Any] = {**person, **DEMO_ID_CONSENT}
        if node is cluster.hq:
            body["home_branch"] = home
        card = await node.call("POST", "/customers", json=body)
        assert card["unavailable"] == [] and card["name"] == person["name"], "created where its keys are"
        cluster.customers[card["row_id"]] = (home, person)
        ids.append(card["row_id"])
    return ids


async def assert_opens(node: NodeProcess, customer_id: str, person: dict[str, str]) -> None:
    card = await node.call("GET", f"/customers/{customer_id}")
    assert card["unavailable"] == [], f"{node.site} cannot open {card['unavailable']} of {customer_id}"
    assert {f: card[f] for f in SEALED_FIELDS} == person, f"{node.site} opens other values for {customer_id}"


async def assert_all_open(cluster: Cluster, node: NodeProcess, home: str | None = None) -> int:
    """Every customer of ``home`` (all when None) opens at ``node``; returns how many."""
    count = 0
    for customer_id, (their_home, person) in cluster.customers.items():
        if home is None or their_home == home:
            await assert_opens(node, customer_id, person)
            count += 1
    return count


def db_files(node: NodeProcess) -> list[Path]:
    """The node's database files as they are on disk now: main, WAL, rollback journal."""
    base = node.data_dir / f"{node.site}.db"
    return [p for p in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-journal")) if p.exists()]


def files_holding(nodes: list[NodeProcess], needles: list[bytes]) -> list[str]:
    """``file: needle index`` for every needle found in any database file of ``nodes``."""
    found = []
    for node in nodes:
        for path in db_files(node):
            data = path.read_bytes()
            found += [f"{path.name}: needle {i}" for i, needle in enumerate(needles) if needle in data]
    return found


def query(node: NodeProcess, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{node.data_dir / f'{node.site}.db'}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def home_wraps(node: NodeProcess, keys: list[tuple[str, str]]) -> dict[tuple[str, str], RowKey]:
    """The data keys carried in customer rows (``{class}_key``, wrapped for the home
    group), by (customer, class); rows or keys this node lacks are left out."""
    out: dict[tuple[str, str], RowKey] = {}
    for customer, cls in keys:
        rows = query(node, f"SELECT {cls}_key AS k FROM customers WHERE row_id = ?", customer)
        if rows and rows[0]["k"] is not None:
            out[(customer, cls)] = unpack_row_key(rows[0]["k"], f"{cls} key of {customer}")
    return out


def keystore(node: NodeProcess) -> Keystore:
    return open_keystore(node.data_dir / f"{node.site}.keystore", node.passphrase)


def outpost(node: NodeProcess, *args: str) -> str:
    """Run ``outpost <args[0]> <node's site> <args[1:]>`` against the running node; its stdout."""
    return node._run(*args)


# ---------------------------------------------------------------- node keys


@dataclass
class NodeRotation:
    pid: int
    output: str


@pytest.fixture(scope="module")
def node_rotation(cluster: Cluster, aio: LoopThread) -> NodeRotation:
    """branch-a's own keys rotated with `outpost rotate-keys branch-a --node`, nodes
    running, after three of its customers are synced."""
    branch = cluster.branches["branch-a"]

    async def before() -> None:
        await create_customers(cluster, "branch-a", 3)
        await settle(cluster)
        assert await assert_all_open(cluster, branch, "branch-a") >= 3

    aio.run(before(), timeout=120)
    assert keystore(branch).identity.key_version == 1
    assert branch.proc is not None
    return NodeRotation(branch.proc.pid, outpost(branch, "rotate-keys", "--node"))


def test_node_key_rotation_on_a_running_branch(cluster: Cluster, node_rotation: NodeRotation, aio: LoopThread) -> None:
    hq, branch = cluster.hq, cluster.branches["branch-a"]
    out = node_rotation.output
    assert out.strip() == "branch-a: now key version 2", out
    assert branch.proc is not None and branch.proc.poll() is None and branch.proc.pid == node_rotation.pid, \
        "the node kept running"

    # the branch's keystore holds the new identity, and the one before it for keys on their way
    ks = keystore(branch)
    assert ks.identity.key_version == 2 and ks.identity_for(1) is not None
    new_public = ks.identity.public()
    # HQ's registry holds the new public keys
    (entry,) = query(hq, "SELECT key_version, sign_pub, kem_pub FROM nodes WHERE node_id = 'branch-a'")
    assert (entry["key_version"], entry["sign_pub"], entry["kem_pub"]) == (2, new_public.sign_pub, new_public.kem_pub)

    async def after() -> None:
        # still opens everything it held, before any sync
        held = await assert_all_open(cluster, branch, "branch-a")
        await create_customers(cluster, "branch-a", 2)
        await settle(cluster)
        assert await assert_all_open(cluster, branch, "branch-a") == held + 2

    aio.run(after(), timeout=120)

    # HQ re-issued every scope key branch-a is granted, wrapped for its new key
    # (key version 2), and the records reached the branch by sync
    hq_keys = keystore(hq)
    granted = [k for k in hq_keys.scope_keys() if k.group in ("branch-a", "*")]
    assert {k.field_class for k in granted} == {"contact", "identity", "address", "profile", "index"}
    latest = {(k.group, k.field_class): k.version for k in granted}
    for version in (1, 2):
        ids = [scope_key_row_id("branch-a", version, g, c, v) for (g, c), v in latest.items()]
        marks = ", ".join("?" * len(ids))
        for node in (hq, branch):
            rows = query(node, f"SELECT row_id FROM keys WHERE row_id IN ({marks})", *ids)
            assert len(rows) == len(ids), f"{node.site} lacks scope-key records for branch-a key version {version}"
    # the branch took them: its keystore holds the same scope keys as HQ's
    held = {(k.group, k.field_class): k.raw for k in keystore(branch).scope_keys() if (k.group, k.field_class) in latest}
    assert held == {(k.group, k.field_class): k.raw for k in granted if k.version == latest[(k.group, k.field_class)]}


def test_second_node_rotation_then_a_scope_key_reaches_only_the_new_key(
    cluster: Cluster, node_rotation: NodeRotation, aio: LoopThread
) -> None:
    """After two rotations the branch no longer holds key version 1: a scope key HQ
    makes now opens at the branch only if HQ wraps it for the registered new key."""
    hq, branch = cluster.hq, cluster.branches["branch-a"]
    assert keystore(branch).identity.key_version == 2
    out = outpost(branch, "rotate-keys", "--node")
    assert out.strip() == "branch-a: now key version 3", out
    ks = keystore(branch)
    assert ks.identity_for(1) is None and ks.identity_for(2) is not None
    (entry,) = query(hq, "SELECT key_version, kem_pub FROM nodes WHERE node_id = 'branch-a'")
    assert (entry["key_version"], entry["kem_pub"]) == (3, ks.identity.public().kem_pub)

    old = keystore(hq).latest_scope_key("branch-a", "address")
    assert old is not None
    out = outpost(hq, "rotate-keys", "--scope", "branch-a/address")
    assert out.startswith(f"rotated branch-a/address: v{old.version} -> v{old.version + 1}, "), out
    assert out.rstrip().endswith("sent to branch-a"), out

    async def check() -> None:
        await settle(cluster)
        assert await assert_all_open(cluster, branch, "branch-a") >= 5

    aio.run(check(), timeout=120)
    assert [k.version for k in keystore(branch).scope_keys("branch-a", "address")] == [old.version + 1]


# ---------------------------------------------------------------- scope keys

#: why old key material stays in the -wal file of the node that rotated (see the report of these tests)


@dataclass
class ScopeRotation:
    old_version: int
    #: (customer, class) -> its data key wrapped under the old scope key (branch-a's copy)
    before: dict[tuple[str, str], RowKey]
    old_wraps: list[bytes]
    rewrapped: int


@pytest.fixture(scope="module")
def scope_rotation(cluster: Cluster, aio: LoopThread) -> ScopeRotation:
    """branch-a/contact rotated at HQ with `outpost rotate-keys hq --scope`, nodes
    running, after customers of both branches (some made at branch-a) are synced."""
    hq, branch_a, branch_b = cluster.hq, cluster.branches["branch-a"], cluster.branches["branch-b"]

    async def before() -> None:
        await create_customers(cluster, "branch-a", 4)
        await create_customers(cluster, "branch-a", 2, at=branch_a)  # data keys made and wrapped at the branch
        await create_customers(cluster, "branch-b", 2)
        await settle(cluster)
        await assert_all_open(cluster, branch_a, "branch-a")
        await assert_all_open(cluster, branch_b, "branch-b")

    aio.run(before(), timeout=120)
    old = keystore(hq).latest_scope_key("branch-a", "contact")
    assert old is not None and [k.version for k in keystore(branch_a).scope_keys("branch-a", "contact")] == [old.version]

    # the contact data keys of every branch-a customer, wrapped under the old scope key
    ids = [(c, "contact") for c, (home, _) in cluster.customers.items() if home == "branch-a"]
    before_hq, before_branch = home_wraps(hq, ids), home_wraps(branch_a, ids)
    assert set(before_hq) == set(before_branch) == set(ids), "every branch-a customer has a contact key at both"
    assert before_hq == before_branch, "the wraps travelled as they are"
    assert all((k.group, k.scope_version) == ("branch-a", old.version) for k in before_hq.values())
    old_wraps = [k.wrapped for k in before_hq.values()]
    assert len(old_wraps) == len(ids) and all(len(w) >= 32 for w in old_wraps)
    assert set(files_holding([hq], old_wraps)) and set(files_holding([branch_a], old_wraps)), \
        "the search finds the wraps while they are live"

    out = outpost(hq, "rotate-keys", "--scope", "branch-a/contact")
    head = f"rotated branch-a/contact: v{old.version} -> v{old.version + 1}, "
    assert out.startswith(head) and out.rstrip().endswith("sent to branch-a"), out
    rotation = ScopeRotation(old.version, before_branch, old_wraps, int(out[len(head):].split()[0]))
    aio.run(settle(cluster), timeout=120)
    return rotation


def test_scope_key_rotation_keeps_every_customer_open(
    cluster: Cluster, scope_rotation: ScopeRotation, aio: LoopThread
) -> None:
    hq, branch_a, branch_b = cluster.hq, cluster.branches["branch-a"], cluster.branches["branch-b"]
    assert scope_rotation.rewrapped >= len(scope_rotation.before)

    async def check() -> None:
        assert await assert_all_open(cluster, branch_a, "branch-a") == len(scope_rotation.before)
        await assert_all_open(cluster, branch_b, "branch-b")
        await assert_all_open(cluster, hq)

    aio.run(check(), timeout=120)
    new = scope_rotation.old_version + 1
    for node in (hq, branch_a):  # the old scope key is destroyed at HQ and at the branch
        assert [k.version for k in keystore(node).scope_keys("branch-a", "contact")] == [new], node.site
    after = home_wraps(branch_a, list(scope_rotation.before))
    assert set(after) == set(scope_rotation.before)
    for where, key in after.items():  # the same rows now hold the same data keys, wrapped anew
        was = scope_rotation.before[where]
        assert (key.scope_version, key.key_version) == (new, was.key_version), where
        assert key.wrapped != was.wrapped, f"the contact key of {where[0]} was not re-wrapped"


def test_scope_key_rotation_leaves_no_old_wrap_at_the_branches(
    cluster: Cluster, scope_rotation: ScopeRotation
) -> None:
    found = files_holding(list(cluster.branches.values()), scope_rotation.old_wraps)
    assert not found, f"wraps under branch-a/contact v{scope_rotation.old_version} remain: {found}"


def test_scope_key_rotation_leaves_no_old_wrap_at_hq(cluster: Cluster, scope_rotation: ScopeRotation) -> None:
    found = files_holding([cluster.hq], scope_rotation.old_wraps)
    assert not found, f"wraps under branch-a/contact v{scope_rotation.old_version} remain: {found}"


# ---------------------------------------------------------------- data keys


@dataclass
class CustomerRotation:
    customer: str
    #: the sealed values of its fields before, in `SEALED_FIELDS` order
    old_sealed: list[bytes]
    #: its data keys before, by (customer, class), wrapped for branch-a in its row
    old_keys: dict[tuple[str, str], RowKey]


@pytest.fixture(scope="module", params=["hq", "branch-a"])
def customer_rotation(request: pytest.FixtureRequest, cluster: Cluster, aio: LoopThread) -> CustomerRotation:
    """A synced branch-a customer whose data keys `outpost rotate-keys <node>
    --customer` rotated at HQ or at branch-a, then synced again."""
    hq, branch = cluster.hq, cluster.branches["branch-a"]
    at = hq if request.param == "hq" else branch

    async def create() -> str:
        (customer,) = await create_customers(cluster, "branch-a", 1)
        await settle(cluster)
        await assert_opens(branch, customer, cluster.customers[customer][1])
        return customer

    customer = aio.run(create(), timeout=120)
    columns = ", ".join(SEALED_FIELDS)
    (at_hq,) = query(hq, f"SELECT {columns} FROM customers WHERE row_id = ?", customer)
    (at_branch,) = query(branch, f"SELECT {columns} FROM customers WHERE row_id = ?", customer)
    old_sealed = [at_hq[f] for f in SEALED_FIELDS]
    assert all(isinstance(v, bytes) and len(v) > 33 for v in old_sealed)
    assert old_sealed == [at_branch[f] for f in SEALED_FIELDS], "the branch holds the same ciphertext"
    assert len(files_holding([hq, branch], old_sealed)) >= 2 * len(old_sealed), "the search finds them while live"
    old_keys = home_wraps(hq, [(customer, c) for c in sorted(set(CLASSES.values()))])
    assert len(old_keys) == 3 and all((k.group, k.key_version) == ("branch-a", 1) for k in old_keys.values()), \
        "one data key per class, wrapped for branch-a"

    out = outpost(at, "rotate-keys", "--customer", customer)
    assert out.strip() == f"customer {customer}: data keys rotated", out
    aio.run(settle(cluster), timeout=120)
    return CustomerRotation(customer, old_sealed, old_keys)


def test_customer_key_rotation_keeps_the_values_and_reseals(
    cluster: Cluster, customer_rotation: CustomerRotation, aio: LoopThread
) -> None:
    hq, branch = cluster.hq, cluster.branches["branch-a"]
    customer = customer_rotation.customer

    async def check() -> None:
        for node in (hq, branch):
            await assert_opens(node, customer, cluster.customers[customer][1])

    aio.run(check(), timeout=60)
    columns = ", ".join(SEALED_FIELDS)
    for node in (hq, branch):
        (now,) = query(node, f"SELECT {columns} FROM customers WHERE row_id = ?", customer)
        for f, was in zip(SEALED_FIELDS, customer_rotation.old_sealed, strict=True):
            assert isinstance(now[f], bytes) and now[f] != was, f"{node.site}: {f} was not re-sealed"
        # new data keys (version 2, one per class, wrapped for branch-a) replaced the old ones in the row
        now_keys = home_wraps(node, list(customer_rotation.old_keys))
        assert set(now_keys) == set(customer_rotation.old_keys), node.site
        for where, key in now_keys.items():
            assert (key.group, key.key_version) == ("branch-a", 2), (node.site, where)
            assert key.wrapped != customer_rotation.old_keys[where].wrapped, (node.site, where)


def test_customer_key_rotation_leaves_no_old_ciphertext_in_db_files(
    cluster: Cluster, customer_rotation: CustomerRotation
) -> None:
    # branch-b holds the row (rows are not scoped yet) but never a key to open it: its copy of
    # the old ciphertext is as closed as the new one, and stays until SQLite reuses the frames
    holders = [n for n in cluster.nodes if n.site != "branch-b"]
    found = files_holding(holders, customer_rotation.old_sealed)
    assert not found, f"old ciphertext of customer {customer_rotation.customer} remains: {found}"


def test_customer_key_rotation_leaves_no_old_data_key_in_db_files(
    cluster: Cluster, customer_rotation: CustomerRotation
) -> None:
    old_wraps = [k.wrapped for k in customer_rotation.old_keys.values()]
    found = files_holding(cluster.nodes, old_wraps)
    assert not found, f"the shredded data keys of customer {customer_rotation.customer} remain: {found}"


# ---------------------------------------------------------------- a customer moving branch


def test_a_customer_moved_to_another_branch_opens_there_and_no_longer_at_the_old_one(
    cluster: Cluster, aio: LoopThread
) -> None:
    """HQ re-wraps the keys in the row for the new home group; the row leaves the old
    branch's scope, so the old branch purges it and signs a receipt HQ keeps."""
    hq, branch_a, branch_b = cluster.hq, cluster.branches["branch-a"], cluster.branches["branch-b"]

    async def scenario() -> tuple[dict[tuple[str, str], RowKey], Any, list[dict[str, Any]]]:
        (customer,) = await create_customers(cluster, "branch-a", 1, at=branch_a)  # keys made at branch-a
        await settle(cluster)
        person = cluster.customers[customer][1]
        await assert_opens(branch_a, customer, person)
        before = home_wraps(hq, [(customer, c) for c in sorted(set(CLASSES.values()))])
        await hq.call("PATCH", f"/customers/{customer}", json={"home_branch": "branch-b"})
        cluster.customers[customer] = ("branch-b", person)
        await settle(cluster)
        await assert_opens(branch_b, customer, person)
        await assert_opens(hq, customer, person)
        gone = await branch_a.client.get(f"/customers/{customer}")
        return before, gone, await hq.call("GET", "/purge-receipts", params={"peer": "branch-a"})

    before, gone, receipts = aio.run(scenario(), timeout=120)
    customer = next(iter(before))[0]
    assert gone.status_code == 404, "the old branch holds the customer no more"
    assert query(branch_a, "SELECT row_id FROM customers WHERE row_id = ?", customer) == []
    assert [r for r in receipts if f"customers/{customer}" in r["rows"]] != [], receipts
    assert all(r["verified"] for r in receipts), "each receipt is signed by branch-a's registered key"
    after = home_wraps(branch_b, list(before))
    assert set(after) == set(before)
    for where, key in after.items():
        assert (key.group, key.key_version) == ("branch-b", before[where].key_version), where
