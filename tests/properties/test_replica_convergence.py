"""Whole replicas converge: real SQLite stores, every merge type, batches delivered
late, twice and out of order, pushes whose answer is lost."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Iterable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from sync.changes import Change, PushBatch, decode_frame, encode_frame
from sync.edits import Edit, InvalidEditError
from sync.errors import LinkDownError
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.merge import FieldState, join, materialize
from sync.protocol import validate_changes
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.schema import COLLECTIONS, field_spec
from sync.store.sqlite import SqliteStore

T0_MS = 1_700_000_000_000
MAX_DRIFT_MS = 60_000
ROWS = tuple(new_ulid(T0_MS, bytes([i]) * 10) for i in range(8))
TAGS = ("vip", "gold")
STATUSES = COLLECTIONS["tasks"].fields["status"].lattice or ()


def edits_on(customers: tuple[str, ...], tasks: tuple[str, ...], results: tuple[str, ...]) -> st.SearchStrategy[Edit]:
    """Local edits over every merge type, on a few rows, with values that collide often."""
    c, t, r = st.sampled_from(customers), st.sampled_from(tasks), st.sampled_from(results)
    return st.one_of(
        st.builds(Edit, st.just("customers"), c, st.just("star_level"), st.just("set"), st.integers(0, 3)),
        st.builds(Edit, st.just("customers"), c, st.just("tags"), st.sampled_from(["add", "remove"]), st.sampled_from(TAGS)),
        st.builds(Edit, st.just("customers"), c, st.just("deleted"), st.just("set"), st.booleans()),
        st.builds(Edit, st.just("tasks"), t, st.just("status"), st.just("set"), st.sampled_from(STATUSES)),
        st.builds(Edit, st.just("tasks"), t, st.just("attempts"), st.just("increment"), st.integers(1, 3)),
        st.builds(Edit, st.just("results"), r, st.just("outcome"), st.just("set"), st.sampled_from(["busy", "success", None])),
    )


edits = edits_on(ROWS[0:2], ROWS[2:3], ROWS[3:4])
#: one replica's writes in one phase: each inner list is one `write_local` (one stamp)
writes = st.lists(st.lists(edits, min_size=1, max_size=3), max_size=3)

FieldKey = tuple[str, str, str]

#: Shrinking a failing run of these store tests takes hypothesis minutes, up to the
#: suite's timeout: by default a failure is reported unshrunk (it replays from the
#: example database); OUTPOST_SHRINK=1 shrinks it.
PHASES = tuple(Phase) if os.environ.get("OUTPOST_SHRINK") else tuple(p for p in Phase if p is not Phase.shrink)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory, in RAM where there is one: real SQLite files without
    the fsyncs of ``synchronous=FULL`` reaching a disk, so examples stay cheap."""
    shm = "/dev/shm"
    return tempfile.TemporaryDirectory(dir=shm if os.access(shm, os.W_OK) else None)


async def create_store(directory: str, node: str, now: list[int], skew_ms: int = 0) -> SqliteStore:
    """A store whose wall clock is the shared ``now`` plus a fixed skew."""
    clock = Clock(lambda: now[0] + skew_ms, MAX_DRIFT_MS)
    return await SqliteStore.create(os.path.join(directory, f"{node}.db"), node_id=node, role="branch", clock=clock)


async def write(store: SqliteStore, edit_lists: Iterable[list[Edit]]) -> list[list[Change]]:
    """Apply each edit list as one local write; skip the ones the field refuses
    (a status moving back, a second append-only value). Returns the batches stored."""
    out = []
    for edit_list in edit_lists:
        try:
            changes = await store.write_local(edit_list)
        except InvalidEditError:
            continue
        if changes:
            out.append(changes)
    return out


async def deliver(store: SqliteStore, src: SqliteStore, changes: list[Change], as_push: bool) -> None:
    """Deliver one batch over the wire encoding, validated, as a pull page or a push."""
    frame = encode_frame(PushBatch(node=src.node_id, store_id=src.store_id, since=0, from_seq=0, to_seq=0, changes=changes))
    message, _ = decode_frame(frame, max_body_bytes=1 << 20)
    assert isinstance(message, PushBatch)
    incoming = validate_changes(message.changes, clock=store.clock)
    if as_push:
        await store.apply_pushed(incoming, peer=src.node_id, peer_store_id=src.store_id, acked_since=0, acked_through=0)
    else:
        await store.apply_pulled(incoming, peer=src.node_id, peer_store_id=src.store_id, since=0, cursor=0)


async def dump(store: SqliteStore) -> dict[FieldKey, tuple[bytes, int, str]]:
    """Every field state the store holds, by (collection, row, field)."""
    page = await store.changes_after(0, 0, limit=100_000, exclude_src="\0")  # no peer is named NUL
    assert not page.more
    return {(c.collection, c.row_id, c.field): (bytes(c.value), c.hlc, c.origin) for c in page.changes}


