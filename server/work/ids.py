"""Name-based ids of the rows the work rules make.

Two nodes that run the same rule on the same rows offline must make the same
row, so that after sync it is one task, not two: its id is a UUIDv5 of the
rule's name and what the decision is about (a customer and a period, a result,
a work order), never of the node or a random draw. UUIDs in canonical form are
row ids `sync.ids` accepts.
"""

from __future__ import annotations

import uuid

#: the namespace of every work-rule id (a fixed UUID: changing it changes every id)
NAMESPACE = uuid.UUID("6f0d3c52-8a7e-5b1c-9d4e-2a6b7c8d9e0f")


def rule_row_id(rule: str, *parts: object) -> str:
    """The id of the row ``rule`` makes for ``parts`` (ids, period keys):
    ``rule_row_id("care_cadence", customer_id, "2025-03")``."""
    if not parts:
        raise ValueError("a rule row id names what it is about")
    name = "\x1f".join([rule, *(str(p) for p in parts)])
    return str(uuid.uuid5(NAMESPACE, name))
