"""A retention purge at HQ reaches the branch that holds the rows, by ordinary sync
under the repository's policy (HQ's real responder and branch-a's scope, in
memory; tests/retention/test_system.py does it with real processes).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.config import NodeEntry, SiteConfig
from server.peer_scopes import scope_for
from server.policy import load_policy
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.store.sqlite import SqliteStore
from tests.conftest import POLICY_FILE
from tests.retention.conftest import T0, open_hq

HQ_CONFIG = SiteConfig(node_id="hq", role="hq", nodes=[NodeEntry(node_id="branch-a", role="branch", parent="hq"),
                                                      NodeEntry(node_id="branch-b", role="branch", parent="hq")])


def test_the_purge_replicates_to_the_branch_and_shreds_the_notes_there(tmp_path: Path) -> None:
    async def go() -> None:
        now = [T0]
        hq = await open_hq(tmp_path / "hq.db", now)
        branch = await SqliteStore.create(tmp_path / "branch-a.db", node_id="branch-a", role="branch",
                                          clock=Clock(lambda: now[0], 60_000))
        policy = load_policy(POLICY_FILE)
        responder = Responder(hq.store, scope_for=lambda peer: scope_for(HQ_CONFIG, policy, peer))
        replicator = Replicator(branch, LocalTransport(responder), upstream="hq")
        await hq.store.enroll("branch-a", parent="hq", role="branch")
        await branch.enroll("hq", parent=None, role="hq")
        try:
            old_result = await hq.result(recorded_day=0)
            fresh_result = await hq.result(recorded_day=30)
            other_branch = await hq.result(recorded_day=0, site="branch-b")
            closed = await hq.task("done")
            open_ = await hq.task("in_progress")
            await replicator.sync_once()
            held = await branch.read_row("results", old_result)
            assert held is not None and held["notes"] is not None and not held["deleted"]
            assert await branch.read_row("results", other_branch) is None  # not in branch-a's scope
            assert await hq.deleted("tasks", [closed, open_], branch) == [False, False]

            hq.at(40)
            report = await hq.retention.purge()
            assert (report.results, report.tasks) == (2, 1)
            await replicator.sync_once()

            assert await hq.deleted("results", [old_result, fresh_result], branch) == [True, False]
            assert await hq.deleted("tasks", [closed, open_], branch) == [True, False]
            gone = await branch.read_row("results", old_result)
            assert gone is not None and gone["notes"] is None
            assert "notes" not in await branch.field_origins("results", old_result)  # no sealed state left
            assert await branch.read_row("results", other_branch) is None
            scope = scope_for(HQ_CONFIG, policy, "branch-a")
            assert await branch.digest(["results", "tasks"]) == await hq.store.digest(["results", "tasks"],
                                                                                        scope=scope)
        finally:
            await branch.close()
            await hq.store.close()

    asyncio.run(go())
