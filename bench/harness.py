"""Setup shared by the sync benchmarks: HQ seeded with customers, branch-a below it.

Replication is scoped by the access policy: HQ sends branch-a only the
customers whose ``home_branch`` is branch-a, of them the fields its roles see.
The pair knows each seeded customer's home (``homes``, see `bench.workload`), so
the convergence check knows how many customers branch-a must hold, and it
compares branch-a's digest with HQ's digest of branch-a's scope
(``GET /status/digest?peer=branch-a``).

Both nodes run as `outpost serve` processes on loopback (`NodeProcess`). The
branch runs with ``--no-replicate``, so it syncs only when told to
(``POST /sync/now``): the benchmark decides when the link works. (A long
``--sync-interval`` would not do: the background loop syncs once at startup.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from bench.workload import HOMES, customer_ids, edits_for, home
from server.node_process import NodeProcess
from sync.edits import Edit
from sync.hlc import Clock
from sync.store.sqlite import SqliteStore, wall_clock_ms

#: customers per `write_local` call (one transaction) when seeding
SEED_CHUNK = 1_000
#: the pragmas of `sync.store.sqlite`, for the stdlib baselines
PRAGMAS = ("journal_mode = WAL", "synchronous = FULL", "cache_size = -32768")


#: the branch of the pair
BRANCH = "branch-a"


class Pair:
    """HQ and branch-a in ``workdir``; `start` and `stop` may be repeated (new ports each time).

    ``ids`` are the seeded customers, customer ``i`` at home at ``homes[i % len(homes)]``."""

    def __init__(self, workdir: Path, ids: list[str], homes: tuple[str, ...] = HOMES) -> None:
        self.workdir = workdir
        self.ids = ids
        self.homes = homes
        self.token = secrets.token_urlsafe(24)
        #: one keystore passphrase for both, kept across restarts
        self.passphrase = secrets.token_urlsafe(16)
        self.hq = NodeProcess("hq", workdir, token=self.token, passphrase=self.passphrase)
        self.branch = self._branch()

    def is_own(self, i: int) -> bool:
        """Whether customer ``i`` is at home at branch-a (so in its scope)."""
        return home(i, self.homes) == BRANCH

    @property
    def own_ids(self) -> list[str]:
        """The customers branch-a's scope admits, in seeding order."""
        return [row_id for i, row_id in enumerate(self.ids) if self.is_own(i)]

    def _branch(self) -> NodeProcess:
        return NodeProcess(BRANCH, self.workdir, token=self.token, upstream_url=self.hq.url,
                           extra_args=("--no-replicate",), passphrase=self.passphrase)

    def db_path(self, node: NodeProcess) -> Path:
        return node.data_dir / f"{node.site}.db"

    async def start(self) -> None:
        if self.hq.proc is not None:  # a stopped NodeProcess has closed its client: make new ones
            self.hq = NodeProcess("hq", self.workdir, token=self.token, passphrase=self.passphrase)
            self.branch = self._branch()
        await self.hq.start()
        await self.branch.start()

    async def stop(self) -> None:
        for node in (self.branch, self.hq):
            await node.stop()


async def seed_plain(pair: Pair) -> None:
    """The workload's customers, straight into HQ's file."""
    await write_local(pair.db_path(pair.hq), "hq", chunked(edits_for(pair.ids, homes=pair.homes), SEED_CHUNK))


@asynccontextmanager
async def seeded_pair(
    customers: int, seed: Callable[[Pair], Awaitable[None]] = seed_plain, *, enroll: bool = False,
    homes: tuple[str, ...] = HOMES,
) -> AsyncIterator[Pair]:
    """HQ holding ``customers`` customers spread over ``homes`` (written by
    ``seed`` straight into its file, before it starts), an empty branch-a
    (enrolled with HQ if ``enroll``), both serving, HQ's first key pass over the
    seeded rows done; everything is stopped and deleted on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="outpost-bench-"))
    pair = Pair(workdir, customer_ids(customers, now_ms=wall_clock_ms()), homes)
    try:
        pair.hq.init()
        pair.branch.init()
        await seed(pair)
        await pair.start()
        if enroll:
            await pair.branch.enroll()
        await pair.hq.sync_now()  # at HQ: one key pass, so none runs during the timed sync
        yield pair
    finally:
        await pair.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


def chunked(writes: Iterable[list[Edit]], n: int) -> Iterator[list[Edit]]:
    """Join every ``n`` writes into one."""
    out: list[Edit] = []
    for i, edits in enumerate(writes, 1):
        out += edits
        if i % n == 0:
            yield out
            out = []
    if out:
        yield out


async def write_local(path: Path, node_id: str, writes: Iterable[list[Edit]]) -> None:
    """Each list of edits as one local write (one stamp, one transaction) at that node's file."""
    store = await SqliteStore.open(path, node_id=node_id, clock=Clock(wall_clock_ms, 60_000))
    try:
        for edits in writes:
            await store.write_local(edits)
    finally:
        await store.close()


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


async def timed_sync(node: NodeProcess) -> tuple[float, dict[str, int]]:
    """Seconds for one ``POST /sync/now`` and its report."""
    start = time.perf_counter()
    report = await node.sync_now()
    return time.perf_counter() - start, report


def verdict(met: bool) -> str:
    """How a figure compares with its target (printed, not enforced: the machine is noisy)."""
    return "met" if met else "MISSED"


async def check_converged(pair: Pair) -> list[str]:
    """What is wrong with the pair's convergence (empty when it has converged):
    branch-a's digests must equal HQ's digests of branch-a's scope, HQ must hold
    every seeded customer and branch-a exactly those at home there."""
    hq, branch = await pair.hq.digest(peer=BRANCH), await pair.branch.digest()
    problems = []
    for kind in ("digest", "keys_digest"):  # the work data, and the key records HQ sends branch-a
        if hq[kind] != branch[kind]:
            problems.append(f"{kind}s differ: hq's of {BRANCH}'s scope {hq[kind][:16]}, {BRANCH} {branch[kind][:16]}")
    # the digest's row counts are of what each node holds (HQ's: all of it)
    for d, expected in ((hq, len(pair.ids)), (branch, len(pair.own_ids))):
        if d["rows"]["customers"] != expected:
            problems.append(f"{d['node_id']} holds {d['rows']['customers']:,} customers, expected {expected:,}")
    return problems


def key_states(db: Path) -> int:
    """Field states of the key records in a node's file (the epochs and keys HQ sent it)."""
    conn = sqlite3.connect(db)
    try:
        return sum(len(msgspec.msgpack.decode(state)) for (state,) in conn.execute("SELECT _state FROM keys"))
    finally:
        conn.close()


def bench_main(run: Callable[[int], Coroutine[Any, Any, int]], doc: str) -> None:
    """Command line of a pair benchmark: ``--customers N``; exits with ``run``'s status."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.customers)))
