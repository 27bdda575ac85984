"""KPIs per agent, team, site and day (../shared/DESIGN.md, Work rules): a pure
function of the replicated ``results``, ``tasks`` and ``users`` rows, so every
node holding the same rows reports the same figures, offline too.

What counts (each rate is its numerator over its denominator, and ``None``,
never 0, when the denominator is 0):

==========================  ==================================================
``attempts``                results with an ``outcome``: every call attempt,
                            answered or not (a result without one, a visit
                            report, is no call)
``connected``               outcomes where the person answered: ``connected``,
                            ``success``, ``refused``, ``callback_requested``
``conversions``             outcome ``success``
``long_calls``              connected calls with ``duration_s`` over 18
``talk_s``                  the sum of ``duration_s`` of connected calls
``orders``                  results carrying an ``order_id`` (an order taken)
``orders_succeeded``        of those, the ones with outcome ``success``
``complaints_archived``     complaint tickets (``kind`` ``complaint``) archived
                            in the period that have a deadline
``complaints_on_time``      of those, archived at or before ``deadline_at_ms``
``satisfaction_n``/``_sum`` the 1-5 scores given, and their sum
--------------------------  --------------------------------------------------
``connect_rate``            connected / attempts
``conversion_rate``         conversions / connected (one converts only whom
                            one reached)
``long_call_share``         long_calls / connected
``order_success_rate``      orders_succeeded / orders: of the orders taken, the
                            share whose call ended in success
``complaint_timeliness``    complaints_on_time / complaints_archived
``aht_s``                   talk_s / connected: average handling time, seconds
``satisfaction``            satisfaction_sum / satisfaction_n
==========================  ==================================================

Where and when a row counts:

* A result's day is its ``recorded_at_ms`` cut in the configured time zone
  (default Asia/Shanghai); a result without one has no day and is left out.
  Its site is the ``site`` it was recorded at (else its agent's site); its
  agent is ``agent``; its team is that agent's ``team`` as the ``users`` row
  holds it now. Membership history is not kept (``team`` is last-writer-wins),
  so an agent who moved team counts, for every day, with the team they are in.
* A complaint's day is when it was archived. The schema has no archived time,
  so it is the wall-clock part of the HLC stamp of the task's ``status`` field
  (`archived_at_ms` below): the status lattice keeps the latest stamp among
  equal statuses, so after sync it is the same at every node. Its owner is the
  ``first_responder`` (else the ``assignee``); its site the task's ``site``
  (else the owner's). Tickets without a deadline have nothing to be timely
  against and are left out.
* Deleted rows (tombstones: erasure, retention) count nowhere. A row with no
  agent counts in its site's row only; one with no team, in no team row.

Team rows are keyed by (site, team): a team is the users of one team name at
one site. Every count is an integer sum, so the figures do not depend on the
order rows arrive in, and the rates are one division at the end.

`KpiTally` is fed rows one at a time (a page at a time from the store), so HQ's
millions of results never need to be in memory at once; `kpis` is the same over
iterables. Neither imports a web framework, a database driver or an HTTP client.
"""

from __future__ import annotations

import csv
import io
import re
import typing
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

Dimension = Literal["agent", "team", "site"]
DIMENSIONS: tuple[str, ...] = typing.get_args(Dimension)
DEFAULT_TZ = "Asia/Shanghai"
#: the longest period one report covers, in days (a leap year)
MAX_DAYS = 366
#: the person answered
CONNECTED = frozenset({"connected", "success", "refused", "callback_requested"})
CONVERSION = "success"
#: a connected call longer than this counts as a long call
LONG_CALL_S = 18
COMPLAINT = "complaint"
ARCHIVED = "archived"

#: the counts of a row, in column order (the accumulator's slots)
COUNTS: tuple[str, ...] = (
    "attempts", "connected", "conversions", "long_calls", "talk_s", "orders", "orders_succeeded",
    "complaints_archived", "complaints_on_time", "satisfaction_n", "satisfaction_sum",
)
#: the fields of a live result the tally reads (what a store need fetch)
RESULT_FIELDS: tuple[str, ...] = ("outcome", "duration_s", "order_id", "satisfaction", "agent", "site",
                                  "recorded_at_ms")
RATES: tuple[str, ...] = (
    "connect_rate", "conversion_rate", "long_call_share", "order_success_rate", "complaint_timeliness", "aht_s",
    "satisfaction",
)
(_ATT, _CON, _CONV, _LONG, _TALK, _ORD, _ORD_OK, _CMP, _CMP_OK, _SAT_N, _SAT_SUM) = range(len(COUNTS))


