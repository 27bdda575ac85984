"""The work API's logic (server/routes/work.py is its edge): a user's inbox, the
customer card, recording results, placing calls, callbacks, complaint tickets,
refusals of marketing, supervisors' views.

Who sees what is the access policy's (sites/policy.toml): a task the caller's
row scope does not admit answers 404 as one that does not exist; a change
naming a field the role may not write is a 403 naming the fields, and nothing
changes. What a change causes is the work rules' (server/work/): a recorded
result's retries, suppression and callbacks commit in the same transaction as
the result, with its audit entry. Plain functions, no web framework.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, ParamSpec, TypeVar

import msgspec

from server.access import CUSTOMERS, Actor, FieldsNotWritableError, OutOfScopeError, admits, project_customer
from server.errors import NotFoundError
from server.keyring import data_key_records_in
from server.policy import ADMISSION_FIELDS, admit_every_row
from server.work_errors import (
    BadCursorError,
    BadTimeError,
    CallRefusedError,
    TaskClosedError,
    TaskKindError,
    UnknownUserError,
)
from server.node import Node
from server.work.calendar import DAY_MS
from server.work.complaints import archive_complaint, deadline_state, hand_over, open_complaint
from server.work.offer import CUSTOMER_FIELDS, NOT_OFFERED, offer_check, results_since, spacing_ms_of
from server.work.outcomes import callback_edits, result_edits
from server.work.tasks import CLOSED, REVISIT_KINDS, advance, new_task, revisit_task
from server.work_views import (
    AgentLoad,
    CallPermit,
    ComplaintView,
    CustomerCard,
    InboxCustomer,
    InboxItem,
    InboxPage,
    Offer,
    ResultRecorded,
    ResultView,
    ResultWrite,
    TaskChange,
    TaskCreate,
    TaskView,
    TeamWork,
)
from sync.edits import Edit, InvalidEditError
from sync.ids import new_ulid
from sync.schema import OPEN_TASK_STATUSES
from sync.store.ddl import NO_DUE
from sync.store.snapshot import Snapshot
from sync.store.sqlite import wall_clock_ms

TASKS, RESULTS = "tasks", "results"
#: results shown on a card, the first page read to find them, and how many are looked at at most
HISTORY, HISTORY_PAGE, HISTORY_SCAN = 20, 50, 10_000
#: the customer fields an inbox reads: the offer check's, the item's, admission's
INBOX_CUSTOMER_FIELDS = (*CUSTOMER_FIELDS, "star_level", "segment", *ADMISSION_FIELDS[CUSTOMERS])
#: a callback this far ahead at most
CALLBACK_HORIZON_MS = 90 * DAY_MS
#: how often a change of a task is worked out again when the task changed between read and write
RACED_WRITE_TRIES = 3
_P = ParamSpec("_P")
_R = TypeVar("_R")


# ---------------------------------------------------------------- helpers


def _shown(node: Node, actor: Actor, collection: str, view: type[msgspec.Struct]) -> tuple[str, ...] | None:
    """The fields of ``view`` the caller's role sees, worked out once per request
    (the view's own field tuple when it sees them all: `_view` tells by identity);
    None when the policy masks some (then each row goes through `Policy.view`)."""
    names = view.__struct_fields__
    if actor.user is None:
        return names
    if node.policy.masked_fields(actor.user.role, collection):
        return None
    visible = node.policy.visible_fields(actor.user.role, collection)
    shown = tuple(n for n in names if n == "row_id" or n in visible)
    return names if len(shown) == len(names) else shown


@functools.cache
def _field_set(view: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(view.__struct_fields__)


def _shown_whole(view: type[msgspec.Struct], shown: tuple[str, ...] | None, row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is exactly ``view``'s fields and the caller sees them all:
    then ``view(**row)`` is its view, a third of the cost of picking its fields."""
    return shown is view.__struct_fields__ and row.keys() == _field_set(view)


def _view(node: Node, actor: Actor, collection: str, view: type[msgspec.Struct], row: Mapping[str, Any],
          shown: tuple[str, ...] | None) -> Any:
    if shown is not None:
        if _shown_whole(view, shown, row):
            return view(**row)
        return view(**{k: row[k] for k in shown})
    assert actor.user is not None
    values = {k: v for k, v in row.items() if k in view.__struct_fields__}
    return view(**(node.policy.view(actor.user.role, collection, values) | {"row_id": row["row_id"]}))


def _task_view(node: Node, actor: Actor, row: Mapping[str, Any], shown: tuple[str, ...] | None = None) -> Any:
    return _view(node, actor, TASKS, TaskView, row, shown or _shown(node, actor, TASKS, TaskView))


def _result_view(node: Node, actor: Actor, row: Mapping[str, Any]) -> Any:
    return _view(node, actor, RESULTS, ResultView, row, _shown(node, actor, RESULTS, ResultView))


def _admits(node: Node, actor: Actor, collection: str, row: Mapping[str, Any]) -> bool:
    return actor.user is None or node.policy.admits_row(actor.user, collection, row)


def _row_filter(node: Node, actor: Actor, collection: str) -> Callable[[Mapping[str, Any]], bool]:
    """`_admits` for many rows of one collection."""
    return admit_every_row if actor.user is None else node.policy.row_filter(actor.user, collection)  # the operator: all


def check_writes(node: Node, actor: Actor, collection: str, fields: Iterable[str]) -> None:
    """403 naming the fields of ``collection`` the caller's role may not write."""
    if actor.user is None:
        return
    allowed = node.policy.writable_fields(actor.user.role, collection)
    refused = sorted(set(fields) - allowed)
    if refused:
        raise FieldsNotWritableError(collection, refused, actor.user.role)


def work_site(node: Node, customer: Mapping[str, Any]) -> str:
    """The site a new task on ``customer`` belongs to: the customer's home branch
    (so the branch, and the phones below it, hold it), else this node."""
    return customer.get("home_branch") or node.config.node_id


async def task_in_scope(node: Node, actor: Actor, task_id: str) -> dict[str, Any]:
    row = await node.store.read_row(TASKS, task_id)
    if row is None or row["deleted"]:
        raise NotFoundError(TASKS, task_id)
    if not _admits(node, actor, TASKS, row):
        raise OutOfScopeError(TASKS, task_id)
    return row


async def customer_in_scope(node: Node, actor: Actor, customer_id: str) -> dict[str, Any]:
    row = await node.store.read_row(CUSTOMERS, customer_id)
    if row is None or row["deleted"]:
        raise NotFoundError(CUSTOMERS, customer_id)
    if not admits(node.policy, actor, row):
        raise OutOfScopeError(CUSTOMERS, customer_id)
    return row


async def _campaign(node: Node, task: Mapping[str, Any]) -> dict[str, Any] | None:
    campaign_id = task.get("campaign_id")
    return None if campaign_id is None else await node.store.read_row("campaigns", campaign_id)


def _results_in(snap: Snapshot, customer_ids: Iterable[str], *,
                since_ms: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """The customers' live results (recorded at ``since_ms`` or later, when given)."""
    ids = sorted(set(customer_ids))
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    recent = None if since_ms is None else {"recorded_at_ms": since_ms}
    if ids:
        for row in snap.find_rows(RESULTS, limit=100_000, customer_id=ids, deleted=False, at_least=recent):
            out[row["customer_id"]].append(row)
    return out


async def _results_of(node: Node, customer_id: str, *, since_ms: int | None = None) -> list[dict[str, Any]]:
    return (await node.store.snapshot(lambda snap: _results_in(snap, [customer_id], since_ms=since_ms)))[customer_id]


async def _user_known(node: Node, user_id: str) -> bool:
    row = await node.store.read_row("users", user_id)
    return row is not None and not row["deleted"] and not row["disabled"] and row["username"] is not None


def _edits_rows(edits: Iterable[Edit], collection: str) -> list[str]:
    return sorted({e.row_id for e in edits if e.collection == collection})


# ---------------------------------------------------------------- cursors


_cursor_codec = msgspec.msgpack.Encoder()
_page_decoder = msgspec.msgpack.Decoder(tuple[str, int, int, str])
_delta_decoder = msgspec.msgpack.Decoder(tuple[str, int])


def _encode(value: object) -> str:
    return base64.urlsafe_b64encode(_cursor_codec.encode(value)).decode().rstrip("=")


def _decode(token: str, decoder: msgspec.msgpack.Decoder[Any], parameter: str, store_id: str) -> Any:
    try:
        value = decoder.decode(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadCursorError(parameter, "malformed") from None
    if value[0] != store_id:
        raise BadCursorError(parameter, "given by another store of this node")
    return value


# ---------------------------------------------------------------- inbox


async def inbox(node: Node, actor: Actor, *, kind: str | None, due_before: int | None, priority_min: int | None,
                limit: int, cursor: str | None, since: str | None, now_ms: int | None = None) -> InboxPage:
    """The caller's open tasks in work order, each with whether its call may be
    placed now; tasks the rules do not offer (suppressed customer, attempts used
    up) are left out. With ``since``: the caller's tasks changed after it. All
    read from one snapshot of the store, in one trip to its reader."""
    assert actor.user is not None
    now = wall_clock_ms() if now_ms is None else now_ms
    store = node.store
    me = actor.user.user_id
    equals: dict[str, Any] = {"assignee": me}
    if kind is not None:
        equals["kind"] = kind
    if since is not None:
        _, after_seq = _decode(since, _delta_decoder, "since", store.store_id)

        def changes(snap: Snapshot) -> tuple[int, list[tuple[int, dict[str, Any]]], list[str], _OfferContext]:
            changed = snap.rows_after(TASKS, after_seq, limit=limit, **equals)
            # tasks taken from me in the same span: gone from my inbox
            upto = changed[-1][0] if len(changed) == limit else None
            taken = [row["row_id"] for seq, row in snap.rows_after(TASKS, after_seq, limit=100_000, handed_from=me)
                     if row["assignee"] != me and (upto is None or seq <= upto)]
            return snap.high_seq(), changed, taken, _offer_context(snap, [row for _, row in changed], now)

        high, changed, taken, context = await store.snapshot(changes)
        # more changed than a page: resume after the last one read
        delta = _encode((store.store_id, changed[-1][0] if len(changed) == limit else high))
        items, removed = _offer(node, actor, [row for _, row in changed], context, now)
        return InboxPage(items=items, delta=delta, removed=sorted({*removed, *taken}))
    after = None
    if cursor is not None:
        _, due, priority, row_id = _decode(cursor, _page_decoder, "cursor", store.store_id)
        after = (due, priority, row_id)

    def page(snap: Snapshot) -> tuple[int, list[Mapping[str, Any]], _OfferContext]:
        # shared: an agent asks for its inbox again and again, and most of its rows have not changed
        rows = snap.shared_work_queue(limit=limit, after=after, due_before=due_before, priority_min=priority_min,
                                      **equals)
        return snap.high_seq(), rows, _offer_context(snap, rows, now)

    high, rows, context = await store.snapshot(page)
    items, _ = _offer(node, actor, rows, context, now)
    following = None
    if len(rows) == limit:
        last = rows[-1]
        following = _encode((store.store_id, last["due_at_ms"] if last["due_at_ms"] is not None else NO_DUE,
                             last["priority"], last["row_id"]))
    return InboxPage(items=items, next=following, delta=_encode((store.store_id, high)))


class _OfferContext(NamedTuple):
    """What the offer check of some tasks reads besides the tasks."""

    customers: dict[str, Mapping[str, Any]]
    campaigns: dict[str, dict[str, Any]]
    results: dict[str, list[dict[str, Any]]]


def _offer_context(snap: Snapshot, tasks: Sequence[Mapping[str, Any]], now_ms: int) -> _OfferContext:
    """The tasks' customers (`INBOX_CUSTOMER_FIELDS`, shared reads), campaigns,
    and the results the offer check can count (`results_since`)."""
    customers = {r["row_id"]: r for r in snap.shared_rows(
        CUSTOMERS, list({t["customer_id"] for t in tasks if t["customer_id"]}), INBOX_CUSTOMER_FIELDS)}
    ids = sorted({t["campaign_id"] for t in tasks if t["campaign_id"]})
    campaigns = {r["row_id"]: r for r in snap.find_rows("campaigns", limit=len(ids) + 1, row_id=ids)} if ids else {}
    # a task's retry spacing is its campaign's and kind's: one task of each pair stands for all
    alike = {(t["campaign_id"], t["kind"]): t for t in tasks}.values()
    since = results_since(now_ms, [spacing_ms_of(t, campaigns.get(t["campaign_id"] or "")) for t in alike])
    return _OfferContext(customers, campaigns, _results_in(snap, customers, since_ms=since))


def _offer(node: Node, actor: Actor, tasks: Sequence[Mapping[str, Any]], context: _OfferContext,
           now_ms: int) -> tuple[list[InboxItem], list[str]]:
    """The tasks to offer, with whether their calls may be placed now, and the
    ids of those not to offer (closed, out of scope, suppressed, used up)."""
    customers, campaigns, results = context
    calendar = node.calendar
    shown = _shown(node, actor, TASKS, TaskView)
    # the rows of one read have one set of fields: when the first is a whole task shown whole, every one is
    whole = bool(tasks) and _shown_whole(TaskView, shown, tasks[0])
    task_seen, customer_seen = _row_filter(node, actor, TASKS), _row_filter(node, actor, CUSTOMERS)
    # each customer's item part, or None when the caller may not see the customer (a page has repeats)
    shown_customers: dict[str, InboxCustomer | None] = {}
    items: list[InboxItem] = []
    removed: list[str] = []
    for task in tasks:
        customer_id = task["customer_id"] or ""
        if customer_id not in shown_customers:
            customer = customers.get(customer_id)
            admitted = customer is not None and customer_seen(customer)
            shown_customers[customer_id] = InboxCustomer(
                row_id=customer["row_id"], star_level=customer["star_level"], segment=customer["segment"],
                tz=customer.get("tz")) if admitted else None
        item_customer = shown_customers[customer_id]
        if item_customer is None or not task_seen(task):
            removed.append(task["row_id"])
            continue
        refusal = offer_check(task, customers[customer_id], campaigns.get(task["campaign_id"] or ""),
                              results.get(customer_id, ()), now_ms=now_ms, calendar=calendar)
        if task["deleted"] or task["status"] in CLOSED or (refusal is not None and refusal.code in NOT_OFFERED):
            removed.append(task["row_id"])
            continue
        offer = Offer(available=True) if refusal is None else Offer(
            available=False, code=refusal.code, available_at_ms=refusal.retry_at_ms)  # type: ignore[arg-type]
        view = TaskView(**task) if whole else _view(node, actor, TASKS, TaskView, task, shown)
        items.append(InboxItem(task=view, offer=offer, customer=item_customer))
    return items, removed


# ---------------------------------------------------------------- the card


async def card(node: Node, actor: Actor, customer_id: str, purpose: str | None) -> CustomerCard:
    """The customer as the caller may see it, its open tasks and latest results
    the caller may see; one audit entry naming the fields shown. The rows are
    read from one snapshot of the store."""

    result_seen = _row_filter(node, actor, RESULTS)

    def read(snap: Snapshot) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]],
                                      list[dict[str, Any]]] | None:
        row = snap.read_row(CUSTOMERS, customer_id)
        if row is None or row["deleted"]:
            return None
        return (row, data_key_records_in(snap, customer_id),
                snap.find_rows(TASKS, limit=1_000, customer_id=customer_id, deleted=False),
                _latest_results(snap, customer_id, result_seen))

    found = await node.store.snapshot(read)
    if found is None:
        raise NotFoundError(CUSTOMERS, customer_id)
    row, records, task_rows, results = found
    if not admits(node.policy, actor, row):
        raise OutOfScopeError(CUSTOMERS, customer_id)
    seen = project_customer(node.policy, actor, row, await node.keyring.open_customer(row, records))
    tasks = [t for t in task_rows if t["status"] in OPEN_TASK_STATUSES and _admits(node, actor, TASKS, t)]
    tasks.sort(key=lambda t: (t["due_at_ms"] if t["due_at_ms"] is not None else NO_DUE, -t["priority"], t["row_id"]))
    if seen.shown or seen.masked:
        await node.audit.record(actor, "read", row_id=customer_id, shown=seen.shown, masked=seen.masked,
                                purpose=purpose)
    task_shown = _shown(node, actor, TASKS, TaskView)
    result_shown = _shown(node, actor, RESULTS, ResultView)
    return CustomerCard(customer=seen.view, open_tasks=[_task_view(node, actor, t, task_shown) for t in tasks],
                        history=[_view(node, actor, RESULTS, ResultView, r, result_shown) for r in results])


