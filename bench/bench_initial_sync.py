"""Initial sync: a new branch pulls 100,000 customers (10 fields each) from HQ.

    .venv/bin/python bench/bench_initial_sync.py [--customers N]    # or: python3 run.py bench

Replication is scoped (HQ sends a branch only the customers at home there), so
HQ is seeded with 100,000 customers all at home at branch-a: the branch's scope
admits every one of them, and every field of the workload is one its roles see.
(Seeding 200,000, half each branch's, would also time HQ passing over the other
half; seeding only the branch's keeps the seeding time and the figure
comparable with the runs before scoping, in which HQ held these same rows.)

HQ and branch-a run as `outpost serve` processes on loopback; HQ's file is seeded
directly (not timed). Timed: one ``POST /sync/now`` on the empty branch, which
pulls every field state in its scope page by page over HTTP and applies each
page in one transaction. Targets: under 8 s, and under 300 MB peak RSS per
process.

The baseline, measured in the same run on the same disk: stdlib sqlite3 reads
the rows of HQ's customers table at home at branch-a with one SELECT and
``executemany``-inserts them into a fresh file with the same table, one
transaction per page's worth of rows, same pragmas. Ratio = Outpost's time / the
baseline's time.

Afterwards the branch's digests must equal HQ's digests of the branch's scope
(``GET /status/digest?peer=branch-a``), HQ must hold every customer and the
branch every one at home there, and the branch must have pulled each of their
fields once, or the script exits non-zero.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    BRANCH,
    bench_main,
    check_converged,
    connect,
    key_states,
    seeded_pair,
    timed_sync,
    verdict,
)
from bench.workload import FIELDS  # noqa: E402

PAGE_ROWS = 5_000 // FIELDS  # rows per pull page at the default page_limit
TARGET_S = 8.0
TARGET_RSS_MB = 300.0


#: every customer at home at the branch, so it pulls all of them
HOMES = (BRANCH,)


def baseline(source: Path, target: Path) -> float:
    """Seconds for a bare sqlite3 copy of the branch's customers into a fresh file."""
    src, dst = connect(source), connect(target)
    for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'customers' AND sql IS NOT NULL"):
        dst.execute(sql)
    start = time.perf_counter()
    rows = src.execute("SELECT * FROM customers WHERE home_branch = ?", (BRANCH,)).fetchall()
    marks = ", ".join("?" * len(rows[0]))
    for i in range(0, len(rows), PAGE_ROWS):
        dst.execute("BEGIN IMMEDIATE")
        dst.executemany(f"INSERT INTO customers VALUES ({marks})", rows[i : i + PAGE_ROWS])
        dst.execute("COMMIT")
    elapsed = time.perf_counter() - start
    src.close()
    dst.close()
    return elapsed


async def run(customers: int, homes: tuple[str, ...] = HOMES) -> int:
    async with seeded_pair(customers, homes=homes) as pair:
        base_s = baseline(pair.db_path(pair.hq), pair.workdir / "baseline.db")
        took_s, report = await timed_sync(pair.branch)
        rss = {n.site: n.peak_rss_mb() for n in (pair.hq, pair.branch)}
        problems = await check_converged(pair)
        keys_pulled = key_states(pair.db_path(pair.branch))
        own = len(pair.own_ids)
    pulled = report["pulled"]
    expected = own * FIELDS + keys_pulled
    held = f"{own:,} customers" if own == customers else f"its {own:,} of HQ's {customers:,} customers"
    print(f"initial sync: {BRANCH} pulls {held} x {FIELDS} fields from HQ over loopback HTTP")
    print(f"  field changes pulled   {pulled:>10,}   ({report['pull_pages']} pages, applied {report['applied']:,}; "
          f"{keys_pulled} of them key records)")
    print(f"  wall time              {took_s:>10.2f} s (target < {TARGET_S:.0f} s: {verdict(took_s < TARGET_S)})")
    print(f"  throughput             {pulled / took_s:>10,.0f} changes/s")
    for site, mb in rss.items():
        print(f"  peak RSS {site:<13} {mb:>10.0f} MB (target < {TARGET_RSS_MB:.0f} MB: {verdict(mb < TARGET_RSS_MB)})")
    print(f"  baseline (sqlite3 SELECT + executemany copy of the rows, {PAGE_ROWS} rows/txn)  {base_s:.2f} s")
    print(f"  ratio outpost/baseline {took_s / base_s:>10.1f} x")
    if not problems:
        print(f"  converged: {BRANCH}'s digests equal HQ's digests of its scope; it holds {own:,} customers")
    for problem in problems:
        print(f"  FAILED: {problem}")
    if pulled != expected:
        print(f"  FAILED: pulled {pulled:,} changes, expected {expected:,} ({keys_pulled} of them key records)")
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    bench_main(run, __doc__)
