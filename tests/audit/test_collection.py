"""Audit chains collected at HQ by sync, checked there, and questioned by the
auditor: real `outpost serve` processes on loopback (HQ and branch-a).

branch-a's reads and writes leave entries in its chain; after a sync HQ holds
them, and its auditor API answers who accessed a customer, across nodes. Edits
made afterwards to branch-a's SQLite file are raised as alerts at HQ after the
next sync, whether the entries were shipped already (the node's self-check
reports them) or not (HQ finds the break itself), and `outpost audit verify`
exits 1 naming the first bad entry.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.node_process import ROOT, NodeProcess
from tests.conftest import LoopThread, enrolled_nodes

pytestmark = pytest.mark.system

#: the default self-check interval (600 s): an edit made behind the node's back is
#: still reported at the next sync, because the node sees another process wrote its file
AUDIT = "[audit]\ncheckpoint_interval_s = 3600\n"
BODY = {"name": "审计测试", "phone": "13912345678", "email": "audit.case@example.cn", "star_level": 5}


class Deployment:
    def __init__(self, aio: LoopThread, hq: NodeProcess, branch: NodeProcess, customer: str) -> None:
        self.aio, self.hq, self.branch, self.customer = aio, hq, branch, customer

    def call(self, node: NodeProcess, method: str, path: str, **kwargs: Any) -> Any:
        return self.aio.run(node.call(method, path, **kwargs), timeout=60)

    def sync(self) -> None:
        self.call(self.branch, "POST", "/sync/now")

    def alerts(self) -> set[tuple[str, int, str]]:
        return {(a["node"], a["seq"], a["kind"]) for a in self.call(self.hq, "GET", "/audit/alerts")}

    def own_seq(self) -> int:
        db = sqlite3.connect(f"file:{self.branch.data_dir / 'branch-a.db'}?mode=ro", uri=True, timeout=10)
        try:
            return int(db.execute("SELECT max(seq) FROM audit_entries WHERE node = 'branch-a'").fetchone()[0])
        finally:
            db.close()

    def tamper(self, statement: str) -> None:
        db = sqlite3.connect(self.branch.data_dir / "branch-a.db", timeout=10)
        try:
            db.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
            db.execute("DROP TRIGGER IF EXISTS audit_entries_retention")
            db.execute(statement)
            db.commit()
        finally:
            db.close()

    def verify_cli(self, node: NodeProcess, config: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server", "audit", "verify", str(config),
                               "--data-dir", str(node.data_dir)], capture_output=True, text=True, cwd=ROOT,
                              env=node.env, timeout=120)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("audit")
    made: dict[str, str] = {}

    async def prepare(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        branch = below["branch-a"]
        await branch.sync_now()
        made["id"] = (await branch.call("POST", "/customers", json=BODY))["row_id"]
        await branch.call("GET", f"/customers/{made['id']}", params={"purpose": "inbound_call"})
        await branch.sync_now()

    with enrolled_nodes(aio, workdir, ("branch-a",), prepare, extra_config=AUDIT) as (hq, below):
        d = Deployment(aio, hq, below["branch-a"], made["id"])
        d.workdir = workdir  # type: ignore[attr-defined]
        yield d


def test_hq_holds_the_branch_chain_whole_and_answers_who_accessed(deployment: Deployment) -> None:
    d = deployment
    report = d.call(d.hq, "GET", "/audit/verify")
    assert report["ok"] is True, report
    chains = {c["node"]: c for c in report["chains"]}
    assert chains["branch-a"]["entries"] >= 2 and chains["branch-a"]["signatures_verified"] >= 1
    accessed = d.call(d.hq, "GET", f"/audit/customers/{d.customer}")["entries"]
    mine = [(e["node"], e["action"], e["purpose"]) for e in accessed]
    assert ("branch-a", "create", None) in mine and ("branch-a", "read", "inbound_call") in mine
    read = next(e for e in accessed if e["action"] == "read")
    assert read["actor"] == "operator" and set(read["shown"]) == {"name", "phone", "email"}
    assert d.alerts() == set()
    done = d.call(d.hq, "GET", "/audit/actors/operator", params={"limit": 1000})["entries"]
    assert {"create", "read"} <= {e["action"] for e in done if e["node"] == "branch-a"}


def test_verify_at_the_node_passes_before_anything_is_touched(deployment: Deployment) -> None:
    d = deployment
    done = d.verify_cli(d.branch, d.workdir / "branch-a.toml")  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stderr
    assert "branch-a: entries 1.." in done.stdout and ": ok" in done.stdout


def test_an_edit_to_a_shipped_entry_is_an_alert_at_hq_after_the_next_sync(deployment: Deployment) -> None:
    d = deployment
    d.tamper("UPDATE audit_entries SET actor = 'nobody' WHERE node = 'branch-a' AND seq = 2")
    d.sync()
    assert ("branch-a", 2, "self_check") in d.alerts()
    status = d.call(d.hq, "GET", "/status")
    assert status["audit"]["alerts"] >= 1 and any("branch-a: entry 2" in a for a in status["audit"]["latest_alerts"])
    done = d.verify_cli(d.branch, d.workdir / "branch-a.toml")  # type: ignore[attr-defined]
    assert done.returncode == 1
    assert "first bad entry branch-a: entry 2 edited" in done.stderr


def test_an_entry_removed_before_shipping_is_a_gap_at_hq(deployment: Deployment) -> None:
    d = deployment
    for _ in range(3):
        d.call(d.branch, "GET", f"/customers/{d.customer}")
    removed = d.own_seq() - 1
    d.tamper(f"DELETE FROM audit_entries WHERE node = 'branch-a' AND seq = {removed}")
    d.sync()
    alerts = d.alerts()
    assert ("branch-a", removed, "gap") in alerts, alerts  # found by HQ in what arrived
    report = d.call(d.hq, "GET", "/audit/verify", params={"chain": "branch-a"})
    # HQ's copy of entry 2 is the one shipped before the edit: its first break is the gap
    assert report["ok"] is False and report["first_break"].startswith(f"branch-a: entry {removed} gap")


def test_a_batch_carrying_another_nodes_entries_is_refused(deployment: Deployment, aio: LoopThread) -> None:
    import httpx
    import msgspec

    from server.transport import SYNC_MEDIA_TYPE
    from sync.audit import AuditBatch, AuditDraft, chain_entry, genesis

    entry = chain_entry("hq", 1, genesis("hq"), AuditDraft(at_ms=1, actor="x", action="read"))
    body = msgspec.msgpack.encode(AuditBatch(node="branch-a", entries=[entry]))
    response = httpx.post(f"{deployment.hq.url}/sync/audit", content=body,
                          headers={"content-type": SYNC_MEDIA_TYPE}, timeout=30)
    assert response.status_code == 403, response.text  # unsigned, from an enrolled node
    garbage = httpx.post(f"{deployment.hq.url}/sync/audit", content=b"\x93not a batch",
                         headers={"content-type": SYNC_MEDIA_TYPE}, timeout=30)
    assert garbage.status_code == 400 and "audit batch" in garbage.json()["detail"]
