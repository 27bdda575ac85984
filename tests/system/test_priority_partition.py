"""Priority changes after a long partition, with real node processes: HQ and a
branch behind a link that carries one page and drops again.

While the link is down both sides write thousands of ordinary changes (new
customers) and, among them, a do-not-call and a marketing withdrawal. Then the
link comes back for exactly one page in one direction and is cut again:

* push: the branch's first batch reaches HQ, then the link drops: HQ holds the
  branch's do-not-call and withdrawal, not yet the customers created after them;
* pull: the branch pushes the rest, gets HQ's first page, then the link drops:
  it holds HQ's do-not-call and withdrawal, not yet HQ's customers created last.

When the link heals for good the two converge.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from server.link_proxy import LinkProxy
from tests.conftest import ClusterFactory, ClusterNode, LoopThread, problem

pytestmark = pytest.mark.system

#: new customers each side writes while apart (about 4 changes each), and per page
ORDINARY = 700
PAGE = 200


class OnePageLink(LinkProxy):
    """A link that carries ``allow[route]`` requests of ``/sync/{route}``
    (None: any number) and cuts itself at the next one, before it reaches HQ."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.allow: dict[str, int | None] = {"push": None, "pull": None}
        self.carried = {"push": 0, "pull": 0}

    def carry(self, **allow: int | None) -> None:
        self.allow = {"push": None, "pull": None, **allow}
        self.carried = {"push": 0, "pull": 0}

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65_536):
                for route in ("push", "pull"):
                    if data.startswith(f"POST /sync/{route} ".encode()):
                        left = self.allow[route]
                        if left is not None and self.carried[route] >= left:
                            await self.cut()
                            return
                        self.carried[route] += 1
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()


async def create(node: ClusterNode, n: int, tag: str) -> list[str]:
    """``n`` new customers at ``node``, eight requests at a time."""
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        async with gate:
            card = await node.call("POST", "/customers", json={
                "segment": f"{tag}-{i % 7}", "star_level": i % 8, "arpu_fen": i, "tags_add": [tag]})
            return str(card["row_id"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def suppress_and_withdraw(node: ClusterNode, dnc: str, withdrawn: str) -> None:
    await node.call("PATCH", f"/customers/{dnc}", json={"suppression_add": ["do_not_call"]})
    await node.call("POST", f"/customers/{withdrawn}/consents",
                    json={"purpose": "marketing", "granted": False, "channel": "phone"})


async def assert_arrived(node: ClusterNode, dnc: str, withdrawn: str) -> None:
    card = await node.call("GET", f"/customers/{dnc}")
    assert "do_not_call" in card["suppression"], (node.name, card["suppression"])
    history = await node.call("GET", f"/customers/{withdrawn}/consents")
    assert [(r["purpose"], r["granted"]) for r in history["records"]] == [("marketing", False)], node.name
    assert "refused_marketing" in history["suppression"], node.name


async def missing(node: ClusterNode, ids: list[str]) -> int:
    found = await asyncio.gather(*(node.client.get(f"/customers/{row_id}") for row_id in ids))
    return sum(response.status_code == 404 for response in found)


async def round_cut_short(branch: ClusterNode) -> None:
    response = await branch.client.post("/sync/now")
    assert response.status_code == 503, (response.status_code, response.text)
    assert problem(response)["code"] == "link_down"


async def scenario(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(("branch-1",), proxied=True, sync={"page_limit": PAGE, "push_limit": PAGE},
                                 sync_interval_s=3600.0, start=False)
    hq = cluster.hq
    link = cluster.proxies["branch-1"] = OnePageLink("127.0.0.1", hq.port)
    await cluster.start_branches()
    branch = cluster.branches["branch-1"]
    x, y = await create(hq, 2, "hq-seed")
    z, w = await create(branch, 2, "branch-seed")
    await branch.sync_now()
    await branch.sync_now()

    # ---- a long partition: thousands of ordinary changes, a do-not-call and a withdrawal amid them
    await link.cut()
    hq_early, branch_early = await asyncio.gather(create(hq, ORDINARY // 2, "hq"), create(branch, ORDINARY // 2, "br"))
    await asyncio.gather(suppress_and_withdraw(hq, x, y), suppress_and_withdraw(branch, z, w))
    hq_late, branch_late = await asyncio.gather(create(hq, ORDINARY // 2, "hq2"), create(branch, ORDINARY // 2, "br2"))

    # ---- push: one batch, then the link drops
    link.carry(push=1, pull=0)
    await link.heal()
    await round_cut_short(branch)
    assert link.carried["push"] == 1 and not link.is_up
    await assert_arrived(hq, z, w)
    assert await missing(hq, branch_late) == len(branch_late), "the customers made last have not arrived"
    assert await missing(hq, branch_early) > len(branch_early) // 2

    # ---- pull: the pushes go through, one page comes down, then the link drops
    link.carry(pull=1)
    await link.heal()
    await round_cut_short(branch)
    assert link.carried["pull"] == 1 and link.carried["push"] > ORDINARY * 3 // PAGE
    await assert_arrived(branch, x, y)
    assert await missing(branch, hq_late) == len(hq_late), "HQ's customers made last have not arrived"
    assert await missing(hq, branch_late) == 0

    # ---- healed for good: one state
    link.carry()
    await link.heal()
    await branch.sync_now()
    await branch.sync_now()
    digests: dict[str, Any] = {n.name: (await n.digest())["digest"] for n in cluster.nodes}
    assert len(set(digests.values())) == 1, digests
    assert await missing(branch, hq_late) == 0
    for node in cluster.nodes:
        assert "Traceback" not in node.log_text(), f"{node.name} logged a traceback; see {node.log_path}"


def test_suppression_and_withdrawal_cross_in_the_first_page_after_a_partition(
    make_cluster: ClusterFactory, aio: LoopThread
) -> None:
    aio.run(scenario(make_cluster), timeout=300)
