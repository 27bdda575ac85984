"""Real nodes for the contract tests: HQ, branch-a and partner-x as `outpost serve`
processes on loopback (the repository's sites and policy), with a user of each
role signed in at the node where the role works, and a few customers and
consents made at HQ and synced down, so requests that name ids sometimes hit
real rows.

The nodes are shared by the module; the fuzzer's writes land on them, which is
the point: every answer must conform to the committed contract whatever state
earlier requests left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from server.demo import DEMO_ID_CONSENT, demo_person
from server.node_process import NodeProcess
from tests.conftest import LoopThread, enrolled_nodes

BELOW = ("branch-a", "partner-x")
PASSWORD = "correct horse battery staple 7"
#: role -> (username, the node where that user works and signs in)
ROLE_USERS = {
    "hq_admin": ("fz-admin", "hq"),
    "auditor": ("fz-auditor", "hq"),
    "supervisor": ("fz-supervisor", "branch-a"),
    "agent": ("fz-agent", "branch-a"),
    "account_manager": ("fz-manager", "branch-a"),
    "partner_agent": ("fz-partner", "partner-x"),
}
#: sessions per role opened at the start (before failed sign-ins can lock the
#: address out), one for each call of an operation that ends its session
SPARE_SESSIONS = 8
#: a user the fuzzer may disable, revoke and re-enable (never one it signs in as)
VICTIM = ("fz-victim", "agent", "branch-a")


@dataclass
class ApiNodes:
    """The running nodes, the operator token, and what the seed made."""

    hq: NodeProcess
    below: dict[str, NodeProcess]
    #: role -> bearer token of its user (at the node of `ROLE_USERS`)
    tokens: dict[str, str] = field(default_factory=dict)
    #: customers made at HQ (home branch-a; the first two contracted to partner-x)
    customers: list[str] = field(default_factory=list)
    #: a customer the fuzzer may erase, rotate and export
    victim_customer: str = ""
    #: users made at HQ, by username
    users: dict[str, str] = field(default_factory=dict)
    #: tasks made at branch-a: two care tasks of the agent and a complaint ticket
    tasks: list[str] = field(default_factory=list)
    #: role -> further sessions of its user, for operations that end the one they use
    spare: dict[str, list[str]] = field(default_factory=dict)

    def node(self, site: str) -> NodeProcess:
        return self.hq if site == "hq" else self.below[site]

    async def sync(self) -> None:
        for _ in range(2):
            for node in self.below.values():
                await node.sync_now()

    async def sign_in(self, username: str, site: str) -> str:
        response = await self.node(site).client.post(
            "/auth/sign-in", json={"username": username, "password": PASSWORD}, headers={"authorization": ""})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def api_nodes(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[ApiNodes]:
    out: list[ApiNodes] = []

    async def seed(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        n = ApiNodes(hq, below)
        for role, (username, site) in [*ROLE_USERS.items(), (VICTIM[1], (VICTIM[0], VICTIM[2]))]:
            user = await hq.call("POST", "/users", json={"username": username, "role": role, "site": site,
                                                         "password": PASSWORD, "team": "north"})
            n.users[username] = user["row_id"]
        for i in range(4):
            body = {**demo_person(900 + i), **DEMO_ID_CONSENT, "home_branch": "branch-a", "star_level": 5,
                    "assigned_agent": n.users["fz-agent"], "account_manager": n.users["fz-manager"]}
            if i < 2:
                body["partners_add"] = ["partner-x"]
            card = await hq.call("POST", "/customers", json=body)
            n.customers.append(card["row_id"])
            await hq.call("POST", f"/customers/{card['row_id']}/consents",
                          json={"purpose": "marketing", "granted": i % 2 == 0, "channel": "phone"})
        n.victim_customer = n.customers[-1]
        await n.sync()
        branch = below["branch-a"]
        for customer in n.customers[:2]:
            task = await branch.call("POST", "/tasks", json={"customer_id": customer, "kind": "care",
                                                             "assignee": n.users["fz-agent"]})
            n.tasks.append(task["row_id"])
        ticket = await branch.call("POST", "/complaints", json={"customer_id": n.customers[0], "category": "billing"})
        n.tasks.append(ticket["task"]["row_id"])
        tokens = await asyncio.gather(*(n.sign_in(u, s) for u, s in ROLE_USERS.values()))
        n.tokens = dict(zip(ROLE_USERS, tokens, strict=True))
        for role, (username, site) in ROLE_USERS.items():
            n.spare[role] = [await n.sign_in(username, site) for _ in range(SPARE_SESSIONS)]
        out.append(n)

    with enrolled_nodes(aio, tmp_path_factory.mktemp("api-nodes"), BELOW, seed):
        yield out[0]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30)
