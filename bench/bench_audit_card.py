"""Audit cost on the hottest read: the customer card's throughput with its audit entry, next to without.

    .venv/bin/python bench/bench_audit_card.py [--customers N] [--quick]    # or: python3 run.py bench

One HQ node (`outpost init`, a real keystore) holding 2,000 customers, each with
ten PII fields (name, phone, second contact, ID number, birthday, address,
employer, position, email, notes) sealed through HQ's keyring under its data
keys, the phone's and ID number's blind indexes stored; seeded straight into
the file before anything serves, then one key pass (``POST /sync/now``).

``GET /customers/{id}`` (the card) with the operator's token reads the row,
opens its ten sealed fields, projects them and, since it shows PII, appends one
audit entry (`node.audit.record` -> `SqliteStore.append_audit`: chained under
the write lock and group-committed, ``synchronous = FULL``) before answering.

Two variants of the same node on the same files, each a `bench.card_server`
process (the node's app under uvicorn, as ``outpost serve --no-replicate``):
**on** is the app as it is; **off** replaces `SqliteStore.append_audit` with a
no-op in its own process (bench code only; see `bench.card_server`). They run
one after the other, alternating (on, off, off, on, ...), ``--rounds`` each.

The load comes from this process, not the server's: an httpx client (keep-alive,
one request in flight per connection) with ``--concurrency``
connections (16 and 32: beyond, the httpx client in one process is what saturates), asking for random seeded customers for
``--duration-s`` after ``--warmup-s``. Requests finishing inside the window
count; every response, warm-up included, must be 200 and carry the customer's
ten PII fields with the values sealed for it. Both processes share the
machine's two cores (as do aiosqlite's threads), for both variants alike.

Figures: per variant and concurrency, the median over rounds of requests/s,
p50 and p99 latency, and the server process's CPU time (all its threads:
the event loop's and aiosqlite's) per card answered, a figure other load on
the machine disturbs less than throughput; the ratio on/off of the median
throughputs; the cost
(1 - ratio) against the target: audit costs at most 15%. Also checked: the
"on" server's chain gained exactly one ``read`` entry per request it answered,
the "off" server's none. The script exits non-zero if a check fails (not if the
target is missed: the machine is noisy).

``--profile DIR`` runs each server under cProfile (``BENCH_PROFILE``) and leaves
``card-on-<round>.prof`` / ``card-off-<round>.prof`` there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_seal import pii_values  # noqa: E402
from bench.card_server import PROFILE_ENV  # noqa: E402
from bench.harness import SEED_CHUNK, verdict  # noqa: E402
from bench.workload import customer_ids, plain_values  # noqa: E402
from crypto.keystore import open_keystore  # noqa: E402
from server.cli import ROOT  # noqa: E402
from server.keyring import Keyring  # noqa: E402
from server.node_process import NodeProcess  # noqa: E402
from sync.edits import Edit  # noqa: E402
from sync.hlc import Clock  # noqa: E402
from sync.store.sqlite import SqliteStore, wall_clock_ms  # noqa: E402

#: the most the audit entry may cost the card's throughput
TARGET_COST = 0.15
SITE = "hq"
VARIANTS = ("on", "off")

Pii = dict[str, str]


class CardServer(NodeProcess):
    """HQ served by `bench.card_server` with the audit ``on`` or ``off``."""

    def __init__(self, workdir: Path, *, token: str, passphrase: str, audit: str,
                 profile_path: Path | None = None) -> None:
        super().__init__(SITE, workdir, token=token, passphrase=passphrase)
        self.audit = audit
        self.profile_path = profile_path

    async def start(self) -> None:
        env = self.env
        if self.profile_path is not None:
            env[PROFILE_ENV] = str(self.profile_path)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.card_server", self._site_arg, *self._args(), "--audit", self.audit],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"card server ({self.audit}) exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if (await self.client.get("/health")).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"card server ({self.audit}) did not answer /health within 30 s; see {self.log_path}")


# ---------------------------------------------------------------- seeding


def person_pii(i: int) -> Pii:
    """Customer ``i``'s ten PII fields, as text."""
    return {field: value.decode() for field, value in pii_values(random.Random(i))}


