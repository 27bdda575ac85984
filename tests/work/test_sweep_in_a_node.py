"""The work rules run inside a node process on their schedule: a customer
promoted to five stars at HQ gets its binding and visit tasks from HQ's own
sweep, and branch-a, syncing, holds the same tasks (name-based ids: one row
whichever node decided first), with one audit entry of the system per batch."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import LoopThread, enrolled_nodes

pytestmark = pytest.mark.system

WORK = "[work]\nsweep_interval_s = 1\n"


def test_a_running_node_sweeps_and_the_branch_gets_the_same_tasks(tmp_path: Path, aio: LoopThread) -> None:
    with enrolled_nodes(aio, tmp_path, ("branch-a",), extra_config=WORK) as (hq, below):
        branch = below["branch-a"]
        made = aio.run(hq.call("POST", "/customers", json={"home_branch": "branch-a", "star_level": 6,
                                                            "name": "晋升客户", "phone": "13811112222"}))
        customer = made["row_id"]
        deadline = time.monotonic() + 30
        while True:
            card = aio.run(hq.call("GET", f"/customers/{customer}/card"))
            rules = {t["rule"] for t in card["open_tasks"]}
            if {"bind_account_manager", "promotion_visit"} <= rules or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # promoted: bind an account manager, visit within a month; and, never cared for, a care call
        assert rules == {"bind_account_manager", "promotion_visit", "care_cadence"}, card["open_tasks"]
        visit = next(t for t in card["open_tasks"] if t["rule"] == "promotion_visit")
        assert visit["deadline_at_ms"] > visit["due_at_ms"] + 27 * 86_400_000  # a month to visit
        aio.run(branch.sync_now())
        aio.run(branch.sync_now())
        at_branch = aio.run(branch.call("GET", f"/customers/{customer}/card"))
        assert sorted(t["row_id"] for t in at_branch["open_tasks"]) == sorted(t["row_id"] for t in card["open_tasks"])
        entries = aio.run(hq.call("GET", "/audit/actors/system", params={"limit": 1000}))["entries"]
        assert any(e["action"] == "work_rules" and e["node"] == "hq" for e in entries)
