"""The periodic sweep: care cadence, promotions, birthdays, revisit expiry,
sales-rep assignment.

`sweep` is a function of the rows and ``now_ms`` only: two nodes that hold the
same rows and sweep at the same instant return the same edits, and the tasks
they make have name-based ids (`server.work.ids`), so what they decide offline
is one row after sync.

* **Care cadence.** A customer's last care contact is the latest result of a
  ``care`` or ``visit`` task that reached them (``connected``, ``success``, or a
  visit recorded without a call outcome). At 7 stars it is due monthly, 6 every
  two months, 5 quarterly, below that every five months (calendar months in the
  customer's zone). When it is due and the customer has no open care or visit
  task, a ``care`` task is made for the period (id: customer, last contact,
  period number), due at the period's start, deadline one interval later. A
  period whose task closed without reaching the customer gets a new task in the
  next period.
* **Promotion.** ``star_seen`` is the star level the rules last acted on (never
  swept: 0). A customer at `PROMOTION_LEVEL` (5) stars or more above it is newly
  promoted: without an account manager, a ``notice`` task for the site's
  supervisors (category ``bind_account_manager``, no assignee) with a deadline 3
  working days on; and a ``visit`` task (to the account manager, when there is
  one) with a deadline a month on. ``star_seen`` and ``promoted_at_ms`` are
  recorded. A binding task is done once the customer has an account manager. A
  demotion only lowers ``star_seen``. (So the first sweep of a deployment treats
  every 5+ star customer as newly promoted.)
* **Birthday care.** ``birthday_of(customer_id)`` gives (month, day) or None;
  on the `BIRTHDAY_LEAD_DAYS` days before the birthday and on it (customer's
  local date; 29 February is the 28th in other years) a ``care`` task
  (``rule = birthday_care``, one per customer and year). Its times are the
  sweep's (due now, deadline the end of the lead window), never the birthday:
  no field stores or derives the date.
* **Revisits.** An open revisit past its deadline, or with its 3 attempts made,
  is archived.
* **Sales reps** (`server.work.assignment`).
* **Refusals recorded where the customer cannot be changed.** A result
  ``refused`` puts ``refused_marketing`` on the customer's suppression where it
  is recorded (`server.work.outcomes`), but a partner may not change customers:
  its refusal reaches HQ as a result only. So a customer with a refused result
  later than their last marketing consent given, and not on ``refused_marketing``,
  gets it here (giving the consent again is what lifts it: server/consents.py).

Care and birthday tasks are not made for a customer whose suppression covers
care (`server.work.offer.blocks`), nor for one who is not active.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta

from server.work.assignment import sales_rep_edits
from server.work.calendar import WorkCalendar
from server.work.ids import rule_row_id
from server.work.offer import blocks
from server.work.tasks import (
    REVISIT_KINDS,
    REVISIT_MAX_ATTEMPTS,
    Row,
    advance,
    is_closed,
    new_task,
)
from sync.edits import Edit

#: star level -> months between care contacts
CARE_INTERVAL_MONTHS = {7: 1, 6: 2, 5: 3}
DEFAULT_CARE_INTERVAL_MONTHS = 5
PROMOTION_LEVEL = 5
BIND_WORKING_DAYS = 3
VISIT_MONTHS = 1
BIRTHDAY_LEAD_DAYS = 3
BIND_CATEGORY = "bind_account_manager"
#: results that count as a care contact
CONTACT_OUTCOMES = frozenset({"connected", "success", None})

BirthdayOf = Callable[[str], "tuple[int, int] | None"]


def refusal_edits(customers: Iterable[Row], results: Iterable[Row], consents: Iterable[Row]) -> list[Edit]:
    """``refused_marketing`` for each customer with a ``refused`` result later than
    their last marketing consent given (by time, then id) and not on it yet."""
    refused: dict[str, int] = {}
    for r in results:
        if r.get("outcome") == "refused" and not r.get("deleted") and r.get("customer_id"):
            refused[r["customer_id"]] = max(refused.get(r["customer_id"], 0), r.get("recorded_at_ms") or 0)
    granted: dict[str, int] = {}
    for c in consents:
        if c.get("purpose") == "marketing" and c.get("granted") and not c.get("deleted") and c.get("customer_id"):
            granted[c["customer_id"]] = max(granted.get(c["customer_id"], 0), c.get("at_ms") or 0)
    return [Edit("customers", c["row_id"], "suppression", "add", "refused_marketing")
            for c in customers
            if c["row_id"] in refused and refused[c["row_id"]] > granted.get(c["row_id"], -1)
            and "refused_marketing" not in (c.get("suppression") or ())]


def care_interval_months(star_level: int) -> int:
    return CARE_INTERVAL_MONTHS.get(star_level, DEFAULT_CARE_INTERVAL_MONTHS)


def sweep(customers: Iterable[Row], tasks: Iterable[Row], results: Iterable[Row], *, now_ms: int,
          calendar: WorkCalendar, birthday_of: BirthdayOf | None = None,
          promotion_level: int = PROMOTION_LEVEL, birthday_lead_days: int = BIRTHDAY_LEAD_DAYS,
          assign_sales_reps: bool = True, consents: Iterable[Row] = ()) -> list[Edit]:
    """Every edit the periodic rules make at ``now_ms`` (see the module docstring)."""
    customers = sorted((c for c in customers if not c.get("deleted")), key=lambda c: c["row_id"])
    tasks = list(tasks)
    results = [r for r in results if not r.get("deleted")]
    existing = {t["row_id"] for t in tasks}
    by_customer: dict[str, list[Row]] = defaultdict(list)
    for t in tasks:
        if not t.get("deleted") and t.get("customer_id"):
            by_customer[t["customer_id"]].append(t)
    kinds = {t["row_id"]: t.get("kind") for t in tasks}
    last_contact: dict[str, int] = {}
    for r in results:
        cid, at = r.get("customer_id"), r.get("recorded_at_ms")
        if cid is None or at is None or at > now_ms:
            continue
        if kinds.get(r.get("task_id")) in ("care", "visit") and r.get("outcome") in CONTACT_OUTCOMES:
            last_contact[cid] = max(at, last_contact.get(cid, 0))

    edits: list[Edit] = refusal_edits(customers, results, consents)
    for c in customers:
        mine = by_customer.get(c["row_id"], [])
        edits += promotion_edits(c, mine, existing, now_ms=now_ms, calendar=calendar, level=promotion_level)
        if c.get("status", "active") != "active" or blocks(c.get("suppression") or (), c.get("tags") or (), "care"):
            continue
        edits += care_edits(c, mine, existing, last_contact.get(c["row_id"]), now_ms=now_ms, calendar=calendar)
        if birthday_of is not None:
            edits += birthday_edits(c, existing, birthday_of, now_ms=now_ms, calendar=calendar,
                                    lead_days=birthday_lead_days)
    for t in sorted(tasks, key=lambda t: t["row_id"]):
        edits += revisit_expiry_edits(t, now_ms=now_ms)
    if assign_sales_reps:
        edits += sales_rep_edits(customers)
    return edits


def care_edits(customer: Row, tasks: list[Row], existing: set[str], last_contact_ms: int | None, *, now_ms: int,
               calendar: WorkCalendar) -> list[Edit]:
    """A ``care`` task when the customer's care contact is overdue."""
    if any(t.get("kind") in ("care", "visit") and not is_closed(t) for t in tasks):
        return []
    tz = customer.get("tz")
    k = care_interval_months(int(customer.get("star_level") or 0))
    anchor = last_contact_ms if last_contact_ms is not None else 0
    if calendar.add_months(anchor, k, tz) > now_ms:
        return []
    period = calendar.months_between(anchor, now_ms, tz) // k  # >= 1
    task_id = rule_row_id("care_cadence", customer["row_id"], anchor, period)
    if task_id in existing:
        return []
    return new_task(
        task_id, customer_id=customer["row_id"], kind="care", rule="care_cadence", site=customer.get("home_branch"),
        assignee=_worker(customer), status="assigned" if _worker(customer) else "open",
        due_at_ms=calendar.add_months(anchor, k * period, tz),
        deadline_at_ms=calendar.add_months(anchor, k * (period + 1), tz), created_at_ms=now_ms,
    )


