"""Bad input against one real HQ process: refused cleanly, and nothing changes.

Raw bodies go to ``/sync/push`` and ``/sync/pull``, and bad writes to the
customers API. Every refusal must be a 4xx ``application/problem+json`` with a
``code`` and a ``detail`` that says what is wrong, without echoing the submitted
value (values may be personal information), without a traceback, and without
changing what HQ holds (its digest, and its record of what it acknowledged).
"""

from __future__ import annotations

import os
import random
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from sync.changes import Change, Frame, PullRequest, PushBatch, encode_frame
from sync.hlc import pack
from sync.ids import new_ulid
from sync.merge import encode_set, encode_value, set_add
from sync.schema import SCHEMA_VERSION
from sync.store.sqlite import wall_clock_ms
from tests.conftest import MOBILE, Cluster, ClusterNode, LoopThread, problem

pytestmark = pytest.mark.system

MAX_BODY_BYTES = 4 * 1024 * 1024
#: HQ accepts at most max(push_limit, 20_000) changes in one push (server/node.py)
MAX_PUSH_CHANGES = 20_000
SYNC = {"content-type": "application/vnd.outpost.sync+msgpack"}
BRANCH = "branch-1"
#: the store id branch-1 pushes from in this module
BRANCH_STORE = new_ulid(wall_clock_ms(), b"branch-one")
#: bad values: none of them may come back in a response
SECRET_TEXT = "seven-SECRET-4711"
SECRET_ROW = "not-a-row-SECRET-0815"


