"""Synthetic customers for the benchmarks: 10 replicated fields each.

Eight plain fields and two sealed ones (random bytes the size of an AES-GCM
sealed name and phone number), so value sizes are those of real rows.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import msgspec

from sync.changes import Change
from sync.edits import Edit
from sync.hlc import pack
from sync.ids import new_ulid
from sync.merge import encode_value

FIELDS = 10


def customer_ids(n: int, *, now_ms: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [new_ulid(now_ms - n + i, rnd.randbytes(10)) for i in range(n)]


def customer_values(i: int) -> list[tuple[str, object]]:
    """The 10 field values of customer number ``i``."""
    return [
        ("home_branch", "branch-a" if i % 2 else "branch-b"),
        ("star_level", i % 8),
        ("segment", ("gold", "silver", "bronze")[i % 3]),
        ("arpu_fen", 5_000 + i % 20_000),
        ("status", "active"),
        ("assigned_agent", f"agent-{i % 300:03d}"),
        ("account_manager", f"am-{i % 50:02d}"),
        ("sales_rep", f"rep-{i % 120:03d}"),
        ("name", os.urandom(1 + 12 + 12 + 16)),
        ("phone", os.urandom(1 + 12 + 11 + 16)),
    ]


def wire_changes(ids: list[str], *, origin: str, first_stamp_ms: int) -> list[Change]:
    """One change per field per customer, stamped in increasing order."""
    out: list[Change] = []
    stamp = pack(first_stamp_ms)
    raw = msgspec.Raw
    for i, row_id in enumerate(ids):
        for field, value in customer_values(i):
            stamp += 1
            out.append(Change("customers", row_id, field, raw(encode_value(value)), stamp, origin))
    return out


def edits_for(ids: list[str], start: int = 0) -> Iterator[list[Edit]]:
    """Local edits creating these customers, one write per customer."""
    for i, row_id in enumerate(ids, start):
        yield [Edit("customers", row_id, f, value=v) for f, v in customer_values(i)]
