"""KPI reports (../shared/DESIGN.md, Work rules; issue 6): connect rate,
conversion, long calls, orders, complaint timeliness, handling time and
satisfaction per agent, team or site and day, as JSON or CSV.

The figures are `server.work.kpi` over the ``results``, ``tasks`` and ``users``
rows this node holds: HQ holds every row and so answers for the whole
operation; any other node answers the same way over what it holds (a branch,
its own site's work), offline too. Two nodes holding the same rows give the
same figures. Days are cut in the operation's time zone (the config's
``work.tz`` when it has one, else Asia/Shanghai).

Who may read: the operator, ``hq_admin``, and a ``supervisor`` for their own
site's rows only. A report holds ids, team names, site ids and counts: no
personal information, so a read leaves no audit entry; a refusal does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Schema
from litestar.params import QueryParameter

from server.access import Actor, NotPermittedError
from server.auth import actor_of, require_actor
from server.errors import problems
from server.deps import ActorDep, NodeDep
from server.work.kpi import (
    ARCHIVED,
    COMPLAINT,
    DEFAULT_TZ,
    DIMENSIONS,
    BadReportError,
    Dimension,
    KpiRow,
    RESULT_FIELDS,
    KpiTally,
    check_dimension,
    kpi_csv,
    parse_day,
    period_ms,
)
from sync.hlc import wall_ms_of
from sync.store import ReplicaStore

REPORT_SECURITY = [{"AccessToken": []}, {"OperatorToken": []}]
#: the roles that read KPIs (besides the operator); a supervisor, their own site's
READER_ROLES = frozenset({"hq_admin", "supervisor"})
SITE_LIMITED_ROLES = frozenset({"supervisor"})
CSV = "text/csv"
#: rows read from the store at a time
PAGE_ROWS = 5_000

#: the dates are taken as text and read by `server.work.kpi.parse_day`, so a bad one
#: is refused naming ``from`` or ``to`` (not the handler's argument name)
DayParam = Annotated[str, QueryParameter(name="from", format="date",
                                         description="first day of the period (YYYY-MM-DD)")]
ToParam = Annotated[str, QueryParameter(name="to", format="date",
                                        description="last day of the period, included (YYYY-MM-DD); "
                                                    "at most 366 days from `from`")]
ByParam = Annotated[str, QueryParameter(enum=DIMENSIONS, description="one row per agent, team or site, and day")]
SiteParam = Annotated[str | None, QueryParameter(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$",
                                                 description="only this site's rows (a node id)")]
TeamParam = Annotated[str | None, QueryParameter(min_length=1, max_length=64,
                                                 description="only the work of this team's members")]
FORMATS = ("json", "csv")
FormatParam = Annotated[str | None, QueryParameter(
    enum=FORMATS, description="`csv` for CSV; without it, an Accept of text/csv also gets CSV")]


@dataclass
class _JsonOrCsv(Operation):
    """The operation's 200 answer is JSON or, when asked for, CSV (the same columns)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        content = getattr(ok, "content", None)
        if content is not None:
            content[CSV] = OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.STRING, description="one header line, then one line per row (RFC 4180)"))


async def require_report_reader(connection: ASGIConnection, handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: the operator, or a signed-in user whose role reads KPIs."""
    actor = await actor_of(connection)
    if not actor.is_operator and actor.role not in READER_ROLES:
        raise NotPermittedError("read KPI reports", actor.role, why="only HQ admins and supervisors do")


def site_for(actor: Actor, site: str | None) -> str | None:
    """The site a report is limited to: ``site``, or for a supervisor their own
    (asking for another is refused with `NotPermittedError`)."""
    if actor.user is None or actor.user.role not in SITE_LIMITED_ROLES:
        return site
    if site is not None and site != actor.user.site:
        raise NotPermittedError("read the KPIs of another site", actor.user.role,
                                why=f"a supervisor reads their own site's (`{actor.user.site}`)")
    return actor.user.site


async def _all_rows(store: ReplicaStore, collection: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = ""
    while rows := await store.find_rows(collection, deleted=False, limit=PAGE_ROWS, after=after):
        out.extend(rows)
        after = rows[-1]["row_id"]
    return out


async def kpi_report(store: ReplicaStore, *, by: Dimension, day_from: date, day_to: date, tz: str = DEFAULT_TZ,
                     site: str | None = None, team: str | None = None) -> list[KpiRow]:
    """`server.work.kpi.kpis` over the rows ``store`` holds, read a page at a time:
    the results recorded in the period (a range of ``recorded_at_ms``), then the
    archived complaint tickets, each with the wall time of its ``status`` stamp
    as ``archived_at_ms``."""
    tally = KpiTally(await _all_rows(store, "users"), by=by, day_from=day_from, day_to=day_to, tz=tz,
                     site=site, team=team)
    since, until = period_ms(day_from, day_to, tz)
    after: tuple[int, str] | None = None
    while rows := await store.live_rows_between("results", "recorded_at_ms", since, until, after=after,
                                                limit=PAGE_ROWS, fields=RESULT_FIELDS):
        for row in rows:
            tally.add_result(row)
        after = (rows[-1]["recorded_at_ms"], rows[-1]["row_id"])
    after_id = ""
    while stamps := await store.live_row_stamps("tasks", "status", after=after_id, limit=PAGE_ROWS,
                                                kind=COMPLAINT, status=ARCHIVED):
        after_id = stamps[-1][0]
        archived = {row_id: wall_ms_of(stamp) for row_id, stamp in stamps if since <= wall_ms_of(stamp) < until}
        if archived:
            for row in await store.find_rows("tasks", row_id=sorted(archived), limit=len(archived)):
                tally.add_task({**row, "archived_at_ms": archived[row["row_id"]]})
    return tally.rows()


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]
    guards = [require_actor, require_report_reader]

    @get("/kpi", operation_id="GetKpiReport", name="reports:kpi", security=REPORT_SECURITY,
         responses=problems(400, 401, 403),
         opt={"access": "kpi_report", "collection": "reports"}, operation_class=_JsonOrCsv)
    async def kpi(self, request: Request[Any, Any, Any], node: NodeDep, actor: ActorDep,  # type: ignore[valid-type]
                  day_from: DayParam, day_to: ToParam, by: ByParam = "agent", site: SiteParam = None,
                  team: TeamParam = None, format: FormatParam = None) -> Response[list[KpiRow]]:  # noqa: A002
        """KPIs per agent, team or site (``by``) and day, from ``from`` to ``to``
        (both included, at most 366 days), over the rows this node holds (all of
        them at HQ). Counts and rates per row; a rate whose denominator is 0 is
        null. ``site`` and ``team`` narrow it; a supervisor gets their own site's
        rows only. ``format=csv`` or ``Accept: text/csv`` answers CSV."""
        if format is not None and format not in FORMATS:
            raise BadReportError("format", "`format` is `json` or `csv`")
        tz = node.config.work.tz
        rows = await kpi_report(node.store, by=check_dimension(by), day_from=parse_day("day_from", day_from),
                                day_to=parse_day("day_to", day_to), tz=tz, site=site_for(actor, site), team=team)
        wants_csv = format == "csv" or (
            format is None and request.accept.best_match(["application/json", CSV], default="application/json") == CSV)
        if wants_csv:
            return Response(kpi_csv(rows), media_type=f"{CSV}; charset=utf-8")  # type: ignore[arg-type]
        return Response(rows)
