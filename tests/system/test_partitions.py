"""Partitions and heals: HQ and three branches, each branch behind its own link.

A seeded random run of rounds. In each round some links are cut or healed, every
node edits a shared pool of customers through its HTTP API at the same time,
and every branch is asked to sync now: a branch with a working link syncs, one
cut off answers 503 ``link_down``. After the last round every link heals, the
branches sync twice, and all four nodes must hold the same digest and show the
same card for every customer. Then one branch is cut off once more, both sides
edit, the link heals, and the background replicators alone must converge.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.conftest import Cluster, ClusterFactory, ClusterNode, LoopThread, problem

pytestmark = pytest.mark.system

CUSTOMERS = 20
ROUNDS = 20
TAGS = ("vip", "callback", "complaint", "churn-risk", "5g", "family-plan")
SEGMENTS = ("gold", "silver", "bronze", "platinum", "smb")
CONVERGE_TIMEOUT_S = 20.0


class Written:
    """What the run wrote, for checks that digests alone cannot make."""

    def __init__(self) -> None:
        self.deleted: set[str] = set()
        self.tags_added: dict[str, set[str]] = defaultdict(set)
        self.tags_removed: dict[str, set[str]] = defaultdict(set)
        self.star_levels: dict[str, set[int]] = defaultdict(set)

    def note(self, row_id: str, body: dict[str, Any]) -> None:
        if body.get("deleted"):
            self.deleted.add(row_id)
        self.tags_added[row_id].update(body.get("tags_add", ()))
        self.tags_removed[row_id].update(body.get("tags_remove", ()))
        if "star_level" in body:
            self.star_levels[row_id].add(body["star_level"])


def random_patch(rng: random.Random, node: str, round_no: int) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for what in rng.sample(("star", "segment", "agent", "tags"), rng.randint(1, 3)):
        if what == "star":
            body["star_level"] = rng.randint(0, 7)
        elif what == "segment":
            body["segment"] = rng.choice(SEGMENTS)
        elif what == "agent":
            body["assigned_agent"] = f"agent-{node}-{round_no}-{rng.randint(0, 9)}"
        else:
            picked = rng.sample(TAGS, 2)
            if rng.random() < 0.6:
                body["tags_add"] = [picked[0]]
            if rng.random() < 0.5:
                body["tags_remove"] = [picked[1]]
    if rng.random() < 0.04:
        body["deleted"] = True
    return body


async def patch(node: ClusterNode, row_id: str, body: dict[str, Any], written: Written) -> None:
    response = await node.client.patch(f"/customers/{row_id}", json=body)
    assert response.status_code == 200, (node.name, body, response.status_code, response.text)
    card = response.json()
    assert card["row_id"] == row_id
    if body.get("deleted"):
        assert card["deleted"] is True  # a tombstone is never undone
    written.note(row_id, body)


async def sync_or_link_down(node: ClusterNode, link_up: bool, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    response = await node.client.post("/sync/now")
    if link_up:
        assert response.status_code == 200, (node.name, response.status_code, response.text)
        report = response.json()
        assert all(isinstance(report[k], int) and report[k] >= 0 for k in ("pushed", "pulled", "conflicts"))
    else:
        assert response.status_code == 503, (node.name, response.status_code, response.text)
        body = problem(response)
        assert body["code"] == "link_down"
        assert body["peer"] == "hq"
        assert "hq" in body["detail"]


async def digests(cluster: Cluster) -> dict[str, str]:
    return {n.name: (await n.digest())["digest"] for n in cluster.nodes}


async def cards(node: ClusterNode, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {row_id: await node.call("GET", f"/customers/{row_id}") for row_id in ids}


async def scenario(seed: int, make_cluster: ClusterFactory) -> None:
    rng = random.Random(seed)
    cluster = await make_cluster(3, proxied=True, sync_interval_s=0.5)
    hq, branches = cluster.hq, list(cluster.branches.values())
    written = Written()

    ids = []
    for i in range(CUSTOMERS):
        body = {"star_level": rng.randint(0, 7), "segment": rng.choice(SEGMENTS), "status": "active",
                "home_branch": branches[i % 3].name, "tags_add": [rng.choice(TAGS)]}
        card = await hq.call("POST", "/customers", json=body)
        ids.append(card["row_id"])
        written.note(card["row_id"], body)
    for b in branches:
        await b.sync_now()
    for b in branches:
        assert await cards(b, ids) == await cards(hq, ids), b.name

    link_up = {b.name: True for b in branches}
    cuts = heals = refused = 0
    for round_no in range(ROUNDS):
        for b in branches:
            if rng.random() < 0.4:
                proxy = cluster.proxies[b.name]
                if link_up[b.name]:
                    await proxy.cut()
                    cuts += 1
                else:
                    await proxy.heal()
                    heals += 1
                link_up[b.name] = proxy.is_up
        work = []
        for node in cluster.nodes:
            for row_id in rng.sample(ids, rng.randint(2, 5)):  # distinct rows per node and round
                work.append(patch(node, row_id, random_patch(rng, node.name, round_no), written))
        for b in branches:
            refused += not link_up[b.name]
            work.append(sync_or_link_down(b, link_up[b.name], rng.uniform(0, 0.05)))
        await asyncio.gather(*work)
    assert cuts and refused, "the seed never cut a link: pick another"

    # ---- heal everything, sync twice: one state everywhere
    for proxy in cluster.proxies.values():
        await proxy.heal()
    for _ in range(2):
        for b in branches:
            await b.sync_now()
    d = await digests(cluster)
    assert len(set(d.values())) == 1, d
    expected = await cards(hq, ids)
    for b in branches:
        assert await cards(b, ids) == expected, b.name
    for row_id, card in expected.items():
        assert card["deleted"] is (row_id in written.deleted), row_id
        added, removed = written.tags_added[row_id], written.tags_removed[row_id]
        assert set(card["tags"]) <= added, (row_id, card["tags"], added)
        assert added - removed <= set(card["tags"]), (row_id, card["tags"], added, removed)
        assert card["star_level"] in written.star_levels[row_id], row_id
    counts = {n.name: (await n.digest())["rows"]["customers"] for n in cluster.nodes}
    assert set(counts.values()) == {CUSTOMERS}, counts

    # ---- the background replicators alone converge after a heal
    cut_off = rng.choice(branches)
    other = next(b for b in branches if b is not cut_off)
    a, b_row, c_row = rng.sample(ids, 3)
    await cluster.proxies[cut_off.name].cut()
    await patch(hq, a, {"segment": "after-heal-hq", "tags_add": ["bg-hq"]}, written)
    await patch(cut_off, b_row, {"segment": "after-heal-cut", "tags_add": ["bg-cut"]}, written)
    await patch(other, c_row, {"assigned_agent": "after-heal-other"}, written)
    await asyncio.sleep(1.0)  # rounds of every replicator: the cut-off one cannot have HQ's edit
    assert (await cut_off.call("GET", f"/customers/{a}"))["segment"] != "after-heal-hq"
    assert (await hq.call("GET", f"/customers/{b_row}"))["segment"] != "after-heal-cut"
    await cluster.proxies[cut_off.name].heal()
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        d = await digests(cluster)
        if len(set(d.values())) == 1:
            break
        assert time.monotonic() < deadline, f"no convergence {CONVERGE_TIMEOUT_S} s after healing: {d}"
        await asyncio.sleep(0.2)
    for node in cluster.nodes:
        got = await cards(node, [a, b_row, c_row])
        assert got[a]["segment"] == "after-heal-hq" and "bg-hq" in got[a]["tags"], node.name
        assert got[b_row]["segment"] == "after-heal-cut" and "bg-cut" in got[b_row]["tags"], node.name
        assert got[c_row]["assigned_agent"] == "after-heal-other", node.name

    for node in cluster.nodes:
        assert "Traceback" not in node.log_text(), f"{node.name} logged a traceback; see {node.log_path}"


@pytest.mark.parametrize("seed", [7, 2024, 90210])
def test_random_partitions_converge(seed: int, make_cluster: ClusterFactory, aio: LoopThread) -> None:
    aio.run(scenario(seed, make_cluster), timeout=120)
