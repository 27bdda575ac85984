"""kill -9 during sync: a node that restarts after a SIGKILL at any point of an
apply has lost no change it had acknowledged, and a cut pull resumes.

1. HQ is a real process; branch-1 is a store in this process whose replicator
   pushes ~100,000 field states to HQ over HTTP. HQ is killed with SIGKILL at
   random moments of the push (several rounds, different batch sizes, new
   local work between rounds). After each kill, before HQ restarts: its
   database passes ``PRAGMA integrity_check``; every field state that branch-1
   records as acknowledged (its push cursor) is at HQ with the same value,
   stamp and origin; and HQ holds a batch exactly when its own cursor covers it
   (no half-stored batch). HQ then restarts on the same files and the push goes
   on; at the end both digests are equal.
2. branch-2 is a real process pulling all of that from HQ; it is killed with
   SIGKILL in the middle of the pull. Its database is intact, its pull cursor
   stands past the first page, and after a restart the pull resumes from that
   cursor: it fetches exactly the states it had not stored, and converges.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from server.routes.health import SCOPED
from server.transport import HttpTransport
from sync.edits import Edit
from sync.errors import LinkDownError
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.schema import COLLECTIONS
from sync.replicator import Replicator, SyncReport
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.conftest import Cluster, ClusterFactory, LoopThread

#: the collections of the work data; key records and users are scoped, so HQ digests them per peer
WORK = [c for c in COLLECTIONS if c not in SCOPED]

pytestmark = pytest.mark.system

CUSTOMERS = 20_000
FIELDS_PER_CUSTOMER = 5
KILL_ROUNDS = 6
PULL_PAGE = 2_000

#: (row seq, {field: [value, hlc, origin, field seq, source]}) per customer row
States = dict[str, tuple[int, dict[str, list[Any]]]]


def read_states(db: Path) -> States:
    """Every customer row's field states, straight from the file (stdlib sqlite3)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT row_id, _seq, _state FROM customers").fetchall()
    finally:
        con.close()
    return {row_id: (seq, msgspec.msgpack.decode(state)) for row_id, seq, state in rows}