async def seed(node: NodeProcess, ids: list[str]) -> dict[str, Pii]:
    """Every customer's plain fields and sealed PII, straight into HQ's file
    (SEED_CHUNK customers to a transaction); returns the PII by row id."""
    keystore = open_keystore(node.data_dir / f"{SITE}.keystore", node.passphrase)
    store = await SqliteStore.open(node.data_dir / f"{SITE}.db", node_id=SITE, clock=Clock(wall_clock_ms, 60_000))
    keyring = Keyring(store, keystore, hq=SITE)
    expected: dict[str, Pii] = {}
    try:
        batch: list[Edit] = []
        for i, row_id in enumerate(ids):
            pii = expected[row_id] = person_pii(i)
            plain = dict(plain_values(i))
            batch += [Edit("customers", row_id, f, value=v) for f, v in plain.items()]
            batch += await keyring.seal_edits(row_id, plain, pii)
            if (i + 1) % SEED_CHUNK == 0:
                await store.write_local(batch)
                batch = []
        if batch:
            await store.write_local(batch)
    finally:
        await store.close()
    return expected


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def audit_reads(db: Path) -> int:
    """This node's ``read`` entries in its audit chain."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (n,) = conn.execute("SELECT count(*) FROM audit_entries WHERE node = ? AND action = 'read'",
                            (SITE,)).fetchone()
        return int(n)
    finally:
        conn.close()


# ---------------------------------------------------------------- the load


class Load(msgspec.Struct):
    """What one run of the load generator saw."""

    concurrency: int
    #: requests answered inside the measured window, and their latencies (s)
    latencies: list[float]
    window_s: float
    #: every request answered (warm-up and the window's tail included)
    answered: int = 0
    #: CPU seconds the server process (all its threads) spent while this load ran
    server_cpu_s: float = 0.0
    problems: list[str] = msgspec.field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.window_s

    @property
    def cpu_ms_per_card(self) -> float:
        return self.server_cpu_s / self.answered * 1000

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


_card_decoder = msgspec.json.Decoder(dict)


def check_card(row_id: str, status: int, body: bytes, expected: Pii) -> str | None:
    """What is wrong with one answer (None when it is the customer's card with its PII)."""
    if status != 200:
        return f"{row_id}: status {status}"
    card = _card_decoder.decode(body)
    if card.get("row_id") != row_id:
        return f"{row_id}: answered for {card.get('row_id')}"
    wrong = [field for field, value in expected.items() if card.get(field) != value]
    if wrong or card.get("unavailable"):
        return f"{row_id}: PII fields {wrong or card.get('unavailable')} missing or different"
    return None


async def drive(port: int, token: str, expected: dict[str, Pii], *, concurrency: int, warmup_s: float,
                duration_s: float, seed: int) -> Load:
    """``concurrency`` keep-alive connections (an httpx client's pool), each with
    one request in flight, asking for random cards until the window (after
    ``warmup_s``) closes; each finishes its request in flight."""
    ids = list(expected)
    now = time.perf_counter
    start = now()
    window_start, window_end = start + warmup_s, start + warmup_s + duration_s
    load = Load(concurrency, [], duration_s)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60,
                                 headers={"authorization": f"Bearer {token}"}) as client:

        async def connection(n: int) -> None:
            rnd = random.Random(seed * 1_000 + n)
            while now() < window_end:
                row_id = rnd.choice(ids)
                sent = now()
                response = await client.get(f"/customers/{row_id}")
                done = now()
                load.answered += 1
                if window_start <= sent and done <= window_end:
                    load.latencies.append(done - sent)
                problem = check_card(row_id, response.status_code, response.content, expected[row_id])
                if problem is not None and len(load.problems) < 10:
                    load.problems.append(problem)

        await asyncio.gather(*(connection(n) for n in range(concurrency)))
    return load


# ---------------------------------------------------------------- the run


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="outpost-bench-card-"))
    try:
        yield path
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"  (kept {path})")


