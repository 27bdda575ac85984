"""Two nodes holding the same rows report the same KPIs: HQ and a branch work
apart (each records results, and each archives the same complaint ticket at its
own time), sync in memory (HQ's responder, the branch's replicator), and
`kpi_report` over either store gives the same rows, the ticket counted once, on
the later archive's time."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from server.routes.reports import kpi_report
from sync.edits import Edit
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.store.sqlite import SqliteStore

DAY = date(2026, 11, 2)
#: HQ's clock: 10:00 in Shanghai on DAY; the branch archives the ticket 20 s later
T_HQ = int(datetime(2026, 11, 2, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()) * 1000
TICKET = "01JD0QK2M6X3Z1V9A8B7C6D5T0"
ANA, BO = "01JD0QK2M6X3Z1V9A8B7C6D5A1", "01JD0QK2M6X3Z1V9A8B7C6D5B1"


def result(row_id: str, agent: str, site: str, outcome: str, duration_s: int) -> list[Edit]:
    values: dict[str, Any] = {"agent": agent, "site": site, "outcome": outcome, "duration_s": duration_s,
                              "recorded_at_ms": T_HQ}
    return [Edit("results", row_id, f, "set", v) for f, v in values.items()]


def test_hq_and_a_branch_report_the_same_after_sync(tmp_path: Path) -> None:
    async def go() -> tuple[list[Any], list[Any], list[Any]]:
        hq_now, branch_now = [T_HQ], [T_HQ + 20_000]
        hq = await SqliteStore.create(tmp_path / "hq.db", node_id="hq", role="hq",
                                      clock=Clock(lambda: hq_now[0], 60_000))
        branch = await SqliteStore.create(tmp_path / "b.db", node_id="branch-a", role="branch",
                                          clock=Clock(lambda: branch_now[0], 60_000))
        await hq.enroll("branch-a", parent="hq", role="branch")
        await branch.enroll("hq", parent=None, role="hq")
        replicator = Replicator(branch, LocalTransport(Responder(hq)), upstream="hq")
        try:
            await hq.write_local([Edit("users", ANA, "site", "set", "branch-a"),
                                  Edit("users", ANA, "team", "set", "north"),
                                  Edit("users", BO, "site", "set", "branch-a"),
                                  Edit("users", BO, "team", "set", "south"),
                                  # the deadline falls between the two archives
                                  *[Edit("tasks", TICKET, f, "set", v) for f, v in {
                                      "kind": "complaint", "first_responder": ANA, "site": "branch-a",
                                      "deadline_at_ms": T_HQ + 10_000, "status": "in_progress"}.items()]])
            await replicator.sync_once()
            # apart: HQ archives the ticket in time, the branch (later) after the deadline
            await hq.write_local([Edit("tasks", TICKET, "status", "set", "archived"),
                                  *result("01JD0QK2M6X3Z1V9A8B7C6D5R1", ANA, "branch-a", "success", 40)])
            await branch.write_local([Edit("tasks", TICKET, "status", "set", "archived"),
                                      *result("01JD0QK2M6X3Z1V9A8B7C6D5R2", BO, "branch-a", "no_answer", 0),
                                      *result("01JD0QK2M6X3Z1V9A8B7C6D5R3", BO, "branch-a", "connected", 12)])
            before = await kpi_report(branch, by="agent", day_from=DAY, day_to=DAY)
            for _ in range(2):
                await replicator.sync_once()
            reports = [await kpi_report(store, by="agent", day_from=DAY, day_to=DAY) for store in (hq, branch)]
            return before, *reports  # type: ignore[return-value]
        finally:
            await branch.close()
            await hq.close()

    before, at_hq, at_branch = asyncio.run(go())
    assert at_hq == at_branch
    rows = {r.key: r for r in at_hq}
    assert (rows[ANA].attempts, rows[ANA].conversions, rows[BO].attempts) == (1, 1, 2)
    # one ticket, counted once, archived at the later stamp: after the deadline
    assert (rows[ANA].complaints_archived, rows[ANA].complaint_timeliness) == (1, 0.0)
    # before sync the branch saw only its own work
    assert {r.key: r.attempts for r in before} == {ANA: 0, BO: 2}
