"""Complaint tickets: ownership, deadlines and repeat complaints.

The first responder (who opened the ticket) owns it until it is archived. A
handover changes who works it (``assignee``), never who owns it
(``first_responder``). Only the owner or a supervisor may hand a ticket over or
archive it; an archived (or cancelled) ticket can do neither again
(`ComplaintStateError`, which the API answers with 409).

A complaint by the same customer in the same category within 30 days of an
earlier one is a repeat: ``repeat_of`` names the latest such ticket.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from server.work.calendar import HOUR_MS, WorkCalendar
from server.work.errors import ComplaintStateError, NotAComplaintError, NotTicketOwnerError
from server.work.tasks import Row, advance, new_task
from sync.edits import Edit

REPEAT_WINDOW_MS = 30 * 24 * HOUR_MS
DEFAULT_DEADLINE_HOURS = 48
DEFAULT_WARN_BEFORE_MS = 8 * HOUR_MS
#: roles that may hand over or archive any ticket of their scope
SUPERVISING_ROLES = frozenset({"supervisor", "hq_admin", "partner_supervisor"})
DeadlineState = Literal["ok", "warning", "overdue"]
_FINAL = frozenset({"archived", "cancelled"})


def open_complaint(task_id: str, customer_id: str, category: str, responder: str, *, site: str | None,
                   now_ms: int, calendar: WorkCalendar, recent: Iterable[Row],
                   deadline_hours: int = DEFAULT_DEADLINE_HOURS) -> list[Edit]:
    """A new complaint ticket owned by ``responder`` (its first responder, who
    also works it first), due ``deadline_hours`` from now. ``recent``: the
    customer's complaint tasks, to flag a repeat."""
    del calendar  # the deadline is in hours of the clock; kept for a working-hours rule
    earlier = repeat_of(customer_id, category, recent, now_ms=now_ms, exclude=task_id)
    return new_task(
        task_id, customer_id=customer_id, kind="complaint", category=category, first_responder=responder,
        assignee=responder, status="assigned", site=site, created_at_ms=now_ms, due_at_ms=now_ms,
        deadline_at_ms=now_ms + deadline_hours * HOUR_MS, repeat_of=earlier,
    )


def repeat_of(customer_id: str, category: str, recent: Iterable[Row], *, now_ms: int,
              exclude: str | None = None) -> str | None:
    """The latest complaint of the customer in ``category`` opened within 30 days
    before ``now_ms`` (ties: the greatest id), or None."""
    candidates = [
        (t["created_at_ms"], t["row_id"]) for t in recent
        if not t.get("deleted") and t.get("kind") == "complaint" and t.get("customer_id") == customer_id
        and t.get("category") == category and t.get("row_id") != exclude and t.get("created_at_ms") is not None
        and now_ms - REPEAT_WINDOW_MS <= t["created_at_ms"] <= now_ms
    ]
    return max(candidates)[1] if candidates else None


def _check(task: Row, action: str, by_user: str, by_role: str) -> None:
    if task.get("kind") != "complaint":
        raise NotAComplaintError(task["row_id"], task.get("kind"))
    state = "deleted" if task.get("deleted") else task.get("status") or "open"
    if state in _FINAL or state == "deleted":
        raise ComplaintStateError(task["row_id"], state, "handed over" if action == "hand over" else "archived")
    owner = task.get("first_responder")
    if by_role not in SUPERVISING_ROLES and by_user != owner:
        raise NotTicketOwnerError(task["row_id"], action)


def hand_over(task: Row, to_user: str, *, by_user: str, by_role: str, now_ms: int) -> list[Edit]:
    """Give the ticket to ``to_user`` to work; the owner stays. Raises
    `ComplaintStateError` (archived), `NotTicketOwnerError`, `NotAComplaintError`."""
    del now_ms
    _check(task, "hand over", by_user, by_role)
    edits = [] if task.get("assignee") == to_user else [Edit("tasks", task["row_id"], "assignee", "set", to_user)]
    if edits and task.get("assignee"):  # so the one it was taken from sees it leave their inbox
        edits.append(Edit("tasks", task["row_id"], "handed_from", "set", task["assignee"]))
    if task.get("first_responder") is None:  # a ticket opened without one: the first to act owns it
        edits.append(Edit("tasks", task["row_id"], "first_responder", "set", by_user))
    return edits


def archive_complaint(task: Row, *, by_user: str, by_role: str, now_ms: int) -> list[Edit]:
    """Archive the ticket (the end of its ownership). Raises as `hand_over`."""
    del now_ms
    _check(task, "archive", by_user, by_role)
    return advance(task, "archived")


def deadline_state(task: Row, now_ms: int, *, warn_before_ms: int = DEFAULT_WARN_BEFORE_MS) -> DeadlineState:
    """``overdue`` past the deadline, ``warning`` within ``warn_before_ms`` of it,
    else ``ok`` (also for a ticket without a deadline, or closed: done, archived
    or cancelled)."""
    deadline = task.get("deadline_at_ms")
    if deadline is None or task.get("deleted") or task.get("status") in ("done", "archived", "cancelled"):
        return "ok"
    if now_ms > deadline:
        return "overdue"
    if now_ms >= deadline - warn_before_ms:
        return "warning"
    return "ok"