class KpiRow(msgspec.Struct, kw_only=True):
    """The KPIs of one agent, team or site on one day. Ids, codes and counts only:
    no personal information."""

    dimension: Dimension
    #: the agent's user id, the team's name, or the site's node id
    key: str
    #: the site the row belongs to (for a site row, ``key`` itself)
    site: str
    day: date
    attempts: int
    connected: int
    conversions: int
    long_calls: int
    talk_s: int
    orders: int
    orders_succeeded: int
    complaints_archived: int
    complaints_on_time: int
    satisfaction_n: int
    satisfaction_sum: int
    connect_rate: float | None
    conversion_rate: float | None
    long_call_share: float | None
    order_success_rate: float | None
    complaint_timeliness: float | None
    aht_s: float | None
    satisfaction: float | None


class BadReportError(ValueError):
    """A report that cannot be made: ``day_from`` after ``day_to``, a period longer
    than `MAX_DAYS`, an unknown dimension or time zone. ``param`` names what to fix."""

    code = "bad_report"

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        self.message = problem
        super().__init__(problem)

    def details(self) -> dict[str, object]:
        return {"param": param_name(self.param), "max_days": MAX_DAYS}


def param_name(name: str) -> str:
    """The query parameter a keyword stands for (``day_from`` is ``from``)."""
    return {"day_from": "from", "day_to": "to"}.get(name, name)


_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_day(param: str, text: str) -> date:
    """The day ``text`` names (``YYYY-MM-DD``); raises `BadReportError` naming
    ``param`` (the value is not repeated)."""
    try:
        if _DAY.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise BadReportError(param, f"`{param_name(param)}` is no calendar day: give YYYY-MM-DD, such as 2026-11-01")


def check_dimension(by: str) -> Dimension:
    """``by`` as a `Dimension`; raises `BadReportError` listing the choices."""
    if by not in DIMENSIONS:
        raise BadReportError("by", f"`by` is one of {', '.join(DIMENSIONS)}")
    return by  # type: ignore[return-value]