def integrity(db: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


def link_row(db: Path, peer: str) -> dict[str, Any]:
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM links WHERE peer = ?", (peer,)).fetchone()
        return {} if row is None else dict(row)
    finally:
        con.close()


def acknowledged(branch: States, push_since: int, push_cursor: int) -> dict[tuple[str, str], tuple[Any, ...]]:
    """The states a push cursor says the upstream holds: every state numbered up to
    ``push_since``, and every state of the rows numbered up to ``push_cursor``."""
    out = {}
    for row_id, (row_seq, doc) in branch.items():
        for name, (value, hlc, origin, field_seq, _src) in doc.items():
            if row_seq <= push_cursor or field_seq <= push_since:
                out[(row_id, name)] = (value, hlc, origin)
    return out


def missing_at(hq: States, acked: dict[tuple[str, str], tuple[Any, ...]]) -> list[tuple[str, str]]:
    bad = []
    for (row_id, name), state in acked.items():
        entry = hq.get(row_id, (0, {}))[1].get(name)
        if entry is None or tuple(entry[:3]) != state:
            bad.append((row_id, name))
    return bad


def push_cursor(db: Path) -> int:
    return int(link_row(db, "hq").get("push_cursor", 0))


def count_states(states: States) -> int:
    return sum(len(doc) for _, doc in states.values())


async def seed_branch(store: SqliteStore, rng: random.Random) -> list[str]:
    ids = []
    for chunk in range(CUSTOMERS // 1000):
        edits = []
        for i in range(1000):
            row = new_ulid(wall_clock_ms(), rng.randbytes(10))
            ids.append(row)
            edits += [
                Edit("customers", row, "star_level", value=rng.randint(0, 7)),
                Edit("customers", row, "segment", value=f"seg-{rng.randint(0, 12)}"),
                Edit("customers", row, "assigned_agent", value=f"agent-{chunk}-{i % 50}"),
                Edit("customers", row, "arpu_fen", value=rng.randint(0, 100_000)),
                Edit("customers", row, "tags", "add", "imported"),
            ]
        await store.write_local(edits)
    return ids


async def sync_to_end(replicator: Replicator) -> SyncReport:
    for attempt in range(3):  # the first request may meet a connection of a killed HQ
        try:
            return await replicator.sync_once()
        except LinkDownError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def rewrite_some(store: SqliteStore, ids: list[str], rng: random.Random, label: str) -> list[str]:
    """Local work on existing rows: they get new numbers, some fields keep old ones."""
    edits = []
    rows = rng.sample(ids, 6_000)
    for row in rows:
        edits += [Edit("customers", row, "star_level", value=rng.randint(0, 7)),
                  Edit("customers", row, "tags", "add", label)]
    await store.write_local(edits)
    return rows


async def hq_killed_mid_push(cluster: Cluster, tmp_path: Path, rng: random.Random) -> None:
    hq = cluster.hq
    store = await SqliteStore.create(
        tmp_path / "branch-1.db", node_id="branch-1", role="branch", clock=Clock(wall_clock_ms, 60_000)
    )
    branch_db = Path(store.path)
    transport = HttpTransport(hq.url, peer="hq", timeout_s=20)
    try:
        ids = await seed_branch(store, rng)
        replicator = Replicator(store, transport, upstream="hq")
        mid_push_kills = partial_acks = later_run_checks = 0
        rewritten: set[str] = set()
        for round_no in range(KILL_ROUNDS):
            if round_no == KILL_ROUNDS // 2:
                await sync_to_end(replicator)  # one run completes: later runs start from since > 0
            if round_no > 0:
                rewritten.update(await rewrite_some(store, ids, rng, f"round-{round_no}"))
            # big batches first (long applies), then smaller ones (many acknowledgements)
            replicator.push_limit = 20_000 if round_no == 0 else rng.choice((500, 1_000, 2_000))
            link = await store.link("hq")
            start = link.push_cursor if link is not None else 0
            target = start + rng.uniform(0.1, 0.7) * (await store.high_seq() - start)
            push = asyncio.create_task(replicator.sync_once())
            if round_no == 0:
                await asyncio.sleep(rng.uniform(0.05, 0.5))  # in or around the first big batches
            else:  # once the push is some way in, at a random moment of a batch
                while not push.done() and await asyncio.to_thread(push_cursor, branch_db) < target:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(rng.uniform(0, 0.06))
            still_pushing = not push.done()
            hq.kill()
            try:
                await push
            except LinkDownError:
                assert still_pushing
            mid_push_kills += still_pushing

            # HQ is down: check its file before anything opens it again
            assert await asyncio.to_thread(integrity, hq.db_path) == [("ok",)]
            link = await store.link("hq")
            assert link is not None
            branch_states = await asyncio.to_thread(read_states, branch_db)
            hq_states = await asyncio.to_thread(read_states, hq.db_path)
            acked = acknowledged(branch_states, link.push_since, link.push_cursor)
            missing = missing_at(hq_states, acked)
            assert not missing, (
                f"round {round_no}: {len(missing)} of {len(acked)} acknowledged states missing or different "
                f"at HQ after SIGKILL during the push (push cursor {link.push_since}/{link.push_cursor}), "
                f"e.g. {missing[:3]}"
            )
            hq_link = await asyncio.to_thread(link_row, hq.db_path, "branch-1")
            hq_acked = hq_link.get("acked_through", 0)
            assert hq_acked >= link.push_cursor
            # a batch and its cursor are stored together or not at all: HQ holds each
            # row written once at the branch iff HQ's own cursor says it acknowledged it
            once = {row_id: seq for row_id, (seq, _) in branch_states.items() if row_id not in rewritten}
            held = {row_id for row_id in once if row_id in hq_states}
            assert held == {row_id for row_id, seq in once.items() if seq <= hq_acked}, (
                f"round {round_no}: HQ holds rows its cursor ({hq_acked}) does not cover, or lacks some it does"
            )
            if still_pushing and 0 < len(acked) < count_states(branch_states):
                partial_acks += 1
                later_run_checks += link.push_since > 0
            await hq.restart()
        assert mid_push_kills >= 4, f"only {mid_push_kills} kills landed during a push"
        assert partial_acks >= 3, f"only {partial_acks} kills landed between acknowledged batches"
        assert later_run_checks >= 1, "no kill landed in a run after the first"

        await sync_to_end(replicator)
        hq_digest = await hq.digest(peer="branch-1")
        assert hq_digest["digest"] == await store.digest(WORK)  # the work data
        assert hq_digest["keys_digest"] == await store.digest(["keys"])  # the keys HQ sent this branch
        assert hq_digest["rows"]["customers"] == CUSTOMERS
    finally:
        await transport.aclose()
        await store.close()


async def branch_killed_mid_pull(cluster: Cluster, rng: random.Random) -> None:
    hq = cluster.hq
    branch = cluster.branch("branch-2", extra_args=("--no-replicate",))
    await cluster.start_branches("branch-2")
    hq_states = await asyncio.to_thread(read_states, hq.db_path)
    total = count_states(hq_states)
    assert total >= CUSTOMERS * FIELDS_PER_CUSTOMER

    pull = asyncio.create_task(branch.client.post("/sync/now"))
    deadline = time.monotonic() + 30
    while (await asyncio.to_thread(link_row, branch.db_path, "hq")).get("pull_cursor", 0) == 0:
        assert time.monotonic() < deadline, "branch-2 stored no page within 30 s"
        assert not pull.done(), f"the pull ended before its first page was seen: {pull.result().text}"
        await asyncio.sleep(0.01)
    await asyncio.sleep(rng.uniform(0, 0.3))
    branch.kill()
    try:
        response = await pull
    except Exception:  # noqa: BLE001 - the connection dies with the process
        response = None
    assert response is None, f"the pull answered before the kill: {response.status_code} {response.text[:200]}"

    assert await asyncio.to_thread(integrity, branch.db_path) == [("ok",)]
    link = await asyncio.to_thread(link_row, branch.db_path, "hq")
    assert link["pull_cursor"] > 0
    assert link["pull_since"] == 0, "the kill came after the whole run was stored"
    stored = count_states(await asyncio.to_thread(read_states, branch.db_path))
    assert 0 < stored < total

    await branch.restart()
    report = await branch.sync_now()
    assert report["pulled"] < total
    assert report["pulled"] == total - stored, (
        f"resumed pull fetched {report['pulled']}, expected the {total - stored} states not stored before the kill"
    )
    assert (await branch.digest())["digest"] == (await hq.digest())["digest"]


def test_kill9_during_push_and_pull(make_cluster: ClusterFactory, aio: LoopThread, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("OUTPOST_TEST_SEED", "9")))

    async def scenario() -> None:
        cluster = await make_cluster(0, sync={"page_limit": PULL_PAGE})
        await hq_killed_mid_push(cluster, tmp_path, rng)
        await branch_killed_mid_pull(cluster, rng)

    aio.run(scenario(), timeout=150)
