"""Synthetic customers for the benchmarks: 10 replicated fields each.

Eight plain fields and two PII ones: random bytes the size of an AES-GCM
sealed name and phone number, so value sizes are those of real rows, or (for
`bench_sealed_sync`) a made-up name and phone number to seal for real.

Each customer has a home branch (``homes``, half branch-a's and half
branch-b's by default). Replication is scoped: HQ sends branch-a only the
customers whose home it is, so a benchmark that means "the branch pulls N
customers" seeds them all at branch-a, or seeds 2N half each.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import msgspec

from crypto.seal import MIN_SEALED_BYTES
from sync.changes import Change
from sync.edits import Edit
from sync.hlc import pack
from sync.ids import new_ulid
from sync.merge import encode_value

FIELDS = 10
#: the home branches customers are spread over, customer ``i`` at ``homes[i % len(homes)]``:
#: by default half each, branch-a holding the odd-numbered ones
HOMES: tuple[str, ...] = ("branch-b", "branch-a")


def customer_ids(n: int, *, now_ms: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [new_ulid(now_ms - n + i, rnd.randbytes(10)) for i in range(n)]


def home(i: int, homes: tuple[str, ...] = HOMES) -> str:
    """The home branch of customer number ``i``."""
    return homes[i % len(homes)]


def plain_values(i: int, homes: tuple[str, ...] = HOMES) -> list[tuple[str, object]]:
    """The 8 fields of customer number ``i`` that hold no PII."""
    return [
        ("home_branch", home(i, homes)),
        ("star_level", i % 8),
        ("segment", ("gold", "silver", "bronze")[i % 3]),
        ("arpu_fen", 5_000 + i % 20_000),
        ("status", "active"),
        ("assigned_agent", f"agent-{i % 300:03d}"),
        ("account_manager", f"am-{i % 50:02d}"),
        ("sales_rep", f"rep-{i % 120:03d}"),
    ]


def customer_values(i: int, homes: tuple[str, ...] = HOMES) -> list[tuple[str, object]]:
    """The 10 field values of customer number ``i``: name and phone as random bytes
    the size of their sealed form (see `person` for plaintext ones)."""
    return [*plain_values(i, homes), ("name", os.urandom(MIN_SEALED_BYTES + 12)), ("phone", os.urandom(MIN_SEALED_BYTES + 11))]


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = "伟芳娜敏静磊洋艳勇军杰娟涛明超"


def person(i: int) -> dict[str, str]:
    """A made-up name (3-4 characters) and mobile number for customer ``i``."""
    given = _GIVEN[i % 15] + ("" if i % 3 else _GIVEN[(i * 7) % 15])
    return {"name": _SURNAMES[i % 20] + _GIVEN[(i // 20) % 15] + given, "phone": f"13{i % 10}{i * 7_919 % 10**8:08d}"}


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


def edits_for(ids: list[str], start: int = 0, homes: tuple[str, ...] = HOMES) -> Iterator[list[Edit]]:
    """Local edits creating these customers, one write per customer."""
    for i, row_id in enumerate(ids, start):
        yield [Edit("customers", row_id, f, value=v) for f, v in customer_values(i, homes)]
