"""Nodes for the access tests: HQ, branch-a, branch-b and partner-x, in process.

`AccessDeployment` writes each node's keystore and database under a temp dir (as
`outpost init` does), enrolls the nodes below HQ with HQ's key authority (so
each receives the scope keys its policy and contract grant), defines users at
HQ, serves every node's app in a `litestar.testing.TestClient`, and syncs the
nodes below HQ in memory (HQ's real responder and scope, no HTTP), then lets
each node's key steward take its keys. Customers reach a node by that ordinary
sync from HQ; the tests assert on API responses only, never on which rows a
node's store holds.

Users come from the policy file, not from a list here: one user per role that
the policy grants, at a node of a kind where the role exists (the most
restricted kind the deployment has: partner, then branch, then HQ).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from crypto.keystore import open_keystore
from server.app import create_app
from server.config import AuthConfig, NodeEntry, SiteConfig, UpstreamConfig
from server.demo import demo_person
from server.peer_scopes import scope_for
from server.node import PASSPHRASE_ENV, Node, init_node, load_node_policy
from server.passwords import PasswordCheck
from server.policy import Policy, Principal, load_policy
from server.users import UserCreate, create_user
from sync.ids import new_ulid
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.audit import AuditEntry
from sync.store.sqlite import SqliteStore, wall_clock_ms
from sync.hlc import Clock
from tests.conftest import POLICY_FILE

ADMIN_TOKEN = "operator-token-for-access-tests"
PASSWORD = "correct horse battery staple 7"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
#: node -> its kind of site
NODES = {"hq": "hq", "branch-a": "branch", "branch-b": "branch", "partner-x": "partner"}
#: where a role's user sits: the first kind the role exists at, in this order
KIND_PREFERENCE = ("partner", "branch", "hq")
NODE_OF_KIND = {"partner": "partner-x", "branch": "branch-a", "hq": "hq"}
#: the campaign partner-x is contracted for
CAMPAIGN = "01JD0QK2M6X3Z1V9A8B7C6D5E4"
#: reveals per user per day at every node of the deployment
REVEALS_PER_DAY = 8
#: an agent id on no team of the deployment's
STRANGER = "01JD0QK2M6X3Z1V9A8B7C6D5ZZ"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def person(i: int) -> dict[str, str]:
    """Every PII field of customer ``i``, made up (`server.demo.demo_person` and more)."""
    p = demo_person(i)
    return {**p, "second_contact": f"139{(30_000_000 + i * 7_907) % 100_000_000:08d}",
            "birthday": f"19{70 + i % 30}-0{1 + i % 9}-1{i % 10}", "employer": f"示例科技有限公司{i}号",
            "position": f"采购经理{i}", "interests": f"钓鱼与茶艺{i}", "notes": f"客户偏好下午联系{i}"}


class Customer(msgspec.Struct, kw_only=True):
    """A customer the fixture made at HQ: its id and every value it was made with."""

    key: str
    row_id: str
    #: the create body (plaintext PII included)
    body: dict[str, Any]
    #: every view field as the operator reads it
    full: dict[str, Any]


class AccessDeployment:
    """HQ, two branches and a partner on files under ``base``, serving in process."""

    def __init__(self, base: Path, *, policy_file: Path = POLICY_FILE, reveals_per_day: int = REVEALS_PER_DAY) -> None:
        self.passphrase = os.environ[PASSPHRASE_ENV]
        self.policy_file = base / "policy.toml"
        shutil.copyfile(policy_file, self.policy_file)
        auth = AuthConfig(reveals_per_day=reveals_per_day)
        entries = [NodeEntry(node_id="branch-a", role="branch", parent="hq"),
                   NodeEntry(node_id="branch-b", role="branch", parent="hq"),
                   NodeEntry(node_id="partner-x", role="partner", parent="hq", classes=["contact", "profile"],
                             campaigns=[CAMPAIGN])]
        common = {"policy": str(self.policy_file), "auth": auth}
        self.configs = {"hq": SiteConfig(node_id="hq", role="hq", data_dir=str(base / "hq"), nodes=entries, **common)}
        for node, kind in NODES.items():
            if kind != "hq":
                self.configs[node] = SiteConfig(
                    node_id=node, role=kind, data_dir=str(base / node),  # type: ignore[arg-type]
                    upstream=UpstreamConfig(node_id="hq", url="http://127.0.0.1:9"),
                    campaigns=[CAMPAIGN] if kind == "partner" else [], **common,
                )
        self.users: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, Customer] = {}
        self.clients: dict[str, TestClient[Any]] = {}
        self._stack = ExitStack()

    # ------------------------------------------------------------ set-up

    async def init(self, users: list[UserCreate]) -> None:
        """Init every node, enroll the nodes below HQ with HQ (scope keys issued by
        sync), and define ``users`` at HQ."""
        for config in self.configs.values():
            store = await init_node(config, self.passphrase)
            await store.close()
        hq = await Node.open(self.configs["hq"], self.passphrase)
        try:
            assert hq.authority is not None
            for node in self.configs:
                if node != "hq":
                    public = open_keystore(self.configs[node].keystore_path, self.passphrase).identity.public()
                    await hq.authority.enroll(public)
            passwords = PasswordCheck()
            for body in users:
                self.users[body.username] = await create_user(hq.store, passwords, body)
        finally:
            await hq.close()

    def start(self) -> None:
        for node, config in self.configs.items():
            app = create_app(config, passphrase=self.passphrase, replicate=False)
            app.state.admin_token = ADMIN_TOKEN
            self.clients[node] = self._stack.enter_context(TestClient(app, base_url=f"http://{node}.test"))

    def close(self) -> None:
        self._stack.close()

    def node(self, name: str) -> Node:
        return self.clients[name].app.state.node  # type: ignore[no-any-return]

    def on(self, name: str, coro: Any) -> Any:
        """Run a coroutine on the event loop of ``name``'s app (its store, its keyring)."""
        return self.clients[name].blocking_portal.call(lambda: coro)

    def settle(self) -> None:
        """Sync every node below HQ with HQ (twice), then let each node's key
        steward take what arrived."""
        policy = load_node_policy(self.configs["hq"])

        async def sync_all() -> None:
            hq = await SqliteStore.open(self.configs["hq"].db_path, node_id="hq", clock=Clock(wall_clock_ms, 60_000))
            try:
                responder = Responder(hq, scope_for=lambda peer: scope_for(self.configs["hq"], policy, peer))
                for node in self.configs:
                    if node == "hq":
                        continue
                    store = await SqliteStore.open(self.configs[node].db_path, node_id=node,
                                                   clock=Clock(wall_clock_ms, 60_000))
                    try:
                        for _ in range(2):
                            await Replicator(store, LocalTransport(responder), upstream="hq").sync_once()
                    finally:
                        await store.close()
            finally:
                await hq.close()

        self.on("hq", self.node("hq").steward.run_once())
        asyncio.run(sync_all())
        for node in self.configs:
            self.on(node, self.node(node).steward.run_once())

    # ------------------------------------------------------------ acting

    def sign_in(self, username: str, node: str | None = None) -> dict[str, str]:
        """The authorization header of ``username`` signed in at ``node`` (their own site by default)."""
        at = node or self.site_of(username)
        response = self.clients[at].post("/auth/sign-in", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return bearer(response.json()["access_token"])

    def site_of(self, username: str) -> str:
        return str(self.users[username]["site"])

    def user_id(self, username: str) -> str:
        return str(self.users[username]["row_id"])

    def create_customer(self, key: str, body: dict[str, Any], node: str = "hq") -> Customer:
        response = self.clients[node].post("/customers", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        full = response.json()
        assert full["unavailable"] == [], full
        customer = Customer(key=key, row_id=full["row_id"], body=body, full=full)
        self.customers[key] = customer
        return customer

    def events(self, node: str, *, after_id: int = 0, row_id: str | None = None, actor: str | None = None,
               action: str | None = None) -> list[AuditEntry]:
        """The node's own audit entries after entry ``after_id``, naming ``row_id``,
        of ``actor`` and ``action`` where given; sign-ins (each `sign_in` here
        makes one) only when ``action`` asks for them."""
        store = self.node(node).store
        entries: list[AuditEntry] = self.on(node, store.audit_chain(store.node_id, after_seq=after_id,
                                                                     limit=1_000_000))
        return [e for e in entries if (row_id is None or row_id in e.rows) and actor in (None, e.actor)
                and (action == e.action or (action is None and e.action != "sign_in"))]

    def last_event_id(self, node: str) -> int:
        """The seq of the node's latest audit entry (0: none yet)."""
        events = self.events(node)
        return events[-1].seq if events else 0

    def high_seq(self, node: str) -> int:
        return self.on(node, self.node(node).store.high_seq())  # type: ignore[no-any-return]

    def holds(self, node: str, row_id: str) -> bool:
        """Whether ``node`` holds the customer at all (scoped replication sends a node
        only the rows its scope admits)."""
        return self.on(node, self.node(node).store.read_row("customers", row_id)) is not None

    def principal(self, username: str, policy: Policy) -> Principal:
        """The user as row admission sees them (what the API should build)."""
        user = self.users[username]
        team = frozenset(u["row_id"] for u in self.users.values()
                         if user["team"] is not None and u["team"] == user["team"] and u["site"] == user["site"])
        site = user["site"]
        return Principal(user_id=user["row_id"], role=user["role"], site=site, site_kind=NODES[site],
                         team=user["team"], team_members=team,
                         campaigns=frozenset([CAMPAIGN]) if NODES[site] == "partner" else frozenset())


def role_username(role: str) -> str:
    return role.replace("_", "-")


def home_kind(policy: Policy, role: str) -> str | None:
    """The kind of site a role's test user sits at (None: none the deployment has)."""
    kinds = policy.site_kinds(role)
    return next((k for k in KIND_PREFERENCE if k in kinds), None)


def role_users(policy: Policy) -> list[UserCreate]:
    """One user per role the policy grants anywhere the deployment has a node of,
    plus a second agent on the first agent's team (`mate`) when the policy has agents."""
    out = []
    for role in policy.roles:
        kind = home_kind(policy, role)
        if kind is None:
            continue
        out.append(UserCreate(username=role_username(role), role=role, site=NODE_OF_KIND[kind],  # type: ignore[arg-type]
                              password=PASSWORD, team="north"))
    if "agent" in policy.roles:
        out.append(UserCreate(username="mate", role="agent", site="branch-a", password=PASSWORD, team="north"))
    out.append(UserCreate(username="limited", role="supervisor", site="branch-a", password=PASSWORD))
    return out


#: the person's consent to the processing of their ID number, which a create
#: that stores one must carry (PIPL Art. 29; tests/consent)
ID_CONSENT = {"id_number_consent": {"channel": "paper"}}


def customer_bodies(d: AccessDeployment) -> dict[str, dict[str, Any]]:
    """The customers every access test works on, made at HQ by the operator, each
    with the consent its ID number needs."""
    mate = d.user_id("mate")
    manager = d.user_id("account-manager")
    return {key: {**body, **ID_CONSENT} for key, body in {
        # branch-a, assigned to the agents' team, managed by the account manager, contracted to partner-x
        "a_team": {**person(1), "home_branch": "branch-a", "star_level": 5, "segment": "gold", "arpu_fen": 12_800,
                   "assigned_agent": mate, "account_manager": manager, "sales_rep": "rep-7",
                   "tags_add": ["vip"], "suppression_add": ["refused_marketing"], "partners_add": ["partner-x"]},
        # branch-a, someone else's, no partner
        "a_other": {**person(2), "home_branch": "branch-a", "star_level": 3, "segment": "silver",
                    "assigned_agent": STRANGER, "tags_add": ["old"]},
        # branch-b, the queue there
        "b": {**person(3), "home_branch": "branch-b", "star_level": 6, "segment": "gold"},
        # branch-b, contracted to partner-x
        "b_partner": {**person(4), "home_branch": "branch-b", "star_level": 2, "partners_add": ["partner-x"],
                      "assigned_agent": STRANGER},
    }.items()}


@pytest.fixture(scope="package")
def policy() -> Policy:
    return load_policy(POLICY_FILE)


@contextmanager
def running_deployment(base: Path, policy: Policy) -> Iterator[AccessDeployment]:
    """A deployment with a user per role of ``policy`` and the customers of
    `customer_bodies` made at HQ and synced everywhere, serving until the end."""
    d = AccessDeployment(base)
    asyncio.run(d.init(role_users(policy)))
    d.start()
    try:
        for key, body in customer_bodies(d).items():
            d.create_customer(key, body)
        d.settle()
        yield d
    finally:
        d.close()


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Iterator[AccessDeployment]:
    """The deployment every access test shares. Tests must leave what they read as
    they found it (writes that succeed write the values already there)."""
    with running_deployment(tmp_path_factory.mktemp("access"), policy) as d:
        yield d


def new_id() -> str:
    return new_ulid(wall_clock_ms(), os.urandom(10))