def _worker(customer: Row) -> str | None:
    return customer.get("account_manager") or customer.get("assigned_agent")


def promotion_edits(customer: Row, tasks: list[Row], existing: set[str], *, now_ms: int, calendar: WorkCalendar,
                    level: int = PROMOTION_LEVEL) -> list[Edit]:
    """Binding and visit tasks for a newly promoted customer; a binding task
    done once the customer has an account manager."""
    cid = customer["row_id"]
    edits: list[Edit] = []
    manager = customer.get("account_manager")
    if manager:
        for t in sorted(tasks, key=lambda t: t["row_id"]):
            if t.get("rule") == "bind_account_manager" and not is_closed(t):
                edits += advance(t, "done")
    star = int(customer.get("star_level") or 0)
    seen = customer.get("star_seen")
    if seen is not None and star < seen:
        return edits + [Edit("customers", cid, "star_seen", "set", star)]
    if star < level or star <= (seen or 0):
        return edits
    tz = customer.get("tz")
    site = customer.get("home_branch")
    edits += [Edit("customers", cid, "star_seen", "set", star), Edit("customers", cid, "promoted_at_ms", "set", now_ms)]
    bind_id = rule_row_id("bind_account_manager", cid, star)
    if not manager and bind_id not in existing:
        edits += new_task(
            bind_id, customer_id=cid, kind="notice", category=BIND_CATEGORY, rule="bind_account_manager",
            site=site, status="open", due_at_ms=now_ms,
            deadline_at_ms=calendar.add_working_days(now_ms, BIND_WORKING_DAYS, tz), created_at_ms=now_ms,
        )
    visit_id = rule_row_id("promotion_visit", cid, star)
    if visit_id not in existing:
        edits += new_task(
            visit_id, customer_id=cid, kind="visit", rule="promotion_visit", site=site, assignee=manager,
            status="assigned" if manager else "open", due_at_ms=now_ms,
            deadline_at_ms=calendar.add_months(now_ms, VISIT_MONTHS, tz), created_at_ms=now_ms,
        )
    return edits