def _latest_results(snap: Snapshot, customer_id: str,
                    seen: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
    """The customer's latest `HISTORY` live results the caller may see, newest
    first: read in growing pages (each a sort of the customer's results in
    SQLite), not the customer's whole history, and from the newest
    `HISTORY_SCAN` at most (a snapshot's reads must stay bounded)."""
    out: list[dict[str, Any]] = []
    offset, size = 0, HISTORY_PAGE
    while offset < HISTORY_SCAN:
        page = snap.newest_rows(RESULTS, "recorded_at_ms", limit=min(size, HISTORY_SCAN - offset), offset=offset,
                                customer_id=customer_id, deleted=False)
        out += [r for r in page if seen(r)]
        if len(out) >= HISTORY or len(page) < size:
            break
        offset, size = offset + size, size * 4
    return out[:HISTORY]


# ---------------------------------------------------------------- results and calls


def _worked_out_again(change: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """``change`` (a read of a task, then a write of what the rules make of it)
    run again when its write meets the task moved on since the read: another
    write at the same time (a result, a call, a hand-over) moved its status on,
    so the store refused the whole write as a status moving back
    (`InvalidEditError`). Run again, it starts from the task as it is now, and
    refuses as that task would (`TaskClosedError`...); `RACED_WRITE_TRIES` at most."""

    @functools.wraps(change)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        for _ in range(RACED_WRITE_TRIES - 1):
            with contextlib.suppress(InvalidEditError):
                return await change(*args, **kwargs)
        return await change(*args, **kwargs)

    return run


@_worked_out_again
async def record_result(node: Node, actor: Actor, task_id: str, body: ResultWrite) -> ResultRecorded:
    """Store a result of ``task_id`` and what the work rules make of it, in one
    transaction with its audit entry."""
    task = await task_in_scope(node, actor, task_id)
    customer = await customer_in_scope(node, actor, task["customer_id"])
    if task["status"] in CLOSED and task["kind"] != "complaint":
        raise TaskClosedError(task_id, task["status"], "take a result")
    now = wall_clock_ms()
    drift = node.config.sync.max_drift_ms
    at = now if body.recorded_at_ms is None else body.recorded_at_ms
    if at > now + drift:
        raise BadTimeError("recorded_at_ms", "is in the future")
    if body.callback_at_ms is not None and not now - drift <= body.callback_at_ms <= now + CALLBACK_HORIZON_MS:
        raise BadTimeError("callback_at_ms", "must be in the future, within 90 days")
    result_id = new_ulid(now, os.urandom(10))
    values = {
        "task_id": task_id, "customer_id": customer["row_id"], "outcome": body.outcome, "duration_s": body.duration_s,
        "callback_at_ms": body.callback_at_ms, "order_id": body.order_id, "satisfaction": body.satisfaction,
        "refusal_reason": body.refusal_reason, "agent": actor.id, "site": node.config.node_id, "recorded_at_ms": at,
    }
    values = {k: v for k, v in values.items() if v is not None}
    check_writes(node, actor, RESULTS, values)
    history = await _results_of(node, customer["row_id"])
    rules = result_edits(result_id, values, task, customer, await _campaign(node, task), history, now_ms=now,
                         calendar=node.calendar, site=node.config.node_id)
    edits = [Edit(RESULTS, result_id, k, "set", v) for k, v in sorted(values.items())] + rules
    follow_ups = [r for r in _edits_rows(rules, TASKS) if r != task_id]
    await node.store.write_local(edits, audit=node.audit.draft(
        actor, "record_result", collection=RESULTS, row_id=customer["row_id"], reference=result_id,
        fields=sorted(values), reason=body.outcome or "visit",
        counts={"follow_ups": len(follow_ups)} if follow_ups else None))
    stored = await node.store.read_row(RESULTS, result_id)
    after = await node.store.read_row(TASKS, task_id)
    made = [await node.store.read_row(TASKS, r) for r in follow_ups]
    assert stored is not None and after is not None
    return ResultRecorded(result=_result_view(node, actor, stored), task=_task_view(node, actor, after),
                          follow_ups=[_task_view(node, actor, t) for t in made if t is not None])


@_worked_out_again
async def place_call(node: Node, actor: Actor, task_id: str) -> CallPermit:
    """Check the work rules again as the call is placed (suppression may have
    arrived since the task was offered, the day's attempts may be used up
    elsewhere) and mark the task in progress; `CallRefusedError` otherwise."""
    task = await task_in_scope(node, actor, task_id)
    customer = await customer_in_scope(node, actor, task["customer_id"])
    now = wall_clock_ms()
    campaign = await _campaign(node, task)
    since = results_since(now, [spacing_ms_of(task, campaign)])
    history = await _results_of(node, customer["row_id"], since_ms=since)
    refusal = offer_check(task, customer, campaign, history, now_ms=now, calendar=node.calendar)
    if refusal is not None:  # its audit entry is the refusal's (server.auth.record_refusal)
        raise CallRefusedError(task_id, refusal.code, refusal.detail, refusal.retry_at_ms)
    edits = advance(task, "in_progress")
    check_writes(node, actor, TASKS, {e.field for e in edits})
    await node.store.write_local(edits, audit=node.audit.draft(actor, "call", collection=TASKS,
                                                               row_id=customer["row_id"], reference=task_id))
    return CallPermit(task_id=task_id, customer_id=customer["row_id"],
                      status="in_progress" if edits else task["status"])


async def schedule_callback(node: Node, actor: Actor, customer_id: str, at_ms: int, kind: str) -> Any:
    customer = await customer_in_scope(node, actor, customer_id)
    now = wall_clock_ms()
    if not now <= at_ms <= now + CALLBACK_HORIZON_MS:
        raise BadTimeError("at_ms", "must be in the future, within 90 days")
    edits = callback_edits(customer, at_ms, by=actor.user.user_id if actor.user else None,
                           site=work_site(node, customer), now_ms=now, kind=kind)
    check_writes(node, actor, TASKS, {e.field for e in edits})
    [task_id] = _edits_rows(edits, TASKS)
    await node.store.write_local(edits, audit=node.audit.draft(actor, "callback", collection=TASKS,
                                                               row_id=customer_id, reference=task_id))
    return _task_view(node, actor, await node.store.read_row(TASKS, task_id) or {})


# ---------------------------------------------------------------- tasks


async def create_task(node: Node, actor: Actor, body: TaskCreate) -> Any:
    customer = await customer_in_scope(node, actor, body.customer_id)
    if body.kind == "complaint":
        raise TaskKindError(body.kind, "is a ticket: open it at /complaints")
    if body.assignee is not None and not await _user_known(node, body.assignee):
        raise UnknownUserError("assignee", body.assignee)
    now = wall_clock_ms()
    if body.kind in REVISIT_KINDS:
        if body.order_ref is None or body.returned_at_ms is None:
            raise TaskKindError(body.kind, "names its work order: give `order_ref` and `returned_at_ms`")
        edits = revisit_task(body.order_ref, customer["row_id"], body.kind, body.returned_at_ms,
                             site=work_site(node, customer), now_ms=now, assignee=body.assignee)
    else:
        edits = new_task(new_ulid(now, os.urandom(10)), customer_id=customer["row_id"], kind=body.kind,
                         assignee=body.assignee, site=work_site(node, customer),
                         status="assigned" if body.assignee else "open", due_at_ms=body.due_at_ms,
                         campaign_id=body.campaign_id, created_at_ms=now)
        edits.append(Edit(TASKS, edits[0].row_id, "priority", "set", body.priority))
    check_writes(node, actor, TASKS, {e.field for e in edits})
    [task_id] = _edits_rows(edits, TASKS)
    await node.store.write_local(edits, audit=node.audit.draft(
        actor, "create_task", collection=TASKS, row_id=customer["row_id"], reference=task_id,
        fields=sorted({e.field for e in edits}), reason=body.kind))
    task = await node.store.read_row(TASKS, task_id)
    if task is None or not _admits(node, actor, TASKS, task):
        raise OutOfScopeError(TASKS, task_id)  # written, but outside what the caller sees
    return _task_view(node, actor, task)


@_worked_out_again
async def change_task(node: Node, actor: Actor, task_id: str, body: TaskChange) -> Any:
    task = await task_in_scope(node, actor, task_id)
    if task["status"] in CLOSED:
        raise TaskClosedError(task_id, task["status"], "be reassigned or rescheduled")
    if task["kind"] == "complaint" and body.assignee is not msgspec.UNSET:
        raise TaskKindError("complaint", "changes hands at /complaints/{id}/hand-over, where ownership is kept")
    changes = {k: getattr(body, k) for k in body.__struct_fields__ if getattr(body, k) is not msgspec.UNSET}
    if "assignee" in changes and not await _user_known(node, changes["assignee"]):
        raise UnknownUserError("assignee", changes["assignee"])
    edits = [Edit(TASKS, task_id, k, "set", v) for k, v in sorted(changes.items()) if task.get(k) != v]
    if "assignee" in changes:
        if task["assignee"] is not None and task["assignee"] != changes["assignee"]:
            edits.append(Edit(TASKS, task_id, "handed_from", "set", task["assignee"]))
        edits += advance(task, "assigned")
    check_writes(node, actor, TASKS, {e.field for e in edits})
    if edits:
        await node.store.write_local(edits, audit=node.audit.draft(
            actor, "change_task", collection=TASKS, row_id=task["customer_id"], reference=task_id,
            fields=sorted({e.field for e in edits})))
    return _task_view(node, actor, await node.store.read_row(TASKS, task_id) or task)


# ---------------------------------------------------------------- complaints


def _complaint(node: Node, actor: Actor, task: Mapping[str, Any], now_ms: int) -> ComplaintView:
    warn = node.config.work.complaint_warn_hours * 3_600_000
    return ComplaintView(task=_task_view(node, actor, task), repeat_of=task.get("repeat_of"),
                         deadline_state=deadline_state(task, now_ms, warn_before_ms=warn))


async def complaint_open(node: Node, actor: Actor, customer_id: str, category: str,
                         deadline_hours: int | None) -> ComplaintView:
    customer = await customer_in_scope(node, actor, customer_id)
    now = wall_clock_ms()
    recent = await node.store.find_rows(TASKS, limit=10_000, customer_id=customer["row_id"], kind="complaint")
    task_id = new_ulid(now, os.urandom(10))
    edits = open_complaint(task_id, customer["row_id"], category, actor.id, site=work_site(node, customer), now_ms=now,
                           calendar=node.calendar, recent=recent,
                           deadline_hours=deadline_hours or node.config.work.complaint_deadline_hours)
    check_writes(node, actor, TASKS, {e.field for e in edits})
    await node.store.write_local(edits, audit=node.audit.draft(
        actor, "complaint", collection=TASKS, row_id=customer["row_id"], reference=task_id, reason="open"))
    task = await node.store.read_row(TASKS, task_id)
    assert task is not None
    return _complaint(node, actor, task, now)


@_worked_out_again
async def complaint_move(node: Node, actor: Actor, task_id: str, *, to: str | None) -> ComplaintView:
    """Hand the ticket over to ``to``, or archive it (``to`` None)."""
    task = await task_in_scope(node, actor, task_id)
    now = wall_clock_ms()
    role = actor.role or "operator"
    by = actor.id
    if to is None:
        edits = archive_complaint(task, by_user=by, by_role="hq_admin" if actor.user is None else role, now_ms=now)
    else:
        if not await _user_known(node, to):
            raise UnknownUserError("to", to)
        edits = hand_over(task, to, by_user=by, by_role="hq_admin" if actor.user is None else role, now_ms=now)
    check_writes(node, actor, TASKS, {e.field for e in edits})
    if edits:
        await node.store.write_local(edits, audit=node.audit.draft(
            actor, "complaint", collection=TASKS, row_id=task["customer_id"], reference=task_id,
            reason="archive" if to is None else "hand_over", fields=sorted({e.field for e in edits})))
    after = await node.store.read_row(TASKS, task_id)
    assert after is not None
    return _complaint(node, actor, after, now)


# ---------------------------------------------------------------- supervisors


async def team_work(node: Node, actor: Actor, *, now_ms: int | None = None) -> TeamWork:
    """Per member of the caller's team (a supervisor), or of this node (HQ
    admins and the operator): their open, due, overdue work, today's results,
    their complaint tickets near or past the deadline."""
    now = wall_clock_ms() if now_ms is None else now_ms
    if actor.user is not None and actor.user.role not in ("hq_admin",):
        members = sorted(actor.user.team_members or {actor.user.user_id})
    else:
        members = sorted(r["row_id"] for r in await node.store.find_rows("users", limit=100_000, deleted=False))
    calendar = node.calendar
    day_start = calendar.start_of_day(now)
    warn = node.config.work.complaint_warn_hours * 3_600_000
    loads: list[AgentLoad] = []
    for member in members:
        open_tasks = [t for t in await node.store.work_queue(limit=100_000, assignee=member)
                      if _admits(node, actor, TASKS, t)]
        owned = [t for t in await node.store.find_rows(TASKS, limit=100_000, first_responder=member,
                                                       kind="complaint", deleted=False)
                 if _admits(node, actor, TASKS, t)]
        states = [deadline_state(t, now, warn_before_ms=warn) for t in owned]
        today = [r for r in await node.store.find_rows(RESULTS, limit=100_000, agent=member, deleted=False)
                 if (r["recorded_at_ms"] or 0) >= day_start and _admits(node, actor, RESULTS, r)]
        loads.append(AgentLoad(
            user_id=member, open=len(open_tasks),
            due_now=sum(1 for t in open_tasks if t["due_at_ms"] is None or t["due_at_ms"] <= now),
            overdue=sum(1 for t in open_tasks if t["deadline_at_ms"] is not None and t["deadline_at_ms"] < now),
            results_today=len(today), complaints_warning=states.count("warning"),
            complaints_overdue=states.count("overdue"),
        ))
    await node.audit.record(actor, "team_work", collection=TASKS, counts={"members": len(members)})
    return TeamWork(at_ms=now, members=loads)
