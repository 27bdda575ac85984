"""Nodes for sign-in tests: HQ, branch-a and branch-b as in-process apps.

`Deployment` writes each node's keystore and database under ``tmp_path`` (as
`outpost init` does), defines users at HQ, and syncs the branches in memory
(HQ's real responder and scope, no HTTP). `Deployment.client` starts a node's
app in a `litestar.testing.TestClient`; the sync can run again while it
serves, since SQLite takes a second connection to the same file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from crypto.keystore import open_keystore
from server.app import create_app
from server.config import AuthConfig, NodeEntry, SiteConfig, UpstreamConfig
from server.peer_scopes import scope_for
from server.node import PASSPHRASE_ENV, init_node, load_node_policy
from tests.conftest import POLICY_FILE
from server.passwords import PasswordCheck
from server.users import UserCreate, create_user
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.store.sqlite import SqliteStore, wall_clock_ms

ADMIN_TOKEN = "operator-token-for-auth-tests"
PASSWORD = "correct horse battery staple 7"


class Deployment:
    """HQ with branch-a and branch-b below it, on files under ``base``."""

    def __init__(self, base: Path, *, trusted: dict[str, list[str]] | None = None) -> None:
        self.passphrase = os.environ[PASSPHRASE_ENV]
        trusted = trusted or {}
        nodes = [NodeEntry(node_id=b, role="branch", parent="hq") for b in ("branch-a", "branch-b")]
        self.configs = {
            "hq": SiteConfig(node_id="hq", role="hq", data_dir=str(base / "hq"), nodes=nodes, policy=str(POLICY_FILE),
                             auth=AuthConfig(trusted_issuers=trusted.get("hq", []))),
        }
        for branch in ("branch-a", "branch-b"):
            self.configs[branch] = SiteConfig(
                node_id=branch, role="branch", data_dir=str(base / branch), policy=str(POLICY_FILE),
                upstream=UpstreamConfig(node_id="hq", url="http://127.0.0.1:9"),
                auth=AuthConfig(trusted_issuers=trusted.get(branch, [])),
            )
        self.user_ids: dict[str, str] = {}

    def open_store(self, node: str) -> Any:
        return SqliteStore.open(self.configs[node].db_path, node_id=node, clock=Clock(wall_clock_ms, 60_000))

    async def init(self, users: list[UserCreate]) -> None:
        """Init every node, register the branches' signing keys with HQ, define
        ``users`` at HQ and sync both branches."""
        for config in self.configs.values():
            store = await init_node(config, self.passphrase)
            await store.close()
        hq = await self.open_store("hq")
        try:
            for branch in ("branch-a", "branch-b"):
                public = open_keystore(self.configs[branch].keystore_path, self.passphrase).identity.public()
                await hq.set_node_keys(branch, key_version=public.key_version, sign_pub=public.sign_pub,
                                       kem_pub=public.kem_pub)
            passwords = PasswordCheck()
            for body in users:
                self.user_ids[body.username] = (await create_user(hq, passwords, body))["row_id"]
        finally:
            await hq.close()
        await self.sync("branch-a", "branch-b")

    async def sync(self, *branches: str) -> None:
        """One in-memory sync round of each branch with HQ."""
        hq = await self.open_store("hq")
        try:
            policy = load_node_policy(self.configs["hq"])
            responder = Responder(hq, scope_for=lambda peer: scope_for(self.configs["hq"], policy, peer))
            for branch in branches:
                store = await self.open_store(branch)
                try:
                    await Replicator(store, LocalTransport(responder), upstream="hq").sync_once()
                finally:
                    await store.close()
        finally:
            await hq.close()

    @contextmanager
    def client(self, node: str) -> Iterator[TestClient[Any]]:
        """The node's app, serving in a TestClient (operator token: `ADMIN_TOKEN`)."""
        app = create_app(self.configs[node], passphrase=self.passphrase, replicate=False)
        app.state.admin_token = ADMIN_TOKEN
        with TestClient(app, base_url=f"http://{node}.test") as client:
            yield client


def user(username: str, role: str = "agent", site: str = "branch-a", **extra: Any) -> UserCreate:
    return UserCreate(username=username, role=role, site=site, password=PASSWORD, **extra)  # type: ignore[arg-type]


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    """HQ, branch-a and branch-b, initialised, with three users synced:
    ``ana`` (agent at branch-a), ``max`` (account manager at branch-a) and
    ``bo`` (agent at branch-b)."""
    d = Deployment(tmp_path)
    asyncio.run(d.init([user("ana", team="north"), user("max", role="account_manager"), user("bo", site="branch-b")]))
    return d


def sign_in(client: TestClient[Any], username: str = "ana", password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/auth/sign-in", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)
