"""Assigning a campaign to a partner moves its tasks in and out of the partner's
scope by ordinary sync: HQ's scope for partner-x (the repository's policy and
registry) reads the campaigns whose ``partners`` name it. In memory: HQ's and
partner-x's stores, HQ's responder, partner-x's replicator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.config import load_site
from server.peer_scopes import contracted_campaigns, scope_for
from server.policy import load_policy
from sync.edits import Edit
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.conftest import POLICY_FILE

C1, C2 = "01M84BWR79C000000000000001", "01M84BWR79C000000000000002"
T1, T2 = "01M84BWR79T000000000000001", "01M84BWR79T000000000000002"
CUSTOMER = "01M84BWR79X000000000000001"


def test_a_campaign_assigned_to_the_partner_brings_its_tasks_and_taking_it_back_purges_them(tmp_path: Path) -> None:
    hq_config = load_site(POLICY_FILE.parent / "hq.toml")
    policy = load_policy(POLICY_FILE)

    async def scenario() -> None:
        hq = await SqliteStore.create(tmp_path / "hq.db", node_id="hq", role="hq", clock=Clock(wall_clock_ms, 60_000))
        partner = await SqliteStore.create(tmp_path / "x.db", node_id="partner-x", role="partner",
                                           clock=Clock(wall_clock_ms, 60_000))
        await hq.enroll("partner-x", parent="hq", role="partner")
        await partner.enroll("hq", parent=None, role="hq")
        contracts: dict[str, frozenset[str]] = {}
        responder = Responder(hq, scope_for=lambda peer: scope_for(
            hq_config, policy, peer, campaigns=contracts.get(peer, frozenset())))
        purged: list[list[str]] = []
        replicator = Replicator(partner, LocalTransport(responder), upstream="hq",
                                on_purge=lambda rows, keys: purged.append(rows) or [])

        async def sync() -> None:
            contracts.clear()
            contracts.update(await contracted_campaigns(hq))  # what the node refreshes before each pull
            await replicator.sync_once()

        try:
            await hq.write_local([
                Edit("campaigns", C1, "name", "set", "spring care"), Edit("campaigns", C2, "name", "set", "other"),
                Edit("customers", CUSTOMER, "partners", "add", "partner-x"),
                Edit("tasks", T1, "campaign_id", "set", C1), Edit("tasks", T1, "customer_id", "set", CUSTOMER),
                Edit("tasks", T1, "priority", "set", 2), Edit("tasks", T1, "site", "set", "partner-x"),
                Edit("tasks", T2, "campaign_id", "set", C2), Edit("tasks", T2, "priority", "set", 7),
            ])
            await sync()
            assert await partner.row_ids("tasks") == [] and await partner.row_ids("customers") == [CUSTOMER]

            await hq.write_local([Edit("campaigns", C1, "partners", "add", "partner-x")])
            await sync()
            task = await partner.read_row("tasks", T1)
            assert await partner.row_ids("tasks") == [T1], "the assigned campaign's task, not the other's"
            assert task is not None and task["priority"] == 2, "whole: written before it entered the scope"

            await hq.write_local([Edit("campaigns", C1, "partners", "remove", "partner-x")])
            await sync()
            assert await partner.row_ids("tasks") == [] and purged == [[f"tasks/{T1}"]]
            assert await partner.row_ids("customers") == [CUSTOMER], "the customer's own contract stands"
        finally:
            await hq.close()
            await partner.close()

    asyncio.run(scenario())
