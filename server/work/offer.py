"""Whether a task may be offered to an agent, or its call placed, now.

The API calls `offer_check` at both moments: when the inbox offers the task and
again when the call is placed, since a do-not-call or a refusal recorded
anywhere may have arrived by sync in between. A refusal is a result, not an
error: its code, a value-free detail and, where waiting helps, when to try again.

Checks, in order:

* ``closed``: the task is done, archived, cancelled or deleted; its campaign is
  not active; the customer is closed; a revisit is past its deadline.
* ``suppressed``: the customer's suppression (or an ``invalid_number`` tag)
  covers the task's kind (`blocks`).
* ``max_attempts``: the task has had the campaign's maximum attempts (3 without
  a campaign, and at most 3 for a revisit).
* ``daily_cap``: the customer has had 3 call attempts today (the customer's
  local day), counted from the results of every site the node holds.
* ``too_soon``: the task is due later, or its last attempt was less than the
  retry spacing ago (the campaign's, else 60 minutes).
* ``outside_window``: the customer's local time is outside the campaign's
  calling window (08:00-21:00 by default).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import timedelta
from functools import lru_cache
from typing import Literal

import msgspec

from server.work.calendar import DAY_MS, WorkCalendar
from server.work.tasks import (
    CLOSED,
    REVISIT_KINDS,
    REVISIT_MAX_ATTEMPTS,
    REVISIT_SPACING_MS,
    Row,
)

OfferCode = Literal["suppressed", "daily_cap", "outside_window", "max_attempts", "too_soon", "closed"]

#: call attempts per customer per local day, across every site
DAILY_CAP = 3
DEFAULT_WINDOW_MIN = (8 * 60, 21 * 60)
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_SPACING_MIN = 60
MINUTE_MS = 60_000
#: refusals that mean the task is not offered at all (an inbox leaves it out),
#: as against those that only mean "not yet"
NOT_OFFERED = frozenset({"suppressed", "max_attempts", "closed"})
#: longer than any local day (25 hours where clocks go back), with a margin
_LONGEST_DAY_MS = 26 * 3_600_000
_ONE_DAY = timedelta(days=1)
#: the tag a suspended or vacant number leaves on the customer
INVALID_NUMBER_TAG = "invalid_number"

#: the customer fields `offer_check` reads: a customer row read with these
#: is judged as the whole row would be
CUSTOMER_FIELDS = ("row_id", "deleted", "status", "suppression", "tags", "tz")

#: task kinds that are marketing: a refusal of marketing stops them
MARKETING_KINDS = frozenset({"sales", "retention", "survey", "care"})
#: kinds that do not call the customer out of the blue: working the customer's own complaint
SERVICE_KINDS = frozenset({"complaint", "revisit_complaint"})


class OfferRefusal(msgspec.Struct, frozen=True, kw_only=True):
    """Why a task is not offered (or its call not placed) now."""

    code: OfferCode
    #: what stops it, in words; ids and codes only, never a personal value
    detail: str
    #: when it may be offered again (None: not by waiting)
    retry_at_ms: int | None = None


def blocks(suppression: Collection[str], tags: Collection[str], kind: str) -> str | None:
    """The suppression reason that stops a task of ``kind``, or None.

    ``blacklist``: everything but the customer's own complaint ticket;
    ``do_not_call`` and an invalid number: every call but complaint work
    (a ``visit`` is no call); ``refused_marketing``: marketing kinds
    (`MARKETING_KINDS`)."""
    if "blacklist" in suppression and kind != "complaint":
        return "blacklist"
    if kind in SERVICE_KINDS or kind == "visit":
        return None
    if "do_not_call" in suppression:
        return "do_not_call"
    if INVALID_NUMBER_TAG in tags:
        return INVALID_NUMBER_TAG
    if "refused_marketing" in suppression and kind in MARKETING_KINDS:
        return "refused_marketing"
    return None


def window_of(campaign: Row | None) -> tuple[int, int]:
    """The calling window (start, end) in minutes of the local day."""
    if campaign is None:
        return DEFAULT_WINDOW_MIN
    return (int(campaign.get("window_start_min", DEFAULT_WINDOW_MIN[0])),
            int(campaign.get("window_end_min", DEFAULT_WINDOW_MIN[1])))


def max_attempts_of(task: Row, campaign: Row | None) -> int:
    limit = int(campaign.get("max_attempts", DEFAULT_MAX_ATTEMPTS)) if campaign is not None else DEFAULT_MAX_ATTEMPTS
    return min(limit, REVISIT_MAX_ATTEMPTS) if task.get("kind") in REVISIT_KINDS else limit


def spacing_ms_of(task: Row, campaign: Row | None) -> int:
    spacing = int(campaign.get("retry_spacing_min", DEFAULT_SPACING_MIN)) if campaign is not None \
        else DEFAULT_SPACING_MIN
    spacing_ms = spacing * MINUTE_MS
    return max(spacing_ms, REVISIT_SPACING_MS) if task.get("kind") in REVISIT_KINDS else spacing_ms


def in_window(at_ms: int, window: tuple[int, int], tz: str | None, calendar: WorkCalendar) -> bool:
    local = calendar.local(at_ms, tz)
    return _minute_in(local.hour * 60 + local.minute, window)


def _minute_in(minute: int, window: tuple[int, int]) -> bool:
    start, end = window
    if start == end:
        return True  # no restriction
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # a window across midnight


@lru_cache(maxsize=4096)
def window_open_at(at_ms: int, window: tuple[int, int], tz: str | None, calendar: WorkCalendar) -> int:
    """The first instant at or after ``at_ms`` inside the window. Remembered: out
    of hours, an inbox asks it of one instant (now) for most of its tasks, and
    their windows and zones are few (without it, a page cost a fifth more after
    21:00 than in the day)."""
    local = calendar.local(at_ms, tz)
    if _minute_in(local.hour * 60 + local.minute, window):
        return at_ms
    start = window[0]
    day = local.date()
    today = calendar.at_local(day, start // 60, start % 60, tz)
    if today > at_ms:
        return today
    return calendar.at_local(day + _ONE_DAY, start // 60, start % 60, tz)


def attempts_on_day(results: Iterable[Row], customer_id: str, at_ms: int, tz: str | None,
                    calendar: WorkCalendar) -> int:
    """The customer's call attempts (results with an outcome) on the local day of ``at_ms``."""
    return _on_day(_attempts(results, customer_id), at_ms, tz, calendar)


