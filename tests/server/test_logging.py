"""What a running node writes to its log: events with their ids and counts
(``key=value``, see server/logging.py), never values."""

from __future__ import annotations

import pytest

from tests.conftest import ClusterFactory, LoopThread

pytestmark = pytest.mark.system


def test_sync_events_carry_their_ids(make_cluster: ClusterFactory, aio: LoopThread) -> None:
    async def scenario() -> tuple[str, str]:
        cluster = await make_cluster(1, sync_interval_s=3600)
        hq, branch = cluster.hq, cluster.branches["branch-1"]
        await branch.sync_now()  # after the round the branch starts with
        card = await hq.call("POST", "/customers", json={"segment": "gold-LOGCHECK", "star_level": 5})
        await branch.sync_now()
        await branch.call("PATCH", f"/customers/{card['row_id']}", json={"segment": "silver-LOGCHECK"})
        await branch.sync_now()
        return hq.log_text(), branch.log_text()

    hq_log, branch_log = aio.run(scenario(), timeout=60)
    served = [line for line in hq_log.splitlines() if "sync.pull served" in line]
    applied = [line for line in hq_log.splitlines() if "sync.push applied" in line]
    assert served and applied, hq_log[-2000:]
    assert all("peer=branch-1" in line for line in served + applied), served[:2] + applied[:2]
    assert any("applied=1" in line for line in applied), applied
    assert "LOGCHECK" not in hq_log + branch_log, "a field value reached a log"
