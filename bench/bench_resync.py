"""Resync after a partition: HQ and branch-a each changed 10% of 100,000 customers.

    .venv/bin/python bench/bench_resync.py [--customers N]    # or: python3 run.py bench

Setup (not timed): the converged pair of bench_initial_sync (HQ seeded with
every customer at home at branch-a, so all of them are in the branch's scope;
one full sync). The nodes stop; while apart each side changes 10% of the customers,
written straight into its file: half of each side's customers are also changed
by the other side, on different fields (HQ: segment, arpu_fen; branch:
assigned_agent, sales_rep), and on a quarter (2,500 at full size) both sides
also set star_level: real same-field conflicts. HQ writes later on half of
those, branch-a on the other half. The fields branch-a changes are ones its roles
may write, so HQ refuses none of them. The nodes restart.

Timed: one ``POST /sync/now`` on branch-a, which pushes its changes, then pulls
HQ's. Target: under 2 s.

Baselines from the same run: stdlib sqlite3 moving the changed rows both ways
(SELECT the rows changed on each side, ``INSERT OR REPLACE`` them into a copy of
the other side's file, one transaction per direction, same pragmas; no merging),
and the initial full sync that built the pair.

Afterwards branch-a's digests must equal HQ's digests of its scope
(``GET /status/digest?peer=branch-a``), HQ must have refused nothing and purged
nothing at the branch, and each same-field conflict must hold the later write on
both nodes, or the script exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    BRANCH,
    Pair,
    bench_main,
    check_converged,
    connect,
    seeded_pair,
    timed_sync,
    verdict,
    write_local,
)
from sync.edits import Edit  # noqa: E402

TARGET_S = 2.0
WRITE_CHUNK = 500  # customers per local write
HQ_STAR, BRANCH_STAR = 7, 3
#: every customer at home at the branch, so every change on either side is in its scope
HOMES = (BRANCH,)


def plan(ids: list[str]) -> dict[str, list[str]]:
    """Which customers each side changes: 10% each, half of them shared; a quarter both sides star."""
    k = len(ids) // 10
    shared = ids[k // 2 : k]
    return {
        "hq": ids[:k],
        "branch": ids[k // 2 : k + k // 2],
        "hq_later": shared[: k // 8],  # same field: HQ writes after branch-a
        "branch_later": shared[k // 8 : k // 4],  # same field: branch-a writes after HQ
    }


def writes(rows: list[str], fields: dict[str, object]) -> list[list[Edit]]:
    edits = [Edit("customers", r, f, value=v) for r in rows for f, v in fields.items()]
    step = WRITE_CHUNK * len(fields)
    return [edits[i : i + step] for i in range(0, len(edits), step)]


async def diverge(pair: Pair, p: dict[str, list[str]]) -> None:
    """Both sides' edits while apart (the nodes are stopped); HQ first, then branch-a, then HQ's later ones."""
    hq, branch = pair.db_path(pair.hq), pair.db_path(pair.branch)
    await write_local(hq, "hq", writes(p["hq"], {"segment": "platinum", "arpu_fen": 99_000}))
    await write_local(hq, "hq", writes(p["branch_later"], {"star_level": HQ_STAR}))
    await write_local(branch, "branch-a", writes(p["branch"], {"assigned_agent": "agent-b9", "sales_rep": "rep-b9"}))
    await write_local(branch, "branch-a", writes(p["branch_later"] + p["hq_later"], {"star_level": BRANCH_STAR}))
    await asyncio.sleep(0.002)  # a later wall clock millisecond than branch-a's last stamp
    await write_local(hq, "hq", writes(p["hq_later"], {"star_level": HQ_STAR}))


def high_seq(path: Path) -> int:
    conn = connect(path)
    (seq,) = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    conn.close()
    return int(seq)


def baseline(pair: Pair, marks: dict[str, int]) -> float:
    """Seconds for sqlite3 to move each side's changed rows into a copy of the other's file."""
    copies = {}
    for node in (pair.hq, pair.branch):
        copies[node.site] = pair.workdir / f"baseline-{node.site}.db"
        shutil.copyfile(pair.db_path(node), copies[node.site])
    start = time.perf_counter()
    for src, dst in (("branch-a", "hq"), ("hq", "branch-a")):
        source, target = connect(copies[src]), connect(copies[dst])
        rows = source.execute("SELECT * FROM customers WHERE _seq > ?", (marks[src],)).fetchall()
        target.execute("BEGIN IMMEDIATE")
        target.executemany(f"INSERT OR REPLACE INTO customers VALUES ({', '.join('?' * len(rows[0]))})", rows)
        target.execute("COMMIT")
        source.close()
        target.close()
    return time.perf_counter() - start


def stars(pair: Pair, rows: list[str]) -> set[tuple[str, int]]:
    """The distinct star levels these customers hold on each node (read from its file)."""
    out = set()
    for node in (pair.hq, pair.branch):
        conn = connect(pair.db_path(node))
        query = "SELECT star_level FROM customers WHERE row_id IN (SELECT value FROM json_each(?))"
        out |= {(node.site, level) for (level,) in conn.execute(query, (json.dumps(rows),))}
        conn.close()
    return out


async def run(customers: int) -> int:
    async with seeded_pair(customers, homes=HOMES) as pair:
        full_s, _ = await timed_sync(pair.branch)
        problems = await check_converged(pair)
        await pair.stop()
        marks = {n.site: high_seq(pair.db_path(n)) for n in (pair.hq, pair.branch)}
        p = plan(pair.ids)
        await diverge(pair, p)
        base_s = baseline(pair, marks)
        await pair.start()
        took_s, report = await timed_sync(pair.branch)
        problems += await check_converged(pair)
        hq_later, branch_later = stars(pair, p["hq_later"]), stars(pair, p["branch_later"])
    if report["refused_upstream"] or report["refused_here"] or report["purged"]:
        problems.append(f"refused {report['refused_upstream']:,} at HQ and {report['refused_here']:,} at {BRANCH}, "
                        f"purged {report['purged']:,} at {BRANCH}: the plan left the branch's scope")
    if hq_later != {("hq", HQ_STAR), ("branch-a", HQ_STAR)}:
        problems.append(f"same-field conflicts written later at HQ hold {sorted(hq_later)}")
    if branch_later != {("hq", BRANCH_STAR), ("branch-a", BRANCH_STAR)}:
        problems.append(f"same-field conflicts written later at branch-a hold {sorted(branch_later)}")
    k, both = len(p["hq"]), len(p["hq_later"]) + len(p["branch_later"])
    print(f"resync: {customers:,} customers, all at home at {BRANCH}; {k:,} changed at HQ and {k:,} at branch-a while apart, "
          f"{k // 2:,} on both sides ({both:,} with the same field)")
    print(f"  pushed / pulled        {report['pushed']:>7,} / {report['pulled']:,} field changes "
          f"({report['push_batches']} batches / {report['pull_pages']} pages)")
    print(f"  conflicts resolved     {report['conflicts']:>7,}")
    print(f"  wall time              {took_s:>7.2f} s (target < {TARGET_S:.0f} s: {verdict(took_s < TARGET_S)})")
    print(f"  baseline (sqlite3 SELECT changed rows + INSERT OR REPLACE both ways)  {base_s:.2f} s;"
          f" ratio outpost/baseline {took_s / base_s:.1f} x")
    print(f"  initial full sync of the same pair  {full_s:.2f} s;"
          f" ratio resync/full {took_s / full_s:.2f}")
    if not problems:
        print(f"  converged: {BRANCH}'s digests equal HQ's digests of its scope; "
              f"all {both:,} same-field conflicts hold the later write on both nodes")
    for problem in problems:
        print(f"  FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    bench_main(run, __doc__)
