"""The node-side sweep on real SQLite stores: HQ and branch-a, fed the same rows by
sync and swept at the same instant offline, decide the same edits and, after
exchanging changes, hold the same rows (one task per decision, not two)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.audit_log import AuditLog
from server.config import NodeEntry, SiteConfig
from server.peer_scopes import scope_for
from server.policy import load_policy
from server.work_rules import WorkRules
from sync.edits import Edit
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.store.sqlite import SqliteStore
from tests.conftest import POLICY_FILE
from tests.work.clock import CAL, DAY, at

HQ_CONFIG = SiteConfig(node_id="hq", role="hq", nodes=[NodeEntry(node_id="branch-a", role="branch", parent="hq")])
BRANCH_CONFIG = SiteConfig(node_id="branch-a", role="branch")


def test_two_nodes_sweeping_offline_make_the_same_rows(tmp_path: Path) -> None:
    async def go() -> None:
        now = [at(2025, 3, 7, 16)]
        clock = Clock(lambda: now[0], 60_000)
        hq = await SqliteStore.create(tmp_path / "hq.db", node_id="hq", role="hq", clock=clock)
        branch = await SqliteStore.create(tmp_path / "branch-a.db", node_id="branch-a", role="branch", clock=clock)
        policy = load_policy(POLICY_FILE)
        replicator = Replicator(branch, LocalTransport(Responder(
            hq, scope_for=lambda peer: scope_for(HQ_CONFIG, policy, peer))), upstream="hq")
        await hq.enroll("branch-a", parent="hq", role="branch")
        await branch.enroll("hq", parent=None, role="hq")
        try:
            edits = []
            for n, (star, seen) in enumerate([(7, 7), (6, 4), (5, None), (2, 2), (6, 6)]):
                cid = f"01JD0QK2M6X3Z1V9A8B7C6D5{n:02d}"
                edits += [Edit("customers", cid, "home_branch", "set", "branch-a"),
                          Edit("customers", cid, "star_level", "set", star),
                          Edit("customers", cid, "sales_rep", "set", "rep-1")]
                if seen is not None:
                    edits.append(Edit("customers", cid, "star_seen", "set", seen))
                if n < 3:
                    edits.append(Edit("customers", cid, "assigned_agent", "set", f"ag-{n % 2}"))
            await hq.write_local(edits)
            await replicator.sync_once()

            rules = {
                "hq": WorkRules(hq, AuditLog(hq, reveals_per_day=0, now_ms=lambda: now[0]), CAL,
                                birthday_of=lambda row: (3, 9)),
                "branch": WorkRules(branch, AuditLog(branch, reveals_per_day=0, now_ms=lambda: now[0]), CAL,
                                    birthday_of=lambda row: (3, 9), scope=policy.node_scope(BRANCH_CONFIG)),
            }
            decided = {name: (await r.decide(now_ms=now[0]))[0] for name, r in rules.items()}
            assert decided["hq"] == decided["branch"] and decided["hq"]
            made = {e.row_id for e in decided["hq"] if e.collection == "tasks"}
            assert len(made) >= 5  # care for each, bindings and visits for the promoted

            reports = {name: await r.sweep_once(now_ms=now[0]) for name, r in rules.items()}
            assert reports["hq"].rows == reports["branch"].rows and reports["branch"].skipped_rows == 0
            assert reports["hq"].birthdays_opened == 0  # no customer has a sealed birthday here
            for _ in range(2):
                await replicator.sync_once()
            for store in (hq, branch):
                tasks = await store.find_rows("tasks")
                assert {t["row_id"] for t in tasks} == made  # one row per decision
            assert await hq.digest(["customers", "tasks"]) == await branch.digest(["customers", "tasks"])

            # each committed batch has its entry: system, field names and counts, no values
            entries = [e for _, e in await branch.audit_entries(action="work_rules")]
            assert entries and all(e.actor == "system" for e in entries)
            assert sum(e.counts["rows"] for e in entries) == reports["branch"].rows
            # a sweep that finds nothing new changes nothing, and records nothing
            again = await rules["branch"].sweep_once(now_ms=now[0] + 60_000)
            assert again.rows == 0
            assert len(await branch.audit_entries(action="work_rules")) == len(entries)
        finally:
            await hq.close()
            await branch.close()

    asyncio.run(go())
