"""Sealed initial sync: the initial-sync benchmark with sealed PII, next to the same sync unsealed.

    .venv/bin/python bench/bench_sealed_sync.py [--customers N]    # or: python3 run.py bench

Two runs in one process, on the same customers (`bench.workload`: 8 plain
fields, a made-up name and mobile number each), each with a fresh HQ and an
empty branch-a enrolled with it, both `outpost serve` processes on loopback.
HQ holds 2N customers (200,000 by default), half at home at branch-a and half
at branch-b. Replication is scoped, so branch-a pulls its own N (100,000, as
many rows as before scoping, when it pulled all 100,000 and could open half)
and holds none of branch-b's: HQ passes over them, in both runs.

* unsealed (the baseline): name and phone stored as their plaintext bytes; no
  keys anywhere.
* sealed: HQ seals name and phone under each customer's contact data key
  (AES-256-GCM), wraps that key under the contact scope key of the customer's
  home branch, in the customer row (HQ holds every scope key and needs no wrap
  of its own), and stores the phone's blind index. Branch-a pulls its customers
  (each with its wrapped data key and blind index) and its HPKE-wrapped scope
  keys, and its key pass moves those into its keystore. Far behind, the branch
  builds its column indexes (the blind index among them) once at the end of
  the pull; so does the unsealed run.

Seeding HQ's file is not timed; sealing 200,000 customers through the keyring
takes about two minutes (a key-record lookup per customer), which is the price
of pulling as many rows as before. Timed: one ``POST /sync/now`` on the branch:
every page pulled and applied, then the key work the sync calls for. Target:
sealed within 1.3x of unsealed.

Afterwards, in both runs, branch-a's digests must equal HQ's digests of its
scope (``GET /status/digest?peer=branch-a``), it must hold exactly its own
customers and none of branch-b's (its file has none of their row ids, its API
answers 404 for a sample); in the sealed run it must also open a sample of its
own over its API to the values HQ sealed; else the script exits non-zero.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    BRANCH,
    SEED_CHUNK,
    Pair,
    bench_main,
    check_converged,
    connect,
    key_states,
    seeded_pair,
    timed_sync,
    verdict,
)
from bench.workload import HOMES, person, plain_values  # noqa: E402
from crypto.keystore import open_keystore  # noqa: E402
from server.keyring import Keyring  # noqa: E402
from sync.edits import Edit  # noqa: E402
from sync.hlc import Clock  # noqa: E402
from sync.store.sqlite import SqliteStore, wall_clock_ms  # noqa: E402

TARGET_RATIO = 1.3
#: the edits that store customer ``i``'s PII: (keyring, i, row id) -> edits
PiiEdits = Callable[[Keyring, int, str], Awaitable[list[Edit]]]
SAMPLE = 200
#: half branch-a's, half branch-b's
assert set(HOMES) == {BRANCH, "branch-b"} and len(HOMES) == 2


async def _write_customers(pair: Pair, keyring_edits: PiiEdits) -> None:
    """Every customer's plain fields plus what ``keyring_edits(keyring, i, row_id)``
    gives for its PII, SEED_CHUNK customers to a transaction, into HQ's file."""
    keystore = open_keystore(pair.hq.data_dir / "hq.keystore", pair.passphrase)
    store = await SqliteStore.open(pair.db_path(pair.hq), node_id="hq", clock=Clock(wall_clock_ms, 60_000))
    keyring = Keyring(store, keystore, hq="hq")
    try:
        batch: list[Edit] = []
        for i, row_id in enumerate(pair.ids):
            batch += [Edit("customers", row_id, f, value=v) for f, v in plain_values(i, pair.homes)]
            batch += await keyring_edits(keyring, i, row_id)
            if (i + 1) % SEED_CHUNK == 0:
                await store.write_local(batch)
                batch = []
        if batch:
            await store.write_local(batch)
    finally:
        await store.close()


async def _plaintext(keyring: Keyring, i: int, row_id: str) -> list[Edit]:
    return [Edit("customers", row_id, f, value=v.encode()) for f, v in person(i).items()]


