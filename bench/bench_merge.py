"""Merge throughput: HQ applies 1,000,000 field changes arriving as wire batches.

    python3 run.py bench merge         # or: .venv/bin/python bench/bench_merge.py [--customers N]

Each batch is decoded from its frame, validated, merged field by field against
the stored rows and stored with its local sequence numbers and the link's
acknowledgement, in one transaction per batch: the path of a real push.

The floor, measured in the same run on the same disk: stdlib sqlite3
``executemany`` of the same (row, field, value, stamp, origin) tuples as an
UPSERT that keeps the newer stamp, one transaction per batch, same pragmas.
Ratio = Outpost's rate / the floor's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import FIELDS, customer_ids, wire_changes  # noqa: E402
from sync.changes import Change, PushBatch, decode_frame, encode_frame  # noqa: E402
from sync.hlc import Clock  # noqa: E402
from sync.responder import Responder  # noqa: E402
from sync.store.sqlite import SqliteStore, wall_clock_ms  # noqa: E402

BATCH = 5_000


def floor(path: Path, changes: list[Change]) -> float:
    """Seconds for the plain-SQLite UPSERT of the same rows, one transaction per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "cache_size = -32768"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(
        "CREATE TABLE fields (row_id TEXT, field TEXT, value BLOB, hlc INTEGER, origin TEXT, "
        "PRIMARY KEY (row_id, field)) WITHOUT ROWID"
    )
    rows = [(c.row_id, c.field, bytes(c.value), c.hlc, c.origin) for c in changes]
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO fields VALUES (?, ?, ?, ?, ?) ON CONFLICT (row_id, field) DO UPDATE SET "
            "value = excluded.value, hlc = excluded.hlc, origin = excluded.origin "
            "WHERE (excluded.hlc, excluded.origin) > (fields.hlc, fields.origin)",
            rows[i : i + BATCH],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def outpost(path: Path, changes: list[Change]) -> tuple[float, int]:
    """Seconds for HQ to take the changes as pushes through its responder; rows stored."""
    hq = await SqliteStore.create(path, node_id="hq", role="hq", clock=Clock(wall_clock_ms, 60_000))
    await hq.enroll("branch-a", parent="hq", role="branch")
    responder = Responder(hq)
    frames = []
    for n, i in enumerate(range(0, len(changes), BATCH)):
        batch = PushBatch(
            node="branch-a", store_id="bench", since=0, from_seq=n, to_seq=n + 1,
            changes=changes[i : i + BATCH], more=i + BATCH < len(changes),
        )
        frames.append(encode_frame(batch))
    start = time.perf_counter()
    for frame in frames:
        decode_frame(await responder.handle("push", frame), max_body_bytes=1 << 26)
    elapsed = time.perf_counter() - start
    rows = (await hq.counts())["customers"]
    await hq.close()
    return elapsed, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    ids = customer_ids(args.customers, now_ms=wall_clock_ms())
    changes = wire_changes(ids, origin="branch-a", first_stamp_ms=wall_clock_ms() - 3_600_000)
    n = len(changes)
    with tempfile.TemporaryDirectory() as d:
        floor_s = floor(Path(d) / "floor.db", changes)
        ours_s, rows = asyncio.run(outpost(Path(d) / "hq.db", changes))
    assert rows == args.customers, f"stored {rows} customers, expected {args.customers}"
    floor_rate, ours_rate = n / floor_s, n / ours_s
    print(f"merge: {args.customers:,} customers x {FIELDS} fields = {n:,} field changes in batches of {BATCH:,}")
    print(f"  floor  (sqlite3 executemany UPSERT)   {floor_rate:>10,.0f} changes/s  ({floor_s:.2f} s)")
    print(f"  outpost (decode+validate+merge+log)   {ours_rate:>10,.0f} changes/s  ({ours_s:.2f} s)")
    print(f"  ratio outpost/floor                   {ours_rate / floor_rate:>10.2f}   (target >= 0.50)")


if __name__ == "__main__":
    main()