def _on_day(attempts: list[Row], at_ms: int, tz: str | None, calendar: WorkCalendar) -> int:
    """How many of ``attempts`` were recorded on the local day of ``at_ms``; only
    those within a day's length (25 hours at most, across a DST change) of it
    can be, so only theirs are worked out."""
    near = [r["recorded_at_ms"] for r in attempts if abs(r["recorded_at_ms"] - at_ms) < _LONGEST_DAY_MS]
    if not near:
        return 0
    day = calendar.day_key(at_ms, tz)
    return sum(1 for at in near if calendar.day_key(at, tz) == day)


def _attempts(results: Iterable[Row], customer_id: str) -> list[Row]:
    if not results:
        return []  # most customers: no recent result
    seen: set[str] = set()
    out = []
    for r in results:
        if r.get("deleted") or r.get("customer_id") != customer_id or r.get("outcome") is None:
            continue
        if r.get("recorded_at_ms") is None or r.get("row_id") in seen:
            continue
        seen.add(r.get("row_id"))  # type: ignore[arg-type]
        out.append(r)
    return out


def results_since(now_ms: int, spacings_ms: Iterable[int]) -> int:
    """The earliest recorded time of a result `offer_check` at ``now_ms`` can
    count, given the retry spacings of the tasks checked: today's attempts (a
    local day began at most 25 hours ago in any zone; two days to spare) and
    each task's last attempt within its spacing. A reader may leave older ones out."""
    return now_ms - max((2 * DAY_MS, *spacings_ms))


def next_day_window(at_ms: int, window: tuple[int, int], tz: str | None, calendar: WorkCalendar) -> int:
    """The window's opening on the local day after ``at_ms``'s."""
    return calendar.at_local(calendar.local(at_ms, tz).date() + _ONE_DAY, window[0] // 60, window[0] % 60, tz)


def offer_check(task: Row, customer: Row, campaign: Row | None, results: Iterable[Row], *, now_ms: int,
                calendar: WorkCalendar, daily_cap: int = DAILY_CAP) -> OfferRefusal | None:
    """None when ``task`` may be offered (or its call placed) at ``now_ms``, else
    why not (see the module docstring). ``results``: the customer's results; the
    check picks today's and this task's."""
    task_id = task.get("row_id")
    kind = task.get("kind") or "care"
    tz = customer.get("tz")
    if task.get("deleted") or task.get("status") in CLOSED:
        return OfferRefusal(code="closed", detail=f"task is {'deleted' if task.get('deleted') else task.get('status')}")
    if campaign is not None and (campaign.get("deleted") or campaign.get("status") != "active"):
        return OfferRefusal(code="closed", detail="campaign is not active")
    if customer.get("deleted") or customer.get("status") == "closed":
        return OfferRefusal(code="closed", detail="customer is closed")
    deadline = task.get("deadline_at_ms")
    if kind in REVISIT_KINDS and deadline is not None and now_ms > deadline:
        return OfferRefusal(code="closed", detail="revisit deadline has passed")
    reason = blocks(customer.get("suppression") or (), customer.get("tags") or (), kind)
    if reason is not None:
        return OfferRefusal(code="suppressed", detail=f"customer suppression: {reason}")
    if kind == "visit":
        return None  # a visit is no call: no window, cap or spacing
    if int(task.get("attempts") or 0) >= max_attempts_of(task, campaign):
        return OfferRefusal(code="max_attempts", detail=f"{max_attempts_of(task, campaign)} attempts made")
    window = window_of(campaign)
    attempts = _attempts(results, customer["row_id"])
    # most customers have no recent attempt: skipping both scans is 4% of an inbox page's instructions
    if attempts and _on_day(attempts, now_ms, tz, calendar) >= daily_cap:
        return _timed("daily_cap", f"{daily_cap} call attempts today", next_day_window(now_ms, window, tz, calendar),
                      task)
    earliest = now_ms
    due = task.get("due_at_ms")
    if due is not None and due > now_ms:
        earliest = due
    if attempts:
        last = max((r["recorded_at_ms"] for r in attempts if r.get("task_id") == task_id), default=None)
        if last is not None:
            earliest = max(earliest, last + spacing_ms_of(task, campaign))
    if earliest > now_ms:
        return _timed("too_soon", "retry spacing or due time not reached",
                      window_open_at(earliest, window, tz, calendar), task)
    if not in_window(now_ms, window, tz, calendar):
        return _timed("outside_window", "outside the calling window in the customer's local time",
                      window_open_at(now_ms, window, tz, calendar), task)
    return None


def _timed(code: OfferCode, detail: str, retry_at_ms: int, task: Row) -> OfferRefusal:
    """A refusal to wait out, unless waiting runs past a revisit's deadline."""
    deadline = task.get("deadline_at_ms")
    if task.get("kind") in REVISIT_KINDS and deadline is not None and retry_at_ms > deadline:
        return OfferRefusal(code=code, detail=f"{detail}; the revisit deadline passes first", retry_at_ms=None)
    return OfferRefusal(code=code, detail=detail, retry_at_ms=retry_at_ms)