def oracle(batches: Iterable[list[Change]]) -> dict[FieldKey, FieldState]:
    """The pure join of every state ever written, field by field."""
    out: dict[FieldKey, FieldState] = {}
    for changes in batches:
        for c in changes:
            spec = field_spec(c.collection, c.field)
            assert spec is not None
            k = (c.collection, c.row_id, c.field)
            out[k] = join(spec, out.get(k), FieldState(bytes(c.value), c.hlc, c.origin))  # type: ignore[assignment]
    return out


async def assert_matches_oracle(store: SqliteStore, expected: dict[FieldKey, FieldState]) -> None:
    """The stored states equal the oracle's, and each column holds the materialized value."""
    assert await dump(store) == {k: (s.raw, s.hlc, s.origin) for k, s in expected.items()}, store.node_id
    for (collection, row_id, name), state in expected.items():
        spec = field_spec(collection, name)
        assert spec is not None
        row = await store.read_row(collection, row_id)
        value = materialize(spec, state.raw)
        assert row is not None and row[name] == (sorted(value) if spec.merge == "add_wins_set" else value), (
            store.node_id, collection, name,
        )


NODES = ("hq", "branch-a", "branch-b", "branch-c")


@settings(
    max_examples=40, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    n_nodes=st.integers(3, 4),
    skews=st.lists(st.integers(0, 1), min_size=4, max_size=4),
    phase_writes=st.lists(st.lists(writes, min_size=4, max_size=4), min_size=2, max_size=2),
    data=st.data(),
)
def test_replicas_converge_whatever_the_delivery_order(
    n_nodes: int, skews: list[int], phase_writes: list[list[list[list[Edit]]]], data: st.DataObject
) -> None:
    """Replicas write in two phases; after the first, each gets a random part of the
    others' batches (duplicated, reordered); after the second, all of them, again
    duplicated and reordered. Every replica then holds exactly the join of all
    writes, as does a replica that received everything once in order."""

    async def scenario(directory: str) -> None:
        now = [T0_MS]
        nodes = NODES[:n_nodes]
        stores = {n: await create_store(directory, n, now, skews[i]) for i, n in enumerate(nodes)}
        ref = await create_store(directory, "ref", now)
        try:
            for store in (*stores.values(), ref):
                for peer in nodes:
                    if peer != store.node_id:
                        await store.ensure_link(peer, "upstream" if peer == "hq" else "downstream")
            batches: list[tuple[str, list[Change]]] = []
            for phase, per_node in enumerate(phase_writes):
                for node, edit_lists in zip(nodes, per_node):
                    batches += [(node, b) for b in await write(stores[node], edit_lists)]
                    now[0] += 1
                for node in nodes:
                    theirs = [i for i, (src, _) in enumerate(batches) if src != node]
                    if not theirs:
                        continue
                    chosen = theirs if phase == len(phase_writes) - 1 else data.draw(st.lists(st.sampled_from(theirs), unique=True))
                    extra = data.draw(st.lists(st.sampled_from(theirs), max_size=3))
                    for i in data.draw(st.permutations(chosen + extra)):
                        src, changes = batches[i]
                        await deliver(stores[node], stores[src], changes, as_push=data.draw(st.booleans()))
            for src, changes in batches:
                await deliver(ref, stores[src], changes, as_push=False)
            expected = oracle(changes for _, changes in batches)
            digests = {n: await s.digest() for n, s in stores.items()}
            assert len(set(digests.values())) == 1, digests
            assert digests[nodes[0]] == await ref.digest()
            for store in (*stores.values(), ref):
                await assert_matches_oracle(store, expected)
        finally:
            for store in (*stores.values(), ref):
                await store.close()

    with scratch_dir() as directory:
        asyncio.run(scenario(directory))


def test_push_resumes_after_rows_with_nothing_to_push() -> None:
    """Regression: a branch whose oldest unpushed rows hold only states pulled from
    HQ (nothing to push), more of them than one push page, must still push what it
    wrote after them. The push cursor once skipped those rows locally, HQ took the
    next batch for a gap, and the push rewound to the same place until it gave up."""

    async def scenario(directory: str) -> None:
        now = [T0_MS]
        hq = await create_store(directory, "hq", now)
        branch = await create_store(directory, "branch-a", now)
        try:
            await hq.enroll("branch-a", parent="hq", role="branch")
            await hq.write_local([Edit("customers", row, "star_level", value=1) for row in ROWS[:4]])
            replicator = Replicator(branch, LocalTransport(Responder(hq)), upstream="hq", page_limit=3, push_limit=3)
            await replicator.sync_once()
            await branch.write_local([Edit("customers", ROWS[4], "star_level", value=2)])
            report = await replicator.sync_once()
            assert report.pushed == 1
            assert await hq.digest() == await branch.digest()
        finally:
            await hq.close()
            await branch.close()

    with scratch_dir() as directory:
        asyncio.run(scenario(directory))