def birthday_edits(customer: Row, existing: set[str], birthday_of: BirthdayOf, *, now_ms: int,
                   calendar: WorkCalendar, lead_days: int = BIRTHDAY_LEAD_DAYS) -> list[Edit]:
    """A birthday ``care`` task on or just before the birthday (no date stored)."""
    born = birthday_of(customer["row_id"])
    if born is None:
        return []
    tz = customer.get("tz")
    today = calendar.local(now_ms, tz).date()
    for year in (today.year, today.year + 1):
        day = birthday_in(year, *born)
        if day is not None and 0 <= (day - today).days <= lead_days:
            task_id = rule_row_id("birthday_care", customer["row_id"], year)
            if task_id in existing:
                return []
            worker = _worker(customer)
            return new_task(
                task_id, customer_id=customer["row_id"], kind="care", rule="birthday_care",
                site=customer.get("home_branch"), assignee=worker, status="assigned" if worker else "open",
                due_at_ms=now_ms, deadline_at_ms=calendar.at_local(today + timedelta(days=lead_days + 1), 0, 0, tz),
                created_at_ms=now_ms,
            )
    return []


def birthday_in(year: int, month: int, day: int) -> date | None:
    """The birthday in ``year`` (29 February: the 28th in other years; None for no date)."""
    try:
        return date(year, month, day)
    except ValueError:
        if month == 2 and day == 29:
            return date(year, 2, 28)
        return None


def revisit_expiry_edits(task: Row, *, now_ms: int) -> list[Edit]:
    """Archive an open revisit past its deadline or out of attempts."""
    if task.get("kind") not in REVISIT_KINDS or is_closed(task):
        return []
    deadline = task.get("deadline_at_ms")
    if (deadline is not None and now_ms > deadline) or int(task.get("attempts") or 0) >= REVISIT_MAX_ATTEMPTS:
        return advance(task, "archived")
    return []