async def run(args: argparse.Namespace) -> int:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    token, passphrase = secrets.token_urlsafe(24), secrets.token_urlsafe(16)
    problems: list[str] = []
    results: dict[tuple[str, int], list[Load]] = {}
    with workdir() as work:
        setup_start = time.perf_counter()
        hq = NodeProcess(SITE, work, token=token, passphrase=passphrase)
        hq.init()
        await hq.client.aclose()
        ids = customer_ids(args.customers, now_ms=wall_clock_ms())
        expected = await seed(hq, ids)
        db = hq.data_dir / f"{SITE}.db"
        first = CardServer(work, token=token, passphrase=passphrase, audit="on")
        await first.start()
        try:
            await first.sync_now()  # HQ's key pass over the seeded rows, so none runs while measured
        finally:
            await first.stop()
        print(f"audit on the customer card: HQ holding {args.customers:,} customers x 10 sealed PII fields; "
              f"GET /customers/{{id}} as the operator, {args.rounds} rounds per variant (alternating), "
              f"{args.warmup_s:g} s warm-up + {args.duration_s:g} s measured per concurrency "
              f"(setup {time.perf_counter() - setup_start:.0f} s)", flush=True)
        for round_no in range(args.rounds):
            order = VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                profile = None if args.profile is None else Path(args.profile).resolve() / f"card-{variant}-{round_no}.prof"
                server = CardServer(work, token=token, passphrase=passphrase, audit=variant, profile_path=profile)
                before = audit_reads(db)
                await server.start()
                answered = 0
                try:
                    for c in concurrencies:
                        assert server.proc is not None
                        cpu_before = cpu_s(server.proc.pid)
                        load = await drive(server.port, token, expected, concurrency=c, warmup_s=args.warmup_s,
                                           duration_s=args.duration_s, seed=round_no * 10 + c)
                        load.server_cpu_s = cpu_s(server.proc.pid) - cpu_before
                        results.setdefault((variant, c), []).append(load)
                        answered += load.answered
                        problems += [f"{variant} round {round_no + 1} c={c}: {p}" for p in load.problems]
                        print(f"  round {round_no + 1} audit {variant:<3} c={c:<4} {load.rps:>8,.0f} req/s  "
                              f"p50 {load.percentile_ms(0.5):>6.1f} ms  p99 {load.percentile_ms(0.99):>6.1f} ms  "
                              f"server CPU {load.cpu_ms_per_card:.2f} ms/card",
                              flush=True)
                finally:
                    await server.stop()
                added = audit_reads(db) - before
                want = answered if variant == "on" else 0
                if added != want:
                    problems.append(f"{variant} round {round_no + 1}: {answered:,} cards answered, "
                                    f"{added:,} read entries added to the chain (expected {want:,})")
                else:
                    print(f"    chain: {answered:,} cards answered, {added:,} read entries added (expected {want:,}: ok)",
                          flush=True)

    print(f"\n  {'variant':<14} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>7}   rounds' req/s")
    for c in concurrencies:
        for variant in VARIANTS:
            loads = results[(variant, c)]
            rounds = " / ".join(f"{load.rps:,.0f}" for load in loads)
            print(f"  audit {variant:<8} {c:>5} {statistics.median(x.rps for x in loads):>9,.0f} "
                  f"{statistics.median(x.percentile_ms(0.5) for x in loads):>8.1f} "
                  f"{statistics.median(x.percentile_ms(0.99) for x in loads):>8.1f} "
                  f"{statistics.median(x.cpu_ms_per_card for x in loads):>7.2f}   {rounds}")
    for c in concurrencies:
        on = statistics.median(x.rps for x in results[("on", c)])
        off = statistics.median(x.rps for x in results[("off", c)])
        ratio = on / off
        print(f"  c={c:<4} ratio on/off {ratio:.2f}, audit costs {1 - ratio:>5.1%} of the card's throughput "
              f"(target <= {TARGET_COST:.0%}: {verdict(1 - ratio <= TARGET_COST)})")
    for problem in problems:
        print(f"  FAILED: {problem}")
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, alternating")
    parser.add_argument("--concurrency", default="16,32", help="connections, comma-separated")
    parser.add_argument("--duration-s", type=float, default=6.0, help="measured seconds per concurrency")
    parser.add_argument("--warmup-s", type=float, default=1.5)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300 customers, 1 round, 2 s windows")
    parser.add_argument("--profile", metavar="DIR", help="run the servers under cProfile, stats to DIR")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.rounds, args.duration_s, args.warmup_s = 300, 1, 2.0, 0.5
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