# ---------------------------------------------------------------- stateful: HQ and branches


class LossyTransport:
    """In-memory transport into HQ's responder that can lose one answer after HQ acted."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.drop: str | None = None

    async def __call__(self, route: str, body: bytes) -> bytes:
        answer = await self.responder.handle(route, body)  # type: ignore[arg-type]
        if route == self.drop:
            self.drop = None
            raise LinkDownError("hq", "answer lost")
        return answer


BRANCHES = NODES[1:]
#: more rows than a page holds, so that runs span pages
network_edits = edits_on(ROWS[0:5], ROWS[5:7], ROWS[7:8])
SKEWS_MS = {"hq": 0, "branch-a": 0, "branch-b": 1, "branch-c": 0}
PAGE = 3


class ReplicaNetwork(RuleBasedStateMachine):
    """HQ and three branches on small pages. Nodes edit, sync, lose answers and
    restart in any order; after syncing every branch twice, all digests are equal."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = scratch_dir()
        self.now = [T0_MS]
        self.stores: dict[str, SqliteStore] = {}
        self.transports: dict[str, LossyTransport] = {}
        self.replicators: dict[str, Replicator] = {}
        self.run(self._start())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def _clock(self, node: str) -> Clock:
        return Clock(lambda: self.now[0] + SKEWS_MS[node], MAX_DRIFT_MS)

    async def _start(self) -> None:
        hq = await SqliteStore.create(os.path.join(self.tmp.name, "hq.db"), node_id="hq", role="hq", clock=self._clock("hq"))
        self.stores["hq"] = hq
        for b in BRANCHES:
            await hq.enroll(b, parent="hq", role="branch")
            self.stores[b] = await SqliteStore.create(
                os.path.join(self.tmp.name, f"{b}.db"), node_id=b, role="branch", clock=self._clock(b)
            )
            self.transports[b] = LossyTransport(Responder(hq))
            self._replicator(b)

    def _replicator(self, branch: str) -> None:
        self.replicators[branch] = Replicator(
            self.stores[branch], self.transports[branch], upstream="hq", page_limit=PAGE, push_limit=PAGE
        )

    @rule(node=st.sampled_from(NODES), edit_lists=st.lists(st.lists(network_edits, min_size=1, max_size=3), min_size=1, max_size=3))
    def edit(self, node: str, edit_lists: list[list[Edit]]) -> None:
        self.run(write(self.stores[node], edit_lists))

    @rule(ms=st.integers(-20, 200))
    def tick(self, ms: int) -> None:
        """The shared wall clock moves, sometimes backwards."""
        self.now[0] += ms

    @rule(branch=st.sampled_from(BRANCHES))
    def sync(self, branch: str) -> None:
        self.run(self.replicators[branch].sync_once())

    @rule(branch=st.sampled_from(BRANCHES), route=st.sampled_from(["push", "pull"]))
    def lose_answer(self, branch: str, route: str) -> None:
        """HQ handles the first request on ``route``; its answer never arrives."""
        transport = self.transports[branch]
        transport.drop = route
        try:
            self.run(self.replicators[branch].sync_once())
        except LinkDownError:
            pass
        finally:
            transport.drop = None

    @rule(node=st.sampled_from(NODES))
    def restart(self, node: str) -> None:
        """Close and reopen a node's store with a fresh clock: stamps and cursors persist."""
        store = self.stores[node]
        self.run(store.close())
        self.stores[node] = self.run(SqliteStore.open(store.path, clock=self._clock(node), node_id=node))
        if node == "hq":
            for transport in self.transports.values():
                transport.responder = Responder(self.stores["hq"])
        else:
            self._replicator(node)

    @rule()
    def sync_all_converges(self) -> None:
        self.check_convergence()

    def check_convergence(self) -> None:
        for _ in range(2):
            for branch in BRANCHES:
                self.run(self.replicators[branch].sync_once())
        digests = {n: self.run(s.digest()) for n, s in self.stores.items()}
        assert len(set(digests.values())) == 1, {n: self.run(dump(s)) for n, s in self.stores.items()}

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is None:  # a failed rule is the report; don't pile a second one on it
                self.check_convergence()
        finally:
            for store in self.stores.values():
                self.run(store.close())
            self.loop.close()
            self.tmp.cleanup()


TestReplicaNetwork = ReplicaNetwork.TestCase
TestReplicaNetwork.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    report_multiple_bugs=False,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
