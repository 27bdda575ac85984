"""Task rows as the work rules read and make them.

Rows are the store's plain dicts (`row_id` and field values). A rule makes a
task by setting its fields under a name-based id (`server.work.ids`), and moves
a task's status only forward along the schema's lattice (open < assigned <
in_progress < done < archived; cancelled is the top), so what two nodes decide
offline merges instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from server.work.ids import rule_row_id
from sync.edits import Edit
from sync.schema import COLLECTIONS

Row = Mapping[str, Any]

#: the status lattice, in order
STATUS_ORDER: tuple[str, ...] = COLLECTIONS["tasks"].fields["status"].lattice or ()
CLOSED: frozenset[str] = frozenset({"done", "archived", "cancelled"})
REVISIT_KINDS: frozenset[str] = frozenset({"revisit_installation", "revisit_repair"})
#: revisits: deadline after the work order's return, attempts, spacing
REVISIT_WINDOW_MS = 48 * 3_600_000
REVISIT_MAX_ATTEMPTS = 3
REVISIT_SPACING_MS = 3_600_000


def live(rows: Iterable[Row]) -> list[Row]:
    """The rows not deleted."""
    return [r for r in rows if not r.get("deleted")]


def is_closed(task: Row) -> bool:
    return bool(task.get("deleted")) or task.get("status") in CLOSED


def advance(task: Row, status: str) -> list[Edit]:
    """The edit moving ``task`` to ``status``, or none when it is there or beyond."""
    current = task.get("status") or "open"
    if STATUS_ORDER.index(status) <= STATUS_ORDER.index(current):
        return []
    return [Edit("tasks", task["row_id"], "status", "set", status)]


def new_task(row_id: str, **fields: Any) -> list[Edit]:
    """The edits that make task ``row_id`` with ``fields`` (None values are left
    unset), in a fixed order, so two nodes make the same edits."""
    return [Edit("tasks", row_id, name, "set", value) for name, value in sorted(fields.items()) if value is not None]


def revisit_task(order_ref: str, customer_id: str, kind: str, returned_at_ms: int, *, site: str | None,
                 now_ms: int, assignee: str | None = None) -> list[Edit]:
    """A revisit after an installation or repair work order returned at
    ``returned_at_ms``: deadline 48 hours later; at most 3 attempts at least an
    hour apart (`server.work.offer`), then archived (`server.work.cadence`). Its
    id is a name of the order, so the same order returned at two nodes is one
    task."""
    if kind not in REVISIT_KINDS:
        raise ValueError(f"a revisit is one of {sorted(REVISIT_KINDS)}, not `{kind}`")
    return new_task(
        rule_row_id("revisit", kind, order_ref),
        customer_id=customer_id, kind=kind, rule="revisit", order_ref=order_ref, returned_at_ms=returned_at_ms,
        due_at_ms=returned_at_ms, deadline_at_ms=returned_at_ms + REVISIT_WINDOW_MS, site=site,
        assignee=assignee, status="assigned" if assignee else "open", created_at_ms=now_ms,
    )