async def _sealed(keyring: Keyring, i: int, row_id: str) -> list[Edit]:
    return await keyring.seal_edits(row_id, dict(plain_values(i, HOMES)), person(i))


async def seed_unsealed(pair: Pair) -> None:
    await _write_customers(pair, _plaintext)


async def seed_sealed(pair: Pair) -> None:
    await _write_customers(pair, _sealed)


async def check_held(pair: Pair, *, sealed: bool) -> list[str]:
    """What is wrong with what the branch holds (empty when its file holds no
    customer of branch-b's and its API answers 404 for a sample of them) and, if
    ``sealed``, opens (a sample of its own, to the values HQ sealed)."""
    problems = []
    theirs = [row_id for i, row_id in enumerate(pair.ids) if not pair.is_own(i)]
    conn = connect(pair.db_path(pair.branch))
    (held,) = conn.execute("SELECT count(*) FROM customers WHERE row_id IN (SELECT value FROM json_each(?))",
                           (json.dumps(theirs),)).fetchone()
    conn.close()
    if held:
        problems.append(f"{BRANCH} holds {held:,} of branch-b's {len(theirs):,} customers")
    for i in random.Random(5).sample(range(len(pair.ids)), min(SAMPLE, len(pair.ids))):
        response = await pair.branch.client.get(f"/customers/{pair.ids[i]}")
        if not pair.is_own(i):
            if response.status_code != 404:
                problems.append(f"customer {i} (branch-b's): {BRANCH} answered {response.status_code}, expected 404")
            continue
        if not sealed:
            continue
        card = response.json()
        expected = person(i)
        if (card.get("name"), card.get("phone")) != (expected["name"], expected["phone"]):
            problems.append(f"customer {i} ({BRANCH}'s) did not open: unavailable {card.get('unavailable')}")
    return problems


async def measure(customers: int, seed: Callable[[Pair], Awaitable[None]]) -> tuple[float, dict[str, int], int, list[str]]:
    """The timed sync of a pair whose HQ ``seed`` fills with ``customers`` customers, half each branch's."""
    async with seeded_pair(customers, seed, enroll=True, homes=HOMES) as pair:
        took_s, report = await timed_sync(pair.branch)
        await pair.branch.sync_now()  # not timed: hands HQ the key records the branch's key pass shredded
        problems = await check_converged(pair)
        problems += await check_held(pair, sealed=seed is seed_sealed)
        keys = key_states(pair.db_path(pair.branch))
    return took_s, report, keys, problems


async def run(customers: int) -> int:
    """``customers``: how many branch-a pulls (HQ holds twice as many)."""
    plain_s, plain_report, _, plain_problems = await measure(2 * customers, seed_unsealed)
    sealed_s, sealed_report, sealed_keys, sealed_problems = await measure(2 * customers, seed_sealed)
    ratio = sealed_s / plain_s
    print(f"sealed initial sync: {BRANCH} pulls its {customers:,} of HQ's {2 * customers:,} customers "
          f"(8 plain fields, name, phone) from HQ")
    print(f"  unsealed (baseline)  {plain_s:>8.2f} s   {plain_report['pulled']:>10,} field changes pulled")
    print(f"  sealed               {sealed_s:>8.2f} s   {sealed_report['pulled']:>10,} field changes pulled "
          f"({customers:,} wrapped data keys in the rows, {customers:,} blind indexes, "
          f"{sealed_keys:,} key-record fields)")
    print(f"  ratio sealed/unsealed {ratio:>7.2f} x (target <= {TARGET_RATIO}x: {verdict(ratio <= TARGET_RATIO)})")
    if not plain_problems and not sealed_problems:
        print(f"  converged, both runs: {BRANCH}'s digests equal HQ's digests of its scope; it holds its "
              f"{customers:,} customers and none of branch-b's, and the sealed run opens a sample of its own")
    for problem in plain_problems + sealed_problems:
        print(f"  FAILED: {problem}")
    return 1 if plain_problems or sealed_problems else 0


if __name__ == "__main__":
    bench_main(run, __doc__)
