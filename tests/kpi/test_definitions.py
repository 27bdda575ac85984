"""Each KPI of server/work/kpi.py against figures worked out by hand."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.work.kpi import BadReportError, KpiRow, kpi_csv, kpis, parse_day, period_ms

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 2)
USERS = [
    {"row_id": "u-ana", "site": "branch-a", "team": "north"},
    {"row_id": "u-bo", "site": "branch-a", "team": "north"},
    {"row_id": "u-cy", "site": "branch-a", "team": "south"},
    {"row_id": "u-di", "site": "branch-b", "team": None},
]


def at(day: date, hour: int, minute: int = 0, tz: ZoneInfo = SHANGHAI) -> int:
    """Unix ms of ``day`` ``hour``:``minute`` in ``tz``."""
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).timestamp()) * 1000


_n = 0


def result(outcome: str | None, *, agent: str | None = "u-ana", site: str | None = "branch-a",
           duration_s: int = 0, order_id: str | None = None, satisfaction: int | None = None,
           when: int | None = None, deleted: bool = False) -> dict[str, Any]:
    global _n
    _n += 1
    return {"row_id": f"r{_n:05d}", "outcome": outcome, "agent": agent, "site": site, "duration_s": duration_s,
            "order_id": order_id, "satisfaction": satisfaction,
            "recorded_at_ms": at(DAY, 10) if when is None else when, "deleted": deleted,
            "task_id": None, "customer_id": None}


def complaint(*, archived_at_ms: int | None, deadline_at_ms: int | None, owner: str | None = "u-ana",
              assignee: str | None = None, site: str | None = "branch-a", kind: str = "complaint",
              status: str = "archived", deleted: bool = False) -> dict[str, Any]:
    global _n
    _n += 1
    return {"row_id": f"t{_n:05d}", "kind": kind, "status": status, "first_responder": owner, "assignee": assignee,
            "site": site, "deadline_at_ms": deadline_at_ms, "archived_at_ms": archived_at_ms, "deleted": deleted}


def one(rows: list[KpiRow], key: str) -> KpiRow:
    (row,) = [r for r in rows if r.key == key]
    return row


def report(results: list[dict[str, Any]], tasks: list[dict[str, Any]] = (), *, by: str = "site",  # type: ignore[assignment]
           day_from: date = DAY, day_to: date = DAY, **kw: Any) -> list[KpiRow]:
    return kpis(results, tasks, USERS, by=by, day_from=day_from, day_to=day_to, **kw)  # type: ignore[arg-type]


def test_call_outcomes_make_attempts_connections_and_conversions() -> None:
    rows = [result("no_answer"), result("busy"), result("powered_off"), result("out_of_area"), result("suspended"),
            result("vacant_number"), result("connected", duration_s=30), result("refused", duration_s=10),
            result("callback_requested", duration_s=19), result("success", duration_s=18),
            result(None, satisfaction=4)]  # a visit report: no call
    (r,) = report(rows)
    assert (r.attempts, r.connected, r.conversions) == (10, 4, 1)
    assert r.connect_rate == 4 / 10
    assert r.conversion_rate == 1 / 4
    # over 18 s: 30 and 19, not 18 (not over) nor 10; unanswered calls never count
    assert r.long_calls == 2 and r.long_call_share == 2 / 4
    assert r.talk_s == 30 + 10 + 19 + 18 and r.aht_s == 77 / 4


def test_unanswered_durations_are_no_handling_time() -> None:
    (r,) = report([result("no_answer", duration_s=40), result("connected", duration_s=20)])
    assert r.aht_s == 20.0 and r.long_calls == 1 and r.long_call_share == 1.0


def test_order_success_is_successes_with_an_order_over_orders_taken() -> None:
    rows = [result("success", order_id="o1"), result("success", order_id="o2"), result("success"),
            result("refused", order_id="o3"), result("connected")]
    (r,) = report(rows)
    assert (r.orders, r.orders_succeeded) == (3, 2)
    assert r.order_success_rate == 2 / 3
    assert r.conversions == 3 and r.conversion_rate == 3 / 5


def test_satisfaction_is_the_mean_of_the_scores_given() -> None:
    (r,) = report([result("connected", satisfaction=5), result("success", satisfaction=2), result("connected"),
                   result(None, satisfaction=4)])
    assert (r.satisfaction_n, r.satisfaction_sum) == (3, 11)
    assert r.satisfaction == 11 / 3


def test_a_rate_with_an_empty_denominator_is_null_not_zero() -> None:
    (r,) = report([result("no_answer")])
    assert r.attempts == 1 and r.connect_rate == 0.0
    assert r.conversion_rate is None and r.long_call_share is None and r.aht_s is None
    assert r.order_success_rate is None and r.satisfaction is None and r.complaint_timeliness is None
    (visit,) = report([result(None, satisfaction=3)])
    assert visit.attempts == 0 and visit.connect_rate is None and visit.satisfaction == 3.0


def test_complaint_timeliness_is_archived_by_the_deadline_over_archived() -> None:
    deadline = at(DAY, 18)
    tasks = [complaint(archived_at_ms=at(DAY, 9), deadline_at_ms=deadline),
             complaint(archived_at_ms=deadline, deadline_at_ms=deadline),  # at the deadline: on time
             complaint(archived_at_ms=deadline + 1, deadline_at_ms=deadline),
             complaint(archived_at_ms=at(DAY, 9), deadline_at_ms=None),  # no deadline: not measured
             complaint(archived_at_ms=at(DAY, 9), deadline_at_ms=deadline, status="done"),
             complaint(archived_at_ms=at(DAY, 9), deadline_at_ms=deadline, kind="care"),
             complaint(archived_at_ms=at(DAY, 9), deadline_at_ms=deadline, deleted=True)]
    (r,) = report([], tasks)
    assert (r.complaints_archived, r.complaints_on_time) == (3, 2)
    assert r.complaint_timeliness == 2 / 3
    assert r.attempts == 0 and r.connect_rate is None


def test_a_complaint_counts_for_its_first_responder_else_its_assignee() -> None:
    deadline = at(DAY, 18)
    tasks = [complaint(archived_at_ms=at(DAY, 9), deadline_at_ms=deadline, owner="u-bo", assignee="u-cy"),
             complaint(archived_at_ms=at(DAY, 19), deadline_at_ms=deadline, owner=None, assignee="u-cy")]
    rows = report([], tasks, by="agent")
    assert [(r.key, r.complaints_archived, r.complaints_on_time) for r in rows] == [("u-bo", 1, 1), ("u-cy", 1, 0)]
    teams = report([], tasks, by="team")
    assert [(r.key, r.complaint_timeliness) for r in teams] == [("north", 1.0), ("south", 0.0)]


def test_days_are_cut_at_midnight_in_the_time_zone() -> None:
    nov1, nov2 = date(2026, 11, 1), date(2026, 11, 2)
    rows = [result("connected", when=at(nov2, 0) - 1),  # 23:59:59.999 on 1 Nov in Shanghai
            result("connected", when=at(nov2, 0)),  # midnight: 2 Nov
            result("success", when=at(nov2, 7, 59))]  # 2 Nov, still 1 Nov 23:59 in UTC
    out = report(rows, day_from=nov1, day_to=nov2)
    assert [(r.day, r.attempts, r.conversions) for r in out] == [(nov1, 1, 0), (nov2, 2, 1)]
    utc = report(rows, day_from=nov1, day_to=nov2, tz="UTC")
    assert [(r.day, r.attempts) for r in utc] == [(nov1, 3)]
    # outside the period: left out, not clamped
    assert report(rows, day_from=nov2, day_to=nov2)[0].attempts == 2
    assert report(rows, day_from=date(2026, 11, 3), day_to=date(2026, 11, 3)) == []


def test_a_complaint_counts_on_the_day_it_was_archived() -> None:
    nov1, nov2 = date(2026, 11, 1), date(2026, 11, 2)
    tasks = [complaint(archived_at_ms=at(nov2, 0) - 1, deadline_at_ms=at(nov2, 12)),
             complaint(archived_at_ms=at(nov2, 13), deadline_at_ms=at(nov2, 12))]
    out = report([], tasks, day_from=nov1, day_to=nov2)
    assert [(r.day, r.complaints_archived, r.complaint_timeliness) for r in out] == [(nov1, 1, 1.0), (nov2, 1, 0.0)]


def test_a_day_with_a_dst_change_is_as_long_as_it_is() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    change = date(2026, 10, 25)  # 25 hours long in Berlin
    rows = [result("connected", when=at(change, 0, tz=berlin)),
            result("connected", when=at(date(2026, 10, 26), 0, tz=berlin) - 1)]
    out = report(rows, day_from=change, day_to=change, tz="Europe/Berlin")
    assert [(r.day, r.attempts) for r in out] == [(change, 2)]
    start, end = period_ms(change, change, "Europe/Berlin")
    assert end - start == 25 * 3_600_000


def test_agent_team_and_site_rows() -> None:
    rows = [result("connected", agent="u-ana"), result("success", agent="u-bo"), result("no_answer", agent="u-cy"),
            result("connected", agent="u-di", site="branch-b"), result("busy", agent=None)]
    agents = report(rows, by="agent")
    assert [(r.key, r.site, r.attempts) for r in agents] == [
        ("u-ana", "branch-a", 1), ("u-bo", "branch-a", 1), ("u-cy", "branch-a", 1), ("u-di", "branch-b", 1)]
    teams = report(rows, by="team")  # u-di has no team; the agentless call has no team either
    assert [(r.key, r.site, r.attempts, r.connected) for r in teams] == [
        ("north", "branch-a", 2, 2), ("south", "branch-a", 1, 0)]
    sites = report(rows, by="site")
    assert [(r.key, r.site, r.attempts) for r in sites] == [("branch-a", "branch-a", 4), ("branch-b", "branch-b", 1)]


def test_a_result_without_a_site_counts_at_its_agents_site() -> None:
    (r,) = report([result("connected", agent="u-di", site=None)])
    assert (r.key, r.attempts) == ("branch-b", 1)
    assert report([result("connected", agent=None, site=None)]) == []


def test_an_agent_who_moved_team_counts_with_the_team_they_are_in() -> None:
    rows = [result("connected", agent="u-bo", when=at(date(2026, 11, 1), 10)),
            result("success", agent="u-bo", when=at(DAY, 10))]
    before = report(rows, by="team", day_from=date(2026, 11, 1))
    assert [(r.day.day, r.key) for r in before] == [(1, "north"), (2, "north")]
    moved = [u if u["row_id"] != "u-bo" else {**u, "team": "south"} for u in USERS]
    after = kpis(rows, [], moved, by="team", day_from=date(2026, 11, 1), day_to=DAY)
    assert [(r.day.day, r.key, r.attempts) for r in after] == [(1, "south", 1), (2, "south", 1)]
    # the agent's own rows do not move
    by_agent = kpis(rows, [], moved, by="agent", day_from=date(2026, 11, 1), day_to=DAY)
    assert [(r.key, r.attempts) for r in by_agent] == [("u-bo", 1), ("u-bo", 1)]


def test_deleted_and_undated_rows_count_nowhere() -> None:
    rows = [result("connected", deleted=True), result("connected"), {**result("connected"), "recorded_at_ms": None}]
    (r,) = report(rows)
    assert r.attempts == 1
    gone = [u for u in USERS if u["row_id"] != "u-bo"] + [{"row_id": "u-bo", "site": "branch-a", "team": "north",
                                                             "deleted": True}]
    assert kpis([result("connected", agent="u-bo")], [], gone, by="team", day_from=DAY, day_to=DAY) == []


def test_site_and_team_narrow_the_report() -> None:
    rows = [result("connected", agent="u-ana"), result("success", agent="u-cy"),
            result("connected", agent="u-di", site="branch-b")]
    assert [r.key for r in report(rows, by="agent", site="branch-b")] == ["u-di"]
    assert [r.key for r in report(rows, by="agent", team="south")] == ["u-cy"]
    (r,) = report(rows, by="site", team="north")
    assert (r.key, r.attempts, r.conversions) == ("branch-a", 1, 0)


@pytest.mark.parametrize(("day_from", "day_to", "param"), [
    (date(2026, 11, 2), date(2026, 11, 1), "from"),
    (date(2025, 1, 1), date(2026, 1, 2), "to"),  # 367 days
])
def test_a_bad_period_is_refused_naming_what_to_fix(day_from: date, day_to: date, param: str) -> None:
    with pytest.raises(BadReportError) as caught:
        kpis([], [], [], by="site", day_from=day_from, day_to=day_to)
    assert caught.value.details()["param"] == param
    assert f"`{param}`" in caught.value.message


def test_a_year_of_366_days_is_allowed_and_bad_names_are_refused() -> None:
    assert kpis([], [], [], by="site", day_from=date(2028, 1, 1), day_to=date(2028, 12, 31)) == []
    with pytest.raises(BadReportError, match="time zone"):
        kpis([], [], [], by="site", day_from=DAY, day_to=DAY, tz="Mars/Olympus")
    with pytest.raises(BadReportError, match="`by`"):
        kpis([], [], [], by="planet", day_from=DAY, day_to=DAY)  # type: ignore[arg-type]


def test_csv_holds_every_column_and_null_as_an_empty_cell() -> None:
    rows = report([result("connected", duration_s=20, satisfaction=5), result("no_answer")], by="agent")
    parsed = list(csv.DictReader(io.StringIO(kpi_csv(rows))))
    assert len(parsed) == 1
    line = parsed[0]
    assert (line["dimension"], line["key"], line["site"], line["day"]) == ("agent", "u-ana", "branch-a", "2026-11-02")
    assert (line["attempts"], line["connected"], line["talk_s"]) == ("2", "1", "20")
    assert float(line["connect_rate"]) == 0.5 and float(line["aht_s"]) == 20.0
    assert line["order_success_rate"] == "" and line["complaint_timeliness"] == ""
    assert set(line) == set(KpiRow.__struct_fields__)


def test_days_are_read_as_calendar_days_only() -> None:
    assert parse_day("day_from", "2028-02-29") == date(2028, 2, 29)
    for text in ("2026-02-29", "2026-13-01", "20261101", "2026-W44-1", "2026-11-1", " 2026-11-05", ""):
        with pytest.raises(BadReportError) as caught:
            parse_day("day_to", text)
        assert caught.value.details()["param"] == "to" and "YYYY-MM-DD" in caught.value.message
        assert text.strip() == "" or text not in caught.value.message
