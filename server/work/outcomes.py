"""What a recorded call or visit result causes.

`result_edits` returns every edit a result leads to, except the result row
itself (the caller writes that, in the same `write_local`):

==========================================  ======================================
outcome                                     effect
==========================================  ======================================
no_answer, powered_off, out_of_area, busy   another attempt at another time slot:
                                            ``due_at_ms`` set to the first hour not
                                            tried yet for this task, at least the
                                            retry spacing on, inside the calling
                                            window, on a day under the daily cap;
                                            when the attempts are used up (or a
                                            revisit's deadline comes first):
                                            archived
suspended, vacant_number                    invalid number: task done, no retry,
                                            customer tagged ``invalid_number``
refused                                     ``refused_marketing`` added to the
                                            customer's suppression; task done
callback_requested                          a task at the requested time
                                            (`callback_edits`); this one done
connected, success                          done
no outcome (a visit)                        done
==========================================  ======================================

Every call outcome counts an attempt (``attempts`` is a per-node counter, so
attempts made at two sites add up). A complaint ticket's status is never moved
by a result: only its owner or a supervisor archives it (`server.work.complaints`).
"""

from __future__ import annotations

from collections.abc import Iterable

from server.work.calendar import HOUR_MS, WorkCalendar
from server.work.ids import rule_row_id
from server.work.offer import (
    DAILY_CAP,
    INVALID_NUMBER_TAG,
    attempts_on_day,
    in_window,
    max_attempts_of,
    next_day_window,
    spacing_ms_of,
    window_of,
    window_open_at,
)
from server.work.tasks import REVISIT_KINDS, Row, advance, new_task
from sync.edits import Edit

RETRY_OUTCOMES = frozenset({"no_answer", "powered_off", "out_of_area", "busy"})
INVALID_OUTCOMES = frozenset({"suspended", "vacant_number"})
DONE_OUTCOMES = frozenset({"connected", "success"})
#: how far ahead a retry slot is looked for before giving up on "another hour"
_SLOT_SEARCH_HOURS = 24 * 8


def result_edits(result_id: str, result: Row, task: Row | None, customer: Row, campaign: Row | None,
                 results: Iterable[Row], *, now_ms: int, calendar: WorkCalendar, site: str,
                 daily_cap: int = DAILY_CAP) -> list[Edit]:
    """Everything recording ``result`` (as ``result_id``) causes, except the result
    row itself (see the module docstring). ``results``: the customer's results,
    with or without this one."""
    outcome = result.get("outcome")
    customer_id = customer["row_id"]
    this = {**result, "row_id": result_id, "customer_id": customer_id,
            "recorded_at_ms": result.get("recorded_at_ms") or now_ms}
    history = [r for r in results if r.get("row_id") != result_id] + [this]
    edits: list[Edit] = []
    if outcome in INVALID_OUTCOMES and INVALID_NUMBER_TAG not in (customer.get("tags") or ()):
        edits.append(Edit("customers", customer_id, "tags", "add", INVALID_NUMBER_TAG))
    if outcome == "refused" and "refused_marketing" not in (customer.get("suppression") or ()):
        edits.append(Edit("customers", customer_id, "suppression", "add", "refused_marketing"))
    if outcome == "callback_requested" and result.get("callback_at_ms") is not None:
        edits += callback_edits(
            customer, result["callback_at_ms"], by=result.get("agent"), site=task.get("site") if task else site,
            now_ms=now_ms, kind=(task or {}).get("kind") or "care", campaign_id=(task or {}).get("campaign_id"),
            source_id=result_id,
        )
    if task is None:
        return edits
    task_id = task["row_id"]
    if outcome is not None:
        edits.append(Edit("tasks", task_id, "attempts", "increment", 1))
    if task.get("kind") == "complaint":
        return edits
    if outcome in RETRY_OUTCOMES or (outcome == "callback_requested" and result.get("callback_at_ms") is None):
        attempts = int(task.get("attempts") or 0) + 1
        if attempts >= max_attempts_of(task, campaign):
            return edits + advance(task, "archived")
        slot = next_slot(task, customer, campaign, history, after_ms=this["recorded_at_ms"], calendar=calendar,
                         daily_cap=daily_cap)
        deadline = task.get("deadline_at_ms")
        if task.get("kind") in REVISIT_KINDS and deadline is not None and slot > deadline:
            return edits + advance(task, "archived")
        return edits + [Edit("tasks", task_id, "due_at_ms", "set", slot)]
    return edits + advance(task, "done")


def next_slot(task: Row, customer: Row, campaign: Row | None, history: list[Row], *, after_ms: int,
              calendar: WorkCalendar, daily_cap: int = DAILY_CAP) -> int:
    """When to try ``task`` again after a failed attempt at ``after_ms``: at least
    the retry spacing later and in a later hour, inside the calling window, on a
    day the customer is under the daily cap, and in a local hour of the day not
    tried yet for this task when one is left within a week (else the first
    allowed time)."""
    tz = customer.get("tz")
    window = window_of(campaign)
    customer_id = customer["row_id"]
    tried = {calendar.local(r["recorded_at_ms"], tz).hour for r in history
             if r.get("task_id") == task["row_id"] and r.get("outcome") is not None
             and r.get("recorded_at_ms") is not None}
    next_hour = calendar.start_of_day(after_ms, tz) + (calendar.local(after_ms, tz).hour + 1) * HOUR_MS
    at = max(after_ms + spacing_ms_of(task, campaign), next_hour)
    first: int | None = None
    for _ in range(_SLOT_SEARCH_HOURS):
        at = window_open_at(at, window, tz, calendar)
        if attempts_on_day(history, customer_id, at, tz, calendar) >= daily_cap:
            at = next_day_window(at, window, tz, calendar)
            continue
        if first is None:
            first = at
        if calendar.local(at, tz).hour not in tried:
            return at
        at = calendar.start_of_day(at, tz) + (calendar.local(at, tz).hour + 1) * HOUR_MS
        if not in_window(at, window, tz, calendar):
            at = window_open_at(at, window, tz, calendar)
    return first if first is not None else at


def callback_edits(customer: Row, at_ms: int, *, by: str | None, site: str | None, now_ms: int,
                   kind: str = "care", campaign_id: str | None = None, source_id: str | None = None) -> list[Edit]:
    """A task calling ``customer`` back at ``at_ms`` (the time the customer asked
    for), assigned to ``by``. Its id names its source (the result that asked for
    it), or the customer, time and user when there is none, so recording the same
    request twice makes one task."""
    source = source_id if source_id is not None else f"{customer['row_id']}@{at_ms}@{by}"
    return new_task(
        rule_row_id("callback", source),
        customer_id=customer["row_id"], kind=kind, campaign_id=campaign_id, assignee=by,
        site=site, status="assigned" if by else "open", due_at_ms=at_ms, rule="callback", created_at_ms=now_ms,
    )
