"""What the work API reads and writes (server/routes/work.py): msgspec Structs,
derived from `sync.schema` where they show rows, so the schema stays the one
source. Ids, codes, counts and times only: the one view with personal
information is the customer card's ``customer``, shaped by the access policy.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from server.views import CustomerView, view_struct
from sync.ids import RowId
from sync.schema import CallOutcome, ConsentChannel, TaskKind, Text64, TimeMs, UserRef

#: a task as the caller's role sees it (fields it does not see are absent)
TaskView = view_struct("tasks", policy_shaped=True)
#: a result as the caller's role sees it; the sealed notes never travel as JSON
ResultView = view_struct("results", policy_shaped=True)

#: a category code of complaint tickets (``billing``, ``network``, ...)
Category = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
OfferCode = Literal["daily_cap", "outside_window", "too_soon"]


class Offer(msgspec.Struct, kw_only=True):
    """Whether the task's call may be placed now: ``available`` true, or why not
    yet (``code``) and from when (``available_at_ms``; null: not today)."""

    available: bool
    code: OfferCode | None = None
    available_at_ms: TimeMs | None = None


class InboxCustomer(msgspec.Struct, kw_only=True):
    """What the inbox says of a task's customer: no personal information (the
    card shows that, and records that it did)."""

    row_id: RowId
    star_level: int
    segment: Text64 | None = None
    tz: str | None = None


class InboxItem(msgspec.Struct, kw_only=True):
    task: TaskView  # type: ignore[valid-type]
    customer: InboxCustomer | None
    offer: Offer


class InboxPage(msgspec.Struct, kw_only=True):
    """One page of the caller's open tasks in work order (due time, then
    priority 9 first), or, with ``since``, the caller's tasks changed since.

    ``next``: pass as ``cursor`` for the next page (null: the last one);
    ``delta``: pass as ``since`` later to get only what changed after this
    answer; ``removed``: with ``since``, tasks that left the inbox (done,
    archived, cancelled, deleted, handed to someone else, or their customer
    is suppressed)."""

    items: list[InboxItem]
    next: str | None = None
    delta: str
    removed: list[RowId] = []


class CustomerCard(msgspec.Struct, kw_only=True):
    """The customer card: the customer as the caller's role sees it, its open
    tasks the caller may see, and its latest results (newest first)."""

    customer: CustomerView  # type: ignore[valid-type]
    open_tasks: list[TaskView]  # type: ignore[valid-type]
    history: list[ResultView]  # type: ignore[valid-type]


class ResultWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A call or visit result: codes, numbers and times only (no free text, so no
    personal information in the body). ``outcome`` is left out for a visit."""

    outcome: CallOutcome | None = None
    duration_s: Annotated[int, Meta(ge=0, le=86_400)] = 0
    #: when the customer asked to be called back (``callback_requested``; in the future)
    callback_at_ms: TimeMs | None = None
    order_id: Text64 | None = None
    satisfaction: Annotated[int, Meta(ge=1, le=5)] | None = None
    refusal_reason: Text64 | None = None
    #: when it happened (a phone records offline); now when left out; never in the future
    recorded_at_ms: TimeMs | None = None


class ResultRecorded(msgspec.Struct, kw_only=True):
    """The result stored, its task after the work rules ran, and the tasks they
    made (a callback, say)."""

    result: ResultView  # type: ignore[valid-type]
    task: TaskView  # type: ignore[valid-type]
    follow_ups: list[TaskView]  # type: ignore[valid-type]


class CallPermit(msgspec.Struct, kw_only=True):
    """The call may be placed now: the task is in progress."""

    task_id: RowId
    customer_id: RowId
    status: str


class CallbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Call the customer back at ``at_ms`` (in the future, within 90 days)."""

    at_ms: TimeMs
    kind: TaskKind = "care"


class TaskCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A task a supervisor opens. A revisit (``revisit_installation``,
    ``revisit_repair``) names its work order and when it was returned; its
    deadline is 48 hours after that. Complaint tickets are opened at
    ``/complaints``."""

    customer_id: RowId
    kind: TaskKind
    assignee: UserRef | None = None
    due_at_ms: TimeMs | None = None
    priority: Annotated[int, Meta(ge=0, le=9)] = 5
    campaign_id: RowId | None = None
    order_ref: Text64 | None = None
    returned_at_ms: TimeMs | None = None


class TaskChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Reassign or reschedule a task (only the fields given change)."""

    assignee: UserRef = msgspec.UNSET  # type: ignore[assignment]
    due_at_ms: TimeMs = msgspec.UNSET  # type: ignore[assignment]
    priority: Annotated[int, Meta(ge=0, le=9)] = msgspec.UNSET  # type: ignore[assignment]


class ComplaintOpen(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A complaint ticket: the caller becomes its first responder and owns it
    until it is archived."""

    customer_id: RowId
    category: Category
    #: hours to the deadline; the node's ``[work] complaint_deadline_hours`` when left out
    deadline_hours: Annotated[int, Meta(ge=1, le=24 * 90)] | None = None


class HandOver(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Give the ticket to another user to work; its owner stays."""

    to: UserRef


class ComplaintView(msgspec.Struct, kw_only=True):
    task: TaskView  # type: ignore[valid-type]
    #: ``ok``, ``warning`` (the deadline is near) or ``overdue``
    deadline_state: Literal["ok", "warning", "overdue"]
    #: the earlier ticket of the same customer and category within 30 days, if any
    repeat_of: RowId | None = None


class RefuseMarketing(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The customer refused marketing: their marketing consent is withdrawn
    (recorded like any consent) and they go on suppression at every node."""

    channel: ConsentChannel
    #: the task it was said on, for the audit entry
    task_id: RowId | None = None


class AgentLoad(msgspec.Struct, kw_only=True):
    """One member's work: open tasks, those due now, overdue (past their
    deadline), results recorded today (the node's day), complaint tickets they
    own by deadline state."""

    user_id: str
    open: int
    due_now: int
    overdue: int
    results_today: int
    complaints_warning: int
    complaints_overdue: int


class TeamWork(msgspec.Struct, kw_only=True):
    """A supervisor's view of their team's work at this node."""

    at_ms: TimeMs
    members: list[AgentLoad]