def zone(tz: str) -> ZoneInfo:
    """The time zone ``tz`` (an IANA name); raises `BadReportError`."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadReportError("tz", f"`{tz}` is no IANA time zone name (such as `{DEFAULT_TZ}`)") from None


def check_period(day_from: date, day_to: date) -> None:
    """Raises `BadReportError` unless ``day_from`` <= ``day_to`` and the period is
    at most `MAX_DAYS` days, both included."""
    if day_from > day_to:
        raise BadReportError("day_from", f"`from` ({day_from}) is after `to` ({day_to}); "
                                         "give a `from` on or before `to`")
    days = (day_to - day_from).days + 1
    if days > MAX_DAYS:
        raise BadReportError("day_to", f"the period covers {days} days; a report covers at most {MAX_DAYS}: "
                                       "narrow `from`..`to`")


def day_starts_ms(day_from: date, day_to: date, tz: str = DEFAULT_TZ) -> list[int]:
    """The start (Unix ms) of each day from ``day_from`` to ``day_to`` in ``tz``,
    then the end of ``day_to``: a day with a DST change is as long as it is."""
    check_period(day_from, day_to)
    info = zone(tz)
    n = (day_to - day_from).days + 1
    return [int(datetime.combine(day_from + timedelta(days=i), time(0), tzinfo=info).timestamp()) * 1000
            for i in range(n + 1)]


def period_ms(day_from: date, day_to: date, tz: str = DEFAULT_TZ) -> tuple[int, int]:
    """[start, end) of the period in Unix ms: what a store reads results in."""
    starts = day_starts_ms(day_from, day_to, tz)
    return starts[0], starts[-1]


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


class KpiTally:
    """Counts rows into per-(key, site, day) buckets of one dimension; `rows`
    gives the `KpiRow`s. ``users`` (user id -> its row) is read first and held:
    the one collection kept whole, and a small one. ``site`` and ``team`` keep
    only the work of that site, or of that team's members."""

    def __init__(self, users: Iterable[Mapping[str, Any]], *, by: Dimension, day_from: date, day_to: date,
                 tz: str = DEFAULT_TZ, site: str | None = None, team: str | None = None) -> None:
        self.by = check_dimension(by)
        self.day_from = day_from
        self._starts = day_starts_ms(day_from, day_to, tz)
        self.site = site
        self.team = team
        #: user id -> (site, team)
        self._users: dict[str, tuple[str | None, str | None]] = {
            u["row_id"]: (u.get("site"), u.get("team")) for u in users if not u.get("deleted")
        }
        self._buckets: dict[tuple[str, str, int], list[int]] = {}

    def _day(self, at_ms: int | None) -> int | None:
        """The index of the day ``at_ms`` falls on, or None outside the period."""
        if at_ms is None:
            return None
        i = bisect_right(self._starts, at_ms) - 1
        return i if 0 <= i < len(self._starts) - 1 else None

    def _bucket(self, who: str | None, site: str | None, day: int) -> list[int] | None:
        """The counts this row adds to, or None when it counts in no row here."""
        user_site, user_team = self._users.get(who, (None, None)) if who is not None else (None, None)
        site = site or user_site
        if site is None or (self.site is not None and site != self.site):
            return None
        if self.team is not None and user_team != self.team:
            return None
        key = {"agent": who, "team": user_team, "site": site}[self.by]
        if key is None:
            return None
        bucket = self._buckets.get((key, site, day))
        if bucket is None:
            bucket = self._buckets[(key, site, day)] = [0] * len(COUNTS)
        return bucket

    def add_result(self, row: Mapping[str, Any]) -> None:
        """Count one ``results`` row (as the store materializes it)."""
        if row.get("deleted"):
            return
        day = self._day(row.get("recorded_at_ms"))
        if day is None:
            return
        b = self._bucket(row.get("agent"), row.get("site"), day)
        if b is None:
            return
        outcome = row.get("outcome")
        if outcome is not None:
            b[_ATT] += 1
            if outcome in CONNECTED:
                duration = row.get("duration_s") or 0
                b[_CON] += 1
                b[_TALK] += duration
                if duration > LONG_CALL_S:
                    b[_LONG] += 1
            if outcome == CONVERSION:
                b[_CONV] += 1
        if row.get("order_id") is not None:
            b[_ORD] += 1
            if outcome == CONVERSION:
                b[_ORD_OK] += 1
        score = row.get("satisfaction")
        if score is not None:
            b[_SAT_N] += 1
            b[_SAT_SUM] += score

    def add_task(self, row: Mapping[str, Any]) -> None:
        """Count one ``tasks`` row carrying ``archived_at_ms``: the wall time of its
        ``status`` stamp (`sync.hlc.wall_ms_of`), for an archived task. Tasks of
        another kind or status count nowhere."""
        if row.get("deleted") or row.get("kind") != COMPLAINT or row.get("status") != ARCHIVED:
            return
        deadline = row.get("deadline_at_ms")
        archived = row.get("archived_at_ms")
        day = self._day(archived)
        if deadline is None or day is None:
            return
        b = self._bucket(row.get("first_responder") or row.get("assignee"), row.get("site"), day)
        if b is None:
            return
        b[_CMP] += 1
        if archived <= deadline:  # type: ignore[operator]
            b[_CMP_OK] += 1

    def rows(self) -> list[KpiRow]:
        """The rows with anything counted, by day, site, then key."""
        out = []
        for (key, site, day), c in sorted(self._buckets.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
            out.append(KpiRow(
                dimension=self.by, key=key, site=site, day=self.day_from + timedelta(days=day),
                **dict(zip(COUNTS, c)),
                connect_rate=_rate(c[_CON], c[_ATT]),
                conversion_rate=_rate(c[_CONV], c[_CON]),
                long_call_share=_rate(c[_LONG], c[_CON]),
                order_success_rate=_rate(c[_ORD_OK], c[_ORD]),
                complaint_timeliness=_rate(c[_CMP_OK], c[_CMP]),
                aht_s=_rate(c[_TALK], c[_CON]),
                satisfaction=_rate(c[_SAT_SUM], c[_SAT_N]),
            ))
        return out


def kpis(results: Iterable[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
         users: Iterable[Mapping[str, Any]], *, by: Dimension, day_from: date, day_to: date,
         tz: str = DEFAULT_TZ, site: str | None = None, team: str | None = None) -> list[KpiRow]:
    """The KPI rows of dimension ``by`` for each day from ``day_from`` to
    ``day_to`` (both included, in ``tz``), from the rows given (each iterable is
    read once; ``tasks`` carry ``archived_at_ms``, see `KpiTally.add_task`).
    Raises `BadReportError` for a bad period, dimension or zone."""
    tally = KpiTally(users, by=by, day_from=day_from, day_to=day_to, tz=tz, site=site, team=team)
    for row in results:
        tally.add_result(row)
    for row in tasks:
        tally.add_task(row)
    return tally.rows()


CSV_COLUMNS: tuple[str, ...] = ("dimension", "key", "site", "day", *COUNTS, *RATES)


def kpi_csv(rows: Iterable[KpiRow]) -> str:
    """The rows as CSV (RFC 4180, a header line first); a null rate is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = [getattr(row, name) for name in CSV_COLUMNS]
        writer.writerow(["" if v is None else v.isoformat() if isinstance(v, date) else v for v in values])
    return out.getvalue()
