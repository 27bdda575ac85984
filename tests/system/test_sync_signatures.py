"""Sync requests prove which node sends them (server/sync_auth.py).

HQ, branch-a and branch-b run as `outpost serve` processes and have enrolled
their keys. Requests are built here with the nodes' own keystores: a push signed
by branch-b that claims to be branch-a, an unsigned one, a stale one and one with
a body altered after signing are refused with a 403 problem and store nothing; a
correctly signed one is taken.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crypto.keystore import open_keystore
from server.node_process import NodeProcess
from server.sync_auth import HEADER, sign
from server.transport import SYNC_MEDIA_TYPE
from sync.changes import Change, encode_frame
from sync.protocol import next_pull, next_push
from sync.store.sqlite import wall_clock_ms
from tests.conftest import LoopThread, enrolled_nodes, problem

pytestmark = pytest.mark.system

ROW = "01M84BWR790000000000000042"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[dict[str, NodeProcess]]:
    async def first_sync(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        for node in below.values():
            await node.sync_now()  # signed by the node itself: taken

    with enrolled_nodes(aio, tmp_path_factory.mktemp("signatures"), ("branch-a", "branch-b"), first_sync) as (hq, below):
        yield {"hq": hq, **below}


def identity(node: NodeProcess) -> Any:
    return open_keystore(node.data_dir / f"{node.site}.keystore", node.passphrase).identity


def push_claiming(node: str, store_id: str) -> bytes:
    change = Change("customers", ROW, "segment", b"\xa6forged", wall_clock_ms() << 16, node)  # type: ignore[arg-type]
    return encode_frame(next_push(node, store_id=store_id, since=0, cursor=0, changes=[change], to_seq=1, more=False))


def post(hq: NodeProcess, route: str, body: bytes, header: str | None) -> httpx.Response:
    headers = {"content-type": SYNC_MEDIA_TYPE, **({HEADER: header} if header else {})}
    return httpx.post(f"{hq.url}/sync/{route}", content=body, headers=headers, timeout=30)


def customer_at_hq(hq: NodeProcess, aio: LoopThread) -> int:
    response = aio.run(hq.client.get(f"/customers/{ROW}"), timeout=30)
    return response.status_code


def refused(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 403, response.text
    body = problem(response)
    assert body["code"] == "bad_signature" and body["node"] == "branch-a" and reason in body["reason"], body


def test_a_push_signed_by_another_node_is_refused(nodes: dict[str, NodeProcess], aio: LoopThread) -> None:
    body = push_claiming("branch-a", "01M84BWR79STOREAAAAAAAAAAA")
    header = sign(identity(nodes["branch-b"]), "push", body, wall_clock_ms())
    refused(post(nodes["hq"], "push", body, header), "signed by another node")
    forged = header.replace("branch-b.", "branch-a.", 1)  # claims branch-a, signed with branch-b's key
    refused(post(nodes["hq"], "push", body, forged), "does not verify")
    assert customer_at_hq(nodes["hq"], aio) == 404, "nothing stored"
    conn = sqlite3.connect(f"file:{nodes['hq'].data_dir / 'hq.db'}?mode=ro", uri=True, timeout=10)
    try:
        events = conn.execute("SELECT actor, action, status, reason FROM audit_entries WHERE collection = 'sync'")
        assert ("branch-a", "sync_push", 403, "bad_signature") in events.fetchall(), "each refusal is recorded"
    finally:
        conn.close()


def test_unsigned_stale_or_altered_requests_from_an_enrolled_node_are_refused(
        nodes: dict[str, NodeProcess], aio: LoopThread) -> None:
    hq, me = nodes["hq"], identity(nodes["branch-a"])
    body = push_claiming("branch-a", "01M84BWR79STOREAAAAAAAAAAA")
    refused(post(hq, "push", body, None), "unsigned")
    refused(post(hq, "push", body, sign(me, "push", body, wall_clock_ms() - 3_600_000)), "clock drift")
    other = push_claiming("branch-a", "01M84BWR79STOREBBBBBBBBBBB")  # what was signed is not what arrives
    refused(post(hq, "push", body, sign(me, "push", other, wall_clock_ms())), "does not verify")
    refused(post(hq, "pull", body, sign(me, "push", body, wall_clock_ms())), "does not verify")  # another route
    pull = encode_frame(next_pull("branch-a", store_id="x", peer_store_id=None, since=0, cursor=0, limit=10))
    refused(post(hq, "pull", pull, None), "unsigned")
    assert customer_at_hq(hq, aio) == 404


def test_a_correctly_signed_request_is_taken(nodes: dict[str, NodeProcess]) -> None:
    me = identity(nodes["branch-a"])
    pull = encode_frame(next_pull("branch-a", store_id="01M84BWR79STOREAAAAAAAAAAA", peer_store_id=None,
                                  since=0, cursor=0, limit=10))
    response = post(nodes["hq"], "pull", pull, sign(me, "pull", pull, wall_clock_ms()))
    assert response.status_code == 200, response.text
