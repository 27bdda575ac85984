"""Identifier types and ULID generation.

Rows are created at any node, offline, so their ids must be unique without
coordination: ULIDs (48-bit millisecond time + 80 random bits, Crockford base32)
or UUIDv7 strings. Time-ordered ids also keep SQLite's B-tree inserts local.
Randomness is injected, like time: pass ``os.urandom(10)`` at the edge.
"""

from __future__ import annotations

from typing import Annotated, NewType

from msgspec import Meta

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

ROW_ID_PATTERN = r"^([0-9A-HJKMNP-TV-Z]{26}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,62}$"

#: A row id: a ULID, or a UUID (v7 recommended) in its canonical text form.
RowId = Annotated[
    str,
    Meta(
        pattern=ROW_ID_PATTERN,
        description="ULID or UUID (v7), created at any node",
        examples=["01JD0QK2M6X3Z1V9A8B7C6D5E4"],
    ),
]

#: A node id: lowercase letters, digits, dots and dashes (``hq``, ``branch-a``, ``branch-a.m17``).
NodeIdStr = Annotated[
    str,
    Meta(pattern=NODE_ID_PATTERN, description="node id", examples=["branch-a"]),
]

# The sync wire checks these formats once per distinct id (`sync.protocol`), not
# once per change in the decoder: a batch repeats each row id once per field.
WireRowId = Annotated[str, Meta(min_length=1, max_length=36, extra_json_schema={"pattern": ROW_ID_PATTERN})]
WireNodeId = Annotated[str, Meta(min_length=1, max_length=63, extra_json_schema={"pattern": NODE_ID_PATTERN})]

NodeId = NewType("NodeId", str)


def new_ulid(now_ms: int, entropy: bytes) -> str:
    """A ULID from a millisecond time and 10 random bytes."""
    if len(entropy) != 10:
        raise ValueError("a ULID takes exactly 10 bytes of entropy")
    if not 0 <= now_ms < 1 << 48:
        raise ValueError("now_ms out of the ULID's 48-bit range")
    value = (now_ms << 80) | int.from_bytes(entropy, "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))
