"""Concurrent requests on one node: a node serves its operators, its background
replicator and the nodes below it at the same time, so overlapping writes and
reads must each succeed and see what was written."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ClusterFactory, LoopThread

pytestmark = pytest.mark.system


def test_overlapping_writes_and_reads(make_cluster: ClusterFactory, aio: LoopThread) -> None:
    async def scenario() -> None:
        cluster = await make_cluster(0)
        hq = cluster.hq
        writes = [hq.client.post("/customers", json={"star_level": i % 8, "segment": f"seg-{i}"}) for i in range(40)]
        reads = [hq.client.get("/status/digest") for _ in range(10)]
        responses = await asyncio.gather(*writes, *reads)
        failed = [(r.request.method, r.request.url.path, r.status_code, r.text[:120])
                  for r in responses if r.status_code >= 400]
        assert not failed, f"{len(failed)} of {len(responses)} overlapping requests failed: {failed[:3]}"
        cards = [r.json() for r in responses[:40]]
        assert [c["segment"] for c in cards] == [f"seg-{i}" for i in range(40)]
        assert len({c["row_id"] for c in cards}) == 40
        assert (await hq.digest())["rows"]["customers"] == 40

    aio.run(scenario(), timeout=60)


def test_branches_pushing_at_the_same_time(make_cluster: ClusterFactory, aio: LoopThread) -> None:
    async def scenario() -> None:
        # a long interval: only the syncs asked for below run
        cluster = await make_cluster(3, sync_interval_s=3600)
        branches = list(cluster.branches.values())
        for b in branches:
            for i in range(30):
                await b.call("POST", "/customers", json={"star_level": i % 8, "segment": b.name})
        responses = await asyncio.gather(*(b.client.post("/sync/now") for b in branches))
        failed = [(b.name, r.status_code, r.text[:200]) for b, r in zip(branches, responses) if r.status_code != 200]
        assert not failed, failed
        # two fields each, and the home branch a site sets on the customers it creates
        assert sum(r.json()["pushed"] for r in responses) == 3 * 30 * 3
        for b in branches:
            await b.sync_now()
        digests = {n.name: (await n.digest())["digest"] for n in cluster.nodes}
        assert len(set(digests.values())) == 1, digests
        assert (await cluster.hq.digest())["rows"]["customers"] == 90

    aio.run(scenario(), timeout=90)
