"""The work API for agents, account managers and supervisors: the inbox, the
customer card, results, calls, callbacks, complaint tickets, refusals of
marketing, the team's work (the logic is server/work_api.py, the rules
server/work/).

Same callers as the customers API: a signed-in user under the access policy,
or the operator. A task or customer outside the caller's scope answers 404 as
one that does not exist; a change naming a field the role may not write is a
403; a state change that cannot happen (a result on an archived task, closing
an archived ticket) is a 409 that says what state the task is in; nothing
changes on any refusal. The phone number of an inbound call is looked up at
``POST /customers/lookup``, in the body, never in a URL.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, patch, post
from litestar.params import FromQuery, JSONBody, Parameter, QueryParameter

from server import work_api
from server.access import ReadPurpose
from server.auth import note_access, require_actor, require_user_actor
from server.deps import ActorDep, NodeDep
from server.errors import problems
from server.routes.consents import ConsentHistory, record_consent
from server.routes.customers import ACCESS_SECURITY, RowIdParam
from server.routes.auth import USER_SECURITY
from server.sessions import RoleRequiredError
from server.work_views import (
    CallbackRequest,
    CallPermit,
    ComplaintOpen,
    ComplaintView,
    CustomerCard,
    HandOver,
    InboxPage,
    RefuseMarketing,
    ResultRecorded,
    ResultWrite,
    TaskChange,
    TaskCreate,
    TaskView,
    TeamWork,
)
from sync.ids import ROW_ID_PATTERN
from sync.schema import TaskKind

TaskIdParam = Annotated[str, Parameter(pattern=ROW_ID_PATTERN, description="task id (ULID or UUID)")]
#: an opaque cursor this node gave (base64url)
CURSOR = r"^[A-Za-z0-9_-]+$"
#: the roles that oversee a team's work
SUPERVISING = ("supervisor", "partner_supervisor", "hq_admin")


class InboxController(Controller):
    path = "/work"
    tags = ["work"]

    @get("/inbox", operation_id="GetInbox", responses=problems(400, 401, 403), name="work:inbox", guards=[require_user_actor],
         security=USER_SECURITY)
    async def inbox(
        self, node: NodeDep, actor: ActorDep,  # type: ignore[valid-type]
        kind: FromQuery[TaskKind | None] = None,
        due_before: Annotated[int | None, QueryParameter(ge=0, le=(1 << 48) - 1,
                                                         description="only tasks due before (Unix ms)")] = None,
        priority_min: Annotated[int | None, QueryParameter(ge=0, le=9, description="only priorities from (9 is the most urgent)")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200, description="tasks per page")] = 50,
        cursor: Annotated[str | None, QueryParameter(min_length=1, max_length=200, pattern=CURSOR,
                                                     description="the last page's `next`")] = None,
        since: Annotated[str | None, QueryParameter(min_length=1, max_length=200, pattern=CURSOR,
                                                    description="an earlier answer's `delta`")] = None,
    ) -> InboxPage:
        """My open tasks in work order (due time, then priority, 9 first), each
        saying whether its call may be placed now or from when (the calling
        window, the daily attempts, the retry spacing); tasks of a suppressed
        customer or with their attempts used up are not offered. Filter by
        ``kind``, ``due_before`` (Unix ms), ``priority_min``; page with
        ``cursor`` (the last page's ``next``). With ``since`` (an earlier
        answer's ``delta``): only my tasks changed after it, and those that
        left the inbox in ``removed``. No personal information: the card has it."""
        if cursor is not None and since is not None:
            raise work_api.BadCursorError("since", "give `cursor` or `since`, not both")
        return await work_api.inbox(node, actor, kind=kind, due_before=due_before, priority_min=priority_min,
                                    limit=limit, cursor=cursor, since=since)

    @get("/team", operation_id="GetTeamWork", responses=problems(401, 403), name="work:team", guards=[require_actor],
         security=ACCESS_SECURITY)
    async def team(self, node: NodeDep, actor: ActorDep) -> TeamWork:  # type: ignore[valid-type]
        """A supervisor's view of their team's work at this node (HQ admins and the
        operator: every user of the node): per member, open tasks, those due,
        overdue, results today, complaint tickets near or past their deadline."""
        if actor.user is not None and actor.user.role not in SUPERVISING:
            raise RoleRequiredError(SUPERVISING, actor.user.role)
        return await work_api.team_work(node, actor)


class TaskController(Controller):
    path = "/tasks"
    tags = ["work"]
    guards = [require_actor]

    @post("/", operation_id="CreateTask", responses=problems(400, 401, 403, 404, 422), name="tasks:create", status_code=201, security=ACCESS_SECURITY,
          opt={"access": "create_task", "collection": "tasks"})
    async def create(self, data: JSONBody[TaskCreate], node: NodeDep, actor: ActorDep) -> TaskView:  # type: ignore[valid-type]
        """Open a task on a customer (supervisors, HQ): a care call, a visit, a
        revisit after a returned installation or repair work order (deadline 48
        hours after its return; at most 3 attempts an hour apart, then archived)."""
        return await work_api.create_task(node, actor, data)

    @patch("/{task_id:str}", operation_id="ChangeTask", responses=problems(400, 401, 403, 404, 409, 422), name="tasks:change", security=ACCESS_SECURITY,
           opt={"access": "change_task", "collection": "tasks"})
    async def change(self, task_id: TaskIdParam, data: JSONBody[TaskChange], node: NodeDep,  # type: ignore[valid-type]
                     actor: ActorDep) -> TaskView:  # type: ignore[valid-type]
        """Reassign or reschedule an open task (a complaint ticket changes hands at
        ``/complaints/{id}/hand-over``)."""
        return await work_api.change_task(node, actor, task_id, data)

    @post("/{task_id:str}/results", operation_id="RecordResult", responses=problems(400, 401, 403, 404, 409, 422), name="tasks:results", status_code=201,
          security=ACCESS_SECURITY, opt={"access": "record_result", "collection": "results"})
    async def record(self, task_id: TaskIdParam, data: JSONBody[ResultWrite], node: NodeDep,  # type: ignore[valid-type]
                     actor: ActorDep) -> ResultRecorded:  # type: ignore[valid-type]
        """Record a call or visit result. The work rules run in the same write: no
        answer, powered off, out of area or busy moves the task to another time
        slot (or archives it when its attempts are used up); a suspended or vacant
        number ends it; a refusal puts the customer on suppression; a callback
        request makes a task at the requested time."""
        return await work_api.record_result(node, actor, task_id, data)

    @post("/{task_id:str}/call", operation_id="PlaceCall", responses=problems(400, 401, 403, 404, 409), name="tasks:call", status_code=200,
          security=ACCESS_SECURITY, opt={"access": "call", "collection": "tasks"})
    async def call(self, task_id: TaskIdParam, node: NodeDep, actor: ActorDep) -> CallPermit:  # type: ignore[valid-type]
        """Place the task's call: the rules are checked again now (suppression,
        the day's attempts across every site, the calling window in the
        customer's local time, the retry spacing); 409 ``call_refused`` says why
        not and from when. On success the task is in progress."""
        return await work_api.place_call(node, actor, task_id)


class ComplaintController(Controller):
    path = "/complaints"
    tags = ["work"]
    guards = [require_actor]

    @post("/", operation_id="OpenComplaint", responses=problems(400, 401, 403, 404, 422), name="complaints:open", status_code=201, security=ACCESS_SECURITY,
          opt={"access": "complaint", "collection": "tasks"})
    async def open(self, data: JSONBody[ComplaintOpen], node: NodeDep, actor: ActorDep) -> ComplaintView:  # type: ignore[valid-type]
        """Open a complaint ticket; the caller is its first responder and owns it
        until it is archived. A ticket of the same customer and category within 30
        days of another is flagged ``repeat_of``."""
        return await work_api.complaint_open(node, actor, data.customer_id, data.category, data.deadline_hours)

    @post("/{task_id:str}/hand-over", operation_id="HandOverComplaint", responses=problems(400, 401, 403, 404, 409, 422), name="complaints:hand-over",
          status_code=200, security=ACCESS_SECURITY, opt={"access": "complaint", "collection": "tasks"})
    async def hand_over(self, task_id: TaskIdParam, data: JSONBody[HandOver], node: NodeDep,  # type: ignore[valid-type]
                        actor: ActorDep) -> ComplaintView:
        """Give the ticket to another user to work (its owner or a supervisor
        only); the first responder stays its owner."""
        return await work_api.complaint_move(node, actor, task_id, to=data.to)

    @post("/{task_id:str}/archive", operation_id="ArchiveComplaint", responses=problems(400, 401, 403, 404, 409, 422), name="complaints:archive", status_code=200,
          security=ACCESS_SECURITY, opt={"access": "complaint", "collection": "tasks"})
    async def archive(self, task_id: TaskIdParam, node: NodeDep, actor: ActorDep) -> ComplaintView:  # type: ignore[valid-type]
        """Archive the ticket (its owner or a supervisor only); an archived ticket
        cannot be archived or handed over again (409)."""
        return await work_api.complaint_move(node, actor, task_id, to=None)


class CustomerWorkController(Controller):
    path = "/customers"
    tags = ["work"]
    guards = [require_actor]

    @get("/{row_id:str}/card", operation_id="GetCustomerCard", responses=problems(400, 401, 403, 404), name="customers:card", security=ACCESS_SECURITY,
         opt={"access": "read"})
    async def card(self, row_id: RowIdParam, node: NodeDep, actor: ActorDep,  # type: ignore[valid-type]
                   purpose: FromQuery[ReadPurpose | None] = None) -> CustomerCard:
        """The customer card: the customer as the caller may see it (as
        `GetCustomer`), its open tasks and its latest results; one audit entry
        names the fields shown and the ``purpose`` given."""
        return await work_api.card(node, actor, row_id, purpose)

    @post("/{row_id:str}/callbacks", operation_id="ScheduleCallback", responses=problems(400, 401, 403, 404, 422), name="customers:callbacks", status_code=201,
          security=ACCESS_SECURITY, opt={"access": "callback", "collection": "tasks"})
    async def callback(self, row_id: RowIdParam, data: JSONBody[CallbackRequest], node: NodeDep,  # type: ignore[valid-type]
                       actor: ActorDep) -> TaskView:  # type: ignore[valid-type]
        """Schedule a call back at the time the customer asked for, assigned to the caller."""
        return await work_api.schedule_callback(node, actor, row_id, data.at_ms, data.kind)

    @post("/{row_id:str}/refuse-marketing", operation_id="RefuseMarketing", responses=problems(400, 401, 403, 404, 409, 422), name="customers:refuse-marketing",
          status_code=201, security=ACCESS_SECURITY, opt={"access": "consent"})
    async def refuse_marketing(self, row_id: RowIdParam, data: JSONBody[RefuseMarketing], node: NodeDep,  # type: ignore[valid-type]
                               actor: ActorDep, request: Request) -> ConsentHistory:  # type: ignore[type-arg]
        """The customer refused marketing: their marketing consent is withdrawn (a
        consent record) and ``refused_marketing`` goes on their suppression in the
        same write, so no node offers them a marketing task again; answers their
        consents as `GetConsents` does."""
        note_access(request, purpose="marketing", reference=data.task_id)
        return await record_consent(node, actor, row_id, purpose="marketing", granted=False, channel=data.channel,
                                    at_ms=None, reference=data.task_id)
