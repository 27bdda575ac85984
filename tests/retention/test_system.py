"""Retention on running nodes: HQ and branch-a as `outpost serve` processes on
loopback (the repository's sites and policy), `outpost retention run hq` as a
subprocess.

Results recorded four years ago are written into HQ's file (a second process
on the same store, as `outpost sync` is), reach branch-a by sync, are purged at
HQ by the CLI, and are gone from branch-a (tombstoned, notes shredded, no byte
of them left in either node's files) after its next sync. A result recorded
yesterday and a task closed today stay. The purge is an access event at HQ.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.cli import ROOT
from server.node_process import NodeProcess
from sync.edits import Edit
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.conftest import LoopThread, enrolled_nodes
from tests.retention.conftest import DAY_MS

pytestmark = pytest.mark.system

#: what the test's sealed notes hold: to search the nodes' files for
MARKER = b"RETENTION-TEST-NOTES-"


def query(node: NodeProcess, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{node.data_dir / f'{node.site}.db'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def result_rows(node: NodeProcess) -> dict[str, tuple[int, bool]]:
    """row id -> (deleted, holds notes)."""
    return {r: (d, n) for r, d, n in query(node, "SELECT row_id, deleted, notes IS NOT NULL FROM results")}


def files_holding(node: NodeProcess, needle: bytes) -> list[str]:
    out = []
    for suffix in ("", "-wal", "-journal"):
        path = node.data_dir / f"{node.site}.db{suffix}"
        if path.exists() and needle in path.read_bytes():
            out.append(path.name)
    return out


class Rows:
    def __init__(self) -> None:
        self.old: list[str] = []
        self.fresh = ""
        self.closed_task = ""


async def seed(hq: NodeProcess, rows: Rows) -> None:
    """Write the results and the task at HQ, through its store file."""
    store = await SqliteStore.open(hq.data_dir / "hq.db", node_id="hq", clock=Clock(wall_clock_ms, 60_000))
    now = wall_clock_ms()

    def row_id() -> str:
        return new_ulid(wall_clock_ms(), os.urandom(10))

    def result(rid: str, recorded_at_ms: int, i: int) -> list[Edit]:
        values = {"outcome": "callback_requested", "site": "branch-a", "recorded_at_ms": recorded_at_ms,
                  "notes": b"\x01" + MARKER + str(i).encode() + os.urandom(16)}
        return [Edit("results", rid, f, "set", v) for f, v in values.items()]

    try:
        rows.old = [row_id() for _ in range(3)]
        rows.fresh, rows.closed_task = row_id(), row_id()
        edits = [e for i, r in enumerate(rows.old) for e in result(r, now - 4 * 365 * DAY_MS, i)]
        edits += result(rows.fresh, now - DAY_MS, 9)
        edits += [Edit("tasks", rows.closed_task, "site", "set", "branch-a"),
                  Edit("tasks", rows.closed_task, "status", "set", "done")]
        await store.write_local(edits)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[tuple[NodeProcess, NodeProcess, Rows]]:
    rows = Rows()

    async def prepare(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        await seed(hq, rows)
        for _ in range(2):
            await below["branch-a"].sync_now()

    with enrolled_nodes(aio, tmp_path_factory.mktemp("retention"), ("branch-a",), prepare) as (hq, below):
        yield hq, below["branch-a"], rows


def outpost(hq: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**hq.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_the_route_refuses_a_caller_without_the_operator_token(nodes: tuple[NodeProcess, NodeProcess, Rows]) -> None:
    hq, _, rows = nodes
    for headers in ({}, {"authorization": "Bearer wrong"}):
        response = httpx.post(f"{hq.url}/retention/run", headers=headers, timeout=30)
        assert response.status_code == 401
    assert result_rows(hq)[rows.old[0]] == (0, True)


def test_a_purge_at_hq_reaches_the_branch_on_its_next_sync(nodes: tuple[NodeProcess, NodeProcess, Rows],
                                                            aio: LoopThread) -> None:
    hq, branch, rows = nodes
    held = result_rows(branch)
    assert {r: held.get(r) for r in (*rows.old, rows.fresh)} == dict.fromkeys((*rows.old, rows.fresh), (0, True))

    done = outpost(hq, "retention", "run", "hq", "--port", str(hq.port), "--data-dir", str(hq.data_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("hq: purged 3 results recorded more than 1095 days ago and 0 tasks closed "
                                   "more than 365 days ago")

    aio.run(branch.sync_now(), timeout=60)
    for node in (hq, branch):
        now_held = result_rows(node)
        assert [now_held[r] for r in rows.old] == [(1, False)] * 3, node.site
        assert now_held[rows.fresh] == (0, True), node.site
        assert query(node, "SELECT deleted, status FROM tasks WHERE row_id = ?", rows.closed_task) == [(0, "done")]

    # the shredded notes leave the files too (the WAL is checkpointed after the purge, and after the sync)
    deadline = time.monotonic() + 20
    while (left := {n.site: files_holding(n, MARKER + b"0") for n in (hq, branch)}) != {"hq": [], "branch-a": []}:
        assert time.monotonic() < deadline, f"purged notes still in {left}"
        aio.run(asyncio.sleep(0.5))
    assert files_holding(hq, MARKER + b"9"), "the fresh result's notes are still there"

    events = query(hq, "SELECT actor, collection, fields, purpose, counts FROM audit_entries "
                       "WHERE node = 'hq' AND action = 'retention_purge' ORDER BY seq")
    assert [(a, c, p, n) for a, c, _, p, n in events] == [("operator", "results", "requested", '{"rows": 3}')]


def test_the_cli_refuses_a_node_other_than_hq(nodes: tuple[NodeProcess, NodeProcess, Rows]) -> None:
    hq, _, _ = nodes
    refused = outpost(hq, "retention", "run", "branch-a")
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("outpost: ") and "only HQ purges by retention" in refused.stderr
    assert "Traceback" not in refused.stderr