class Hq:
    """The HQ process of this module and a plain (sync) client for raw requests."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.http = httpx.Client(base_url=node.url, timeout=30)
        self.auth = {"authorization": f"Bearer {node.token}"}

    def digest(self) -> str:
        response = self.http.get("/status/digest", headers=self.auth)
        assert response.status_code == 200, response.text
        return str(response.json()["digest"])

    def link(self, peer: str = BRANCH) -> dict[str, Any]:
        response = self.http.get("/status", headers=self.auth)
        assert response.status_code == 200, response.text
        return next((ln for ln in response.json()["links"] if ln["peer"] == peer), {})

    def acked(self, peer: str) -> tuple[str | None, int, int]:
        """(peer store id, acked_since, acked_through) of HQ's link to ``peer``, read
        from its database (``GET /status`` does not show the peer's store id)."""
        con = sqlite3.connect(self.node.db_path)
        try:
            row = con.execute(
                "SELECT peer_store_id, acked_since, acked_through FROM links WHERE peer = ?", (peer,)
            ).fetchone()
        finally:
            con.close()
        return (None, 0, 0) if row is None else (row[0], int(row[1]), int(row[2]))

    def push(self, batch: PushBatch, **frame: Any) -> httpx.Response:
        return self.http.post("/sync/push", content=encode_frame(batch, **frame), headers=SYNC)

    def post_raw(self, route: str, body: bytes) -> httpx.Response:
        return self.http.post(f"/sync/{route}", content=body, headers=SYNC)


@pytest.fixture(scope="module")
def hq(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Hq]:
    cluster = Cluster(tmp_path_factory.mktemp("bad-input"), sync={"max_body_bytes": MAX_BODY_BYTES})
    client = None
    try:
        aio.run(cluster.start_hq(), timeout=60)
        client = Hq(cluster.hq)
        yield client
    finally:
        if client is not None:
            client.http.close()
        try:
            aio.run(cluster.close(), timeout=60)
        finally:
            cluster.kill_all()


# ---------------------------------------------------------------- building batches


def now_stamp(ahead_ms: int = 0) -> int:
    return pack(wall_clock_ms() + ahead_ms)


def new_row() -> str:
    return new_ulid(wall_clock_ms(), os.urandom(10))


def change(field: str = "star_level", value: Any = 5, *, row_id: str | None = None, origin: str = BRANCH,
           hlc: int | None = None, raw: bytes | None = None) -> Change:
    return Change(
        "customers", row_id or new_row(), field, msgspec.Raw(raw if raw is not None else encode_value(value)),
        now_stamp() if hlc is None else hlc, origin,
    )


def next_push(hq: Hq, changes: list[Change], *, node: str = BRANCH, store_id: str = BRANCH_STORE) -> PushBatch:
    """A push that continues exactly where HQ's cursor for ``node`` stands."""
    known_store, since, through = hq.acked(node)
    if known_store != store_id:
        since = through = 0  # HQ starts a store it has not seen from 0
    return PushBatch(node=node, store_id=store_id, since=since, from_seq=through, to_seq=through + len(changes),
                     changes=changes, more=False)


def refused(response: httpx.Response, status: int, code: str, *, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Assert a clean refusal and return its problem document."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = problem(response)
    assert body["code"] == code, body
    assert body.get("status") == status
    assert isinstance(body.get("detail"), str) and len(body["detail"]) > 10, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    for secret in secrets:
        assert secret not in response.text, f"the response echoes a submitted value: {response.text}"
    return body


def established(hq: Hq) -> None:
    """branch-1 has pushed from BRANCH_STORE at least once (so HQ knows its store)."""
    if hq.acked(BRANCH)[0] != BRANCH_STORE:
        response = hq.push(next_push(hq, [change()]))
        assert response.status_code == 200, response.text


@pytest.fixture
def unchanged(hq: Hq) -> Iterator[None]:
    """The test must leave HQ's data and its push cursor for branch-1 as they were
    (branch-1 has pushed once before, so HQ knows its store)."""
    established(hq)
    before, link_before, acked_before = hq.digest(), hq.link(), hq.acked(BRANCH)
    yield
    assert hq.digest() == before, "a refused request changed HQ's data"
    assert hq.link() == link_before, "a refused request moved HQ's cursor for branch-1"
    assert hq.acked(BRANCH) == acked_before


# ---------------------------------------------------------------- frames (both routes)

ROUTES = ("push", "pull")


def a_valid_frame(route: str, hq: Hq) -> bytes:
    if route == "pull":
        return encode_frame(PullRequest(node=BRANCH, limit=10))
    return encode_frame(next_push(hq, [change(value=3) for _ in range(40)]), compress=True)


@pytest.mark.parametrize("route", ROUTES)
def test_garbage_bytes(hq: Hq, unchanged: None, route: str) -> None:
    garbage = random.Random(route).randbytes(300)
    body = refused(hq.post_raw(route, garbage), 400, "malformed_batch")
    assert "Not a sync frame" in body["detail"]


@pytest.mark.parametrize("route", ROUTES)
def test_empty_body(hq: Hq, unchanged: None, route: str) -> None:
    refused(hq.post_raw(route, b""), 400, "malformed_batch")


@pytest.mark.parametrize("route", ROUTES)
def test_truncated_frame(hq: Hq, unchanged: None, route: str) -> None:
    frame = a_valid_frame(route, hq)
    body = refused(hq.post_raw(route, frame[: len(frame) // 2]), 400, "malformed_batch")
    assert "truncated" in body["detail"].lower() or "Not a sync frame" in body["detail"]


@pytest.mark.parametrize("route", ROUTES)
def test_truncated_zlib_body(hq: Hq, unchanged: None, route: str) -> None:
    message = (PullRequest(node=BRANCH, limit=10) if route == "pull"
               else next_push(hq, [change(value=3) for _ in range(40)]))
    compressed = zlib.compress(msgspec.msgpack.encode(message))
    frame = msgspec.msgpack.encode(Frame(1, SCHEMA_VERSION, "zlib", compressed[: len(compressed) - 8]))
    body = refused(hq.post_raw(route, frame), 400, "malformed_batch")
    assert "Compressed body" in body["detail"]
    assert body["where"] == "$[3]"


@pytest.mark.parametrize("route", ROUTES)
def test_not_zlib_at_all(hq: Hq, unchanged: None, route: str) -> None:
    frame = msgspec.msgpack.encode(Frame(1, SCHEMA_VERSION, "zlib", b"\x00definitely not deflate" * 4))
    refused(hq.post_raw(route, frame), 400, "malformed_batch")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("what", ["protocol", "schema"])
def test_future_version(hq: Hq, unchanged: None, route: str, what: str) -> None:
    body = msgspec.msgpack.encode(PullRequest(node=BRANCH)) if route == "pull" else b"\xc0"
    frame = Frame(99 if what == "protocol" else 1, 99 if what == "schema" else SCHEMA_VERSION, "none", body)
    problem_doc = refused(hq.post_raw(route, msgspec.msgpack.encode(frame)), 409, "version_mismatch")
    assert problem_doc["what"] == what
    assert problem_doc["theirs"] == 99
    assert problem_doc["behind"] == "self"  # HQ is the one that would need upgrading
    assert what in problem_doc["detail"]


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_codec(hq: Hq, unchanged: None, route: str) -> None:
    frame = msgspec.msgpack.encode([1, SCHEMA_VERSION, "brotli", b"xx"])
    body = refused(hq.post_raw(route, frame), 400, "malformed_batch")
    assert "brotli" not in body["detail"]  # an enum error does not echo the value


@pytest.mark.parametrize("route", ROUTES)
def test_zlib_bomb(hq: Hq, unchanged: None, route: str) -> None:
    bomb = zlib.compress(b"\x00" * (2 * MAX_BODY_BYTES), 9)
    assert len(bomb) < 64 * 1024
    frame = msgspec.msgpack.encode(Frame(1, SCHEMA_VERSION, "zlib", bomb))
    body = refused(hq.post_raw(route, frame), 413, "oversized_batch")
    assert body["limit"] == MAX_BODY_BYTES


def test_body_over_the_limit(hq: Hq, unchanged: None) -> None:
    response = hq.post_raw("push", b"\x00" * (MAX_BODY_BYTES + 1024))
    assert response.status_code == 413, response.status_code
    body = problem(response)
    assert body["code"] in ("too_large", "oversized_batch") and body["detail"]


def test_too_many_changes(hq: Hq, unchanged: None) -> None:
    row = new_row()
    stamp = now_stamp()
    changes = [change(row_id=row, hlc=stamp, value=1)] * (MAX_PUSH_CHANGES + 1)
    body = refused(hq.push(next_push(hq, changes)), 413, "oversized_batch")
    assert body["size"] == MAX_PUSH_CHANGES + 1
    assert body["limit"] == MAX_PUSH_CHANGES


def test_pull_with_a_bad_limit(hq: Hq, unchanged: None) -> None:
    body_bytes = msgspec.msgpack.encode({"kind": "pull", "node": BRANCH, "limit": 0})
    frame = msgspec.msgpack.encode(Frame(1, SCHEMA_VERSION, "none", body_bytes))
    body = refused(hq.post_raw("pull", frame), 400, "malformed_batch")
    assert body["where"] == "$.limit"


def test_wrong_message_on_a_route(hq: Hq, unchanged: None) -> None:
    body = refused(hq.post_raw("pull", encode_frame(next_push(hq, [change()]))), 400, "malformed_batch")
    assert "pull" in body["detail"]
    body = refused(hq.post_raw("push", encode_frame(PullRequest(node=BRANCH))), 400, "malformed_batch")
    assert "push" in body["detail"]


# ---------------------------------------------------------------- changes that break the schema


def test_wrongly_typed_value(hq: Hq, unchanged: None) -> None:
    body = refused(hq.push(next_push(hq, [change(value=SECRET_TEXT)])), 400, "malformed_batch",
                   secrets=(SECRET_TEXT,))
    assert body["where"] == "$.changes[0].value"
    assert "star_level" in body["detail"] and "int" in body["detail"]


def test_value_out_of_range(hq: Hq, unchanged: None) -> None:
    body = refused(hq.push(next_push(hq, [change(), change(value=8)])), 400, "malformed_batch")
    assert body["where"] == "$.changes[1].value"


def test_enum_value_not_echoed(hq: Hq, unchanged: None) -> None:
    body = refused(hq.push(next_push(hq, [change("status", SECRET_TEXT)])), 400, "malformed_batch",
                   secrets=(SECRET_TEXT,))
    assert body["where"] == "$.changes[0].value"


def test_unknown_field(hq: Hq, unchanged: None) -> None:
    body = refused(hq.push(next_push(hq, [change("favourite_colour", SECRET_TEXT)])), 400, "malformed_batch",
                   secrets=(SECRET_TEXT,))
    assert body["where"] == "$.changes[0].field"
    assert "favourite_colour" in body["detail"]


def test_unknown_collection(hq: Hq, unchanged: None) -> None:
    batch = next_push(hq, [change()])
    raw = msgspec.msgpack.encode(batch)
    raw = raw.replace(b"customers", b"customerz")  # same length: still a valid map
    frame = msgspec.msgpack.encode(Frame(1, SCHEMA_VERSION, "none", raw))
    body = refused(hq.post_raw("push", frame), 400, "malformed_batch", secrets=("customerz",))
    assert body["where"] == "$.changes[0].collection"


def test_bad_row_id(hq: Hq, unchanged: None) -> None:
    body = refused(hq.push(next_push(hq, [change(), change(row_id=SECRET_ROW)])), 400, "malformed_batch",
                   secrets=(SECRET_ROW,))
    assert body["where"] == "$.changes[1].row_id"


def test_bad_origin_format(hq: Hq, unchanged: None) -> None:
    body = refused(hq.push(next_push(hq, [change(origin="Not A Node!")])), 400, "malformed_batch")
    assert body["where"] == "$.changes[0].origin"


def test_change_from_the_future(hq: Hq, unchanged: None) -> None:
    ahead_ms = 10 * 60 * 1000
    changes = [change(), change(hlc=now_stamp(ahead_ms))]
    body = refused(hq.push(next_push(hq, changes)), 422, "clock_drift")
    assert body["where"] == "$.changes[1].hlc"
    assert body["max_drift_ms"] == 60_000
    assert ahead_ms - 5_000 < body["stamp_ms"] - body["now_ms"] <= ahead_ms


def test_third_of_five_bad_stores_nothing(hq: Hq, unchanged: None) -> None:
    rows = [new_row() for _ in range(5)]
    changes = [change(row_id=r, value=4) for r in rows]
    changes[2] = change(row_id=rows[2], raw=encode_value(SECRET_TEXT))
    body = refused(hq.push(next_push(hq, changes)), 400, "malformed_batch", secrets=(SECRET_TEXT,))
    assert body["where"] == "$.changes[2].value"
    for row in rows[:2]:
        response = hq.http.get(f"/customers/{row}", headers=hq.auth)
        assert response.status_code == 404, f"change before the bad one was stored: {response.text}"


def test_malformed_cursor_numbers(hq: Hq, unchanged: None) -> None:
    good = next_push(hq, [change()])
    batch = msgspec.structs.replace(good, from_seq=good.to_seq + 5)
    body = refused(hq.push(batch), 400, "malformed_batch")
    assert body["where"] == "$.from_seq"


# ---------------------------------------------------------------- who may push what


def test_push_from_unknown_node(hq: Hq, unchanged: None) -> None:
    batch = next_push(hq, [change(origin="branch-zz")], node="branch-zz", store_id=new_row())
    body = refused(hq.push(batch), 403, "unknown_node")
    assert body["node_id"] == "branch-zz"
    assert hq.link("branch-zz") == {}, "a refused node got a link"


def test_pull_from_unknown_node(hq: Hq, unchanged: None) -> None:
    body = refused(hq.post_raw("pull", encode_frame(PullRequest(node="branch-zz"))), 403, "unknown_node")
    assert body["node_id"] == "branch-zz"


def test_push_as_hq_itself(hq: Hq, unchanged: None) -> None:
    batch = next_push(hq, [change(origin="hq")], node="hq", store_id=new_row())
    refused(hq.push(batch), 403, "unknown_node")


def test_register_written_by_a_node_not_below_the_sender(hq: Hq, unchanged: None) -> None:
    changes = [change(), change(origin="branch-2")]
    body = refused(hq.push(next_push(hq, changes)), 403, "unknown_node")
    assert body["node_id"] == "branch-2"
    assert body["where"] == "$.changes[1].origin"


def test_origins_the_sender_may_speak_for(hq: Hq) -> None:
    """Control for the test above: a register written below the sender, and a set
    whose contributions name other nodes, are accepted."""
    established(hq)
    row = new_row()
    stamp = now_stamp()
    tags = encode_set(set_add({}, "vip", (stamp, "branch-2")))
    changes = [change("star_level", 6, row_id=row, origin=MOBILE), change("tags", row_id=row, raw=tags, hlc=stamp,
                                                                          origin="branch-2")]
    response = hq.push(next_push(hq, changes))
    assert response.status_code == 200, response.text
    card = hq.http.get(f"/customers/{row}", headers=hq.auth).json()
    assert card["star_level"] == 6 and card["tags"] == ["vip"]


def test_refused_push_from_a_new_store_keeps_the_link(hq: Hq) -> None:
    """A refused push must not reset what HQ acknowledged, even when it names another store."""
    established(hq)
    before, link_before = hq.digest(), hq.link()
    batch = next_push(hq, [change(value=SECRET_TEXT)], store_id=new_row())
    refused(hq.push(batch), 400, "malformed_batch", secrets=(SECRET_TEXT,))
    assert hq.digest() == before
    assert hq.link() == link_before, "a refused push reset HQ's record of branch-1"


# ---------------------------------------------------------------- replays


def test_replayed_push(hq: Hq) -> None:
    established(hq)
    row = new_row()
    batch = next_push(hq, [change("star_level", 2, row_id=row), change("segment", "gold", row_id=row)])
    first = hq.push(batch)
    assert first.status_code == 200, first.text
    digest, link = hq.digest(), hq.link()
    assert link["acked_through"] == batch.to_seq
    again = hq.push(batch)
    body = refused(again, 409, "replayed_batch")
    assert (body["acked_since"], body["acked_through"]) == (batch.to_seq, batch.to_seq)
    assert (body["from_seq"], body["to_seq"]) == (batch.from_seq, batch.to_seq)
    assert hq.digest() == digest and hq.link() == link


def test_push_leaving_a_gap(hq: Hq, unchanged: None) -> None:
    good = next_push(hq, [change()])
    gap = msgspec.structs.replace(good, since=good.from_seq + 10, from_seq=good.from_seq + 10,
                                  to_seq=good.to_seq + 10)
    body = refused(hq.push(gap), 409, "replayed_batch")
    assert body["acked_through"] == good.from_seq


# ---------------------------------------------------------------- the customers API


@pytest.fixture
def customer(hq: Hq) -> str:
    response = hq.http.post("/customers", json={"star_level": 3, "segment": "silver"}, headers=hq.auth)
    assert response.status_code == 201, response.text
    return str(response.json()["row_id"])


def test_patch_unknown_field(hq: Hq, customer: str) -> None:
    before = hq.digest()
    response = hq.http.patch(f"/customers/{customer}", json={"favourite_colour": SECRET_TEXT}, headers=hq.auth)
    body = refused(response, 400, "bad_request", secrets=(SECRET_TEXT,))
    assert hq.digest() == before
    assert "unknown field" in response.text


@pytest.mark.parametrize("value", [9, -1, SECRET_TEXT, 3.5, None])
def test_patch_bad_star_level(hq: Hq, customer: str, value: Any) -> None:
    before = hq.digest()
    response = hq.http.patch(f"/customers/{customer}", json={"star_level": value}, headers=hq.auth)
    refused(response, 400, "bad_request", secrets=(SECRET_TEXT,))
    assert "star_level" in response.text  # says which field
    assert hq.digest() == before
    card = hq.http.get(f"/customers/{customer}", headers=hq.auth).json()
    assert card["star_level"] == 3


def test_patch_bad_enum_not_echoed(hq: Hq, customer: str) -> None:
    response = hq.http.patch(f"/customers/{customer}", json={"status": SECRET_TEXT}, headers=hq.auth)
    refused(response, 400, "bad_request", secrets=(SECRET_TEXT,))


def test_patch_undelete_is_refused(hq: Hq, customer: str) -> None:
    response = hq.http.patch(f"/customers/{customer}", json={"deleted": False}, headers=hq.auth)
    refused(response, 400, "bad_request")


def test_patch_not_json(hq: Hq, customer: str) -> None:
    response = hq.http.patch(f"/customers/{customer}", content=b"{star_level: nine", headers={
        **hq.auth, "content-type": "application/json"})
    refused(response, 400, "bad_request", secrets=("nine",))


def test_patch_unknown_id(hq: Hq, unchanged: None) -> None:
    row = new_row()
    response = hq.http.patch(f"/customers/{row}", json={"star_level": 2}, headers=hq.auth)
    body = refused(response, 404, "not_found")
    assert body["row_id"] == row
    assert hq.http.get(f"/customers/{row}", headers=hq.auth).status_code == 404


def test_malformed_id(hq: Hq, unchanged: None) -> None:
    response = hq.http.get(f"/customers/{SECRET_ROW}", headers=hq.auth)
    assert response.status_code in (400, 404), response.text
    problem(response)
    assert SECRET_ROW not in response.text


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer"])
def test_missing_or_wrong_token(hq: Hq, customer: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    before = hq.digest()
    for method, path, kwargs in [
        ("PATCH", f"/customers/{customer}", {"json": {"star_level": 7}}),
        ("GET", f"/customers/{customer}", {}),
        ("POST", "/customers", {"json": {"star_level": 1}}),
        ("GET", "/status", {}),
        ("GET", "/status/digest", {}),
        ("POST", "/sync/now", {}),
    ]:
        response = hq.http.request(method, path, headers=headers, **kwargs)
        body = refused(response, 401, "unauthorized", secrets=("wrong-token", hq.node.token))
        assert response.headers.get("www-authenticate") == "Bearer", (method, path)
        assert body["detail"]
    assert hq.digest() == before


def test_no_internal_error_was_logged(hq: Hq) -> None:
    """Runs last in this module: the node logged no traceback for any of the above."""
    log = Path(hq.node.log_path).read_text(errors="replace")
    assert "Traceback" not in log
    assert "request failed" not in log
