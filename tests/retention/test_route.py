"""``POST /retention/run``: the operator's purge on demand, at HQ only.

HQ and branch-a serve in process (`litestar.testing.TestClient`); HQ's store
clock is moved forward (`future`) so that tasks closed now have expired.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from server.app import create_app
from server.config import NodeEntry, RetentionConfig, SiteConfig, UpstreamConfig
from server.node import PASSPHRASE_ENV, Node, init_node
from sync.edits import Edit
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.store.sqlite import wall_clock_ms
from tests.conftest import POLICY_FILE, problem
from tests.retention.conftest import DAY_MS

TOKEN = "operator-token-for-retention-tests"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
PASSWORD = "correct horse battery staple 7"
PERIODS = RetentionConfig(results_days=30, closed_tasks_days=10)


class Deployment:
    def __init__(self, hq: TestClient[Any], branch: TestClient[Any]) -> None:
        self.hq, self.branch = hq, branch

    @property
    def node(self) -> Node:
        return self.hq.app.state.node  # type: ignore[no-any-return]

    def on_hq(self, coro: Any) -> Any:
        return self.hq.blocking_portal.call(lambda: coro)

    def write(self, edits: list[Edit]) -> None:
        self.on_hq(self.node.store.write_local(edits))

    def result(self, *, days_ago: float) -> str:
        row_id = new_ulid(wall_clock_ms(), os.urandom(10))
        self.write([Edit("results", row_id, "outcome", "set", "no_answer"),
                    Edit("results", row_id, "site", "set", "branch-a"),
                    Edit("results", row_id, "notes", "set", b"\x01" + os.urandom(32)),
                    Edit("results", row_id, "recorded_at_ms", "set", wall_clock_ms() - int(days_ago * DAY_MS))])
        return row_id

    def task(self, status: str) -> str:
        row_id = new_ulid(wall_clock_ms(), os.urandom(10))
        self.write([Edit("tasks", row_id, "site", "set", "branch-a"), Edit("tasks", row_id, "status", "set", status)])
        return row_id

    def deleted(self, collection: str, row_id: str) -> bool:
        row = self.on_hq(self.node.store.read_row(collection, row_id))
        assert row is not None
        return bool(row["deleted"])

    @contextmanager
    def future(self, days: float) -> Iterator[None]:
        """HQ's store clock ``days`` ahead of the wall clock, meanwhile."""
        store = self.node.store
        before = store.clock
        store.clock = Clock(lambda: wall_clock_ms() + int(days * DAY_MS), before.max_drift_ms, before.last)
        try:
            yield
        finally:
            store.clock = Clock(before.now_ms, before.max_drift_ms, store.clock.last)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("retention-route")
    policy = base / "policy.toml"
    shutil.copyfile(POLICY_FILE, policy)
    hq = SiteConfig(node_id="hq", role="hq", data_dir=str(base / "hq"), policy=str(policy), retention=PERIODS,
                    nodes=[NodeEntry(node_id="branch-a", role="branch", parent="hq")])
    branch = SiteConfig(node_id="branch-a", role="branch", data_dir=str(base / "branch-a"), policy=str(policy),
                        upstream=UpstreamConfig(node_id="hq", url="http://127.0.0.1:9"))
    passphrase = os.environ[PASSPHRASE_ENV]

    async def init() -> None:
        for config in (hq, branch):
            await (await init_node(config, passphrase)).close()

    asyncio.run(init())
    apps = [create_app(config, passphrase=passphrase, replicate=False) for config in (hq, branch)]
    for app in apps:
        app.state.admin_token = TOKEN
    with TestClient(apps[0], base_url="http://hq.test") as hq_client, \
            TestClient(apps[1], base_url="http://branch-a.test") as branch_client:
        yield Deployment(hq_client, branch_client)


def test_the_operator_purges_now_and_gets_the_counts_per_collection(deployment: Deployment) -> None:
    d = deployment
    old = [d.result(days_ago=45), d.result(days_ago=50)]
    fresh = d.result(days_ago=1)
    closed, open_ = d.task("done"), d.task("assigned")
    with d.future(days=11):
        response = d.hq.post("/retention/run", headers=ADMIN)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["results"], report["tasks"]) == (2, 1)
    assert report["tasks_closed_before_ms"] == report["ran_at_ms"] - 10 * DAY_MS
    assert report["results_before_ms"] == report["ran_at_ms"] - 30 * DAY_MS
    assert [d.deleted("results", r) for r in (*old, fresh)] == [True, True, False]
    assert [d.deleted("tasks", t) for t in (closed, open_)] == [True, False]
    chain = d.on_hq(d.node.store.audit_chain(d.node.store.node_id, limit=1_000_000))
    events = [e for e in chain if e.action == "retention_purge"]
    assert [(e.collection, e.counts, e.purpose, e.actor) for e in events[-2:]] == [
        ("results", {"rows": 2}, "requested", "operator"), ("tasks", {"rows": 1}, "requested", "operator")]
    # nothing left to purge: counts of zero, still recorded
    again = d.hq.post("/retention/run", headers=ADMIN).json()
    assert (again["results"], again["tasks"]) == (0, 0)


def test_the_route_refuses_anyone_but_the_operator(deployment: Deployment) -> None:
    d = deployment
    expired = d.result(days_ago=45)
    created = d.hq.post("/users", headers=ADMIN, json={
        "username": "hq-admin-1", "role": "hq_admin", "site": "hq", "password": PASSWORD})
    assert created.status_code == 201, created.text
    signed_in = d.hq.post("/auth/sign-in", json={"username": "hq-admin-1", "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    user = {"authorization": f"Bearer {signed_in.json()['access_token']}"}
    for headers in ({}, {"authorization": "Bearer not-the-token"}, user):
        response = d.hq.post("/retention/run", headers=headers)
        assert response.status_code == 401, (headers.keys(), response.text)
        assert problem(response)["code"] == "unauthorized"
    assert not d.deleted("results", expired)  # nothing purged by a refused call


def test_only_hq_purges(deployment: Deployment) -> None:
    response = deployment.branch.post("/retention/run", headers=ADMIN)
    assert response.status_code == 409
    body = problem(response)
    assert (body["code"], body["operation"], body["at"]) == ("wrong_node", "retention run", "hq")
