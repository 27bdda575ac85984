"""Laws of the KPI report (hypothesis): the order rows arrive in changes nothing,
agents' counts add up to their site's, and a period is the sum of its days."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.work.kpi import COUNTS, KpiRow, kpis, period_ms

DAY_FROM, DAY_TO = date(2026, 3, 1), date(2026, 3, 4)
SINCE, UNTIL = period_ms(DAY_FROM, DAY_TO)
SITES = ("branch-a", "branch-b")
OUTCOMES = ("connected", "no_answer", "powered_off", "out_of_area", "suspended", "vacant_number", "refused", "busy",
            "callback_requested", "success", None)

users = st.lists(
    st.fixed_dictionaries({"site": st.sampled_from(SITES), "team": st.sampled_from(["north", "south", None])}),
    min_size=1, max_size=6,
).map(lambda us: [{"row_id": f"u{i}", **u} for i, u in enumerate(us)])

#: stretches a day past each end of the period, to see rows outside it left out
times = st.integers(SINCE - 86_400_000, UNTIL + 86_400_000)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    us = draw(users)
    agents = st.sampled_from([u["row_id"] for u in us])
    results = draw(st.lists(st.fixed_dictionaries({
        "outcome": st.sampled_from(OUTCOMES), "agent": agents, "site": st.sampled_from((*SITES, None)),
        "duration_s": st.integers(0, 600), "order_id": st.sampled_from([None, "o1"]),
        "satisfaction": st.sampled_from([None, 1, 3, 5]), "recorded_at_ms": times, "deleted": st.booleans(),
    }), max_size=40))
    tasks = draw(st.lists(st.fixed_dictionaries({
        "kind": st.sampled_from(["complaint", "complaint", "care"]),
        "status": st.sampled_from(["archived", "archived", "done", "open"]),
        "first_responder": st.one_of(st.none(), agents), "assignee": agents,
        "site": st.sampled_from((*SITES, None)), "deadline_at_ms": st.one_of(st.none(), times),
        "archived_at_ms": times, "deleted": st.booleans(),
    }), max_size=15))
    return ([{"row_id": f"r{i}", **r} for i, r in enumerate(results)],
            [{"row_id": f"t{i}", **t} for i, t in enumerate(tasks)], us)


def counts(row: KpiRow) -> tuple[int, ...]:
    return tuple(getattr(row, c) for c in COUNTS)


def summed(rows: list[KpiRow], key: Any) -> dict[Any, tuple[int, ...]]:
    out: dict[Any, list[int]] = {}
    for row in rows:
        acc = out.setdefault(key(row), [0] * len(COUNTS))
        for i, n in enumerate(counts(row)):
            acc[i] += n
    return {k: tuple(v) for k, v in out.items()}


@settings(max_examples=150, deadline=None)
@given(worlds(), st.sampled_from(["agent", "team", "site"]), st.randoms(use_true_random=False))
def test_the_order_of_rows_does_not_change_the_report(world: Any, by: str, rnd: Any) -> None:
    results, tasks, us = world
    before = kpis(results, tasks, us, by=by, day_from=DAY_FROM, day_to=DAY_TO)  # type: ignore[arg-type]
    for rows in (results, tasks, us):
        rnd.shuffle(rows)
    after = kpis(iter(results), iter(tasks), iter(us), by=by, day_from=DAY_FROM, day_to=DAY_TO)  # type: ignore[arg-type]
    assert after == before


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_agents_counts_add_up_to_their_sites_and_teams_stay_within(world: Any) -> None:
    results, tasks, us = world
    reports = {by: kpis(results, tasks, us, by=by, day_from=DAY_FROM, day_to=DAY_TO)  # type: ignore[arg-type]
               for by in ("agent", "team", "site")}
    by_site_day = summed(reports["agent"], lambda r: (r.site, r.day))
    assert by_site_day == {(r.site, r.day): counts(r) for r in reports["site"]}
    teams = summed(reports["team"], lambda r: (r.site, r.day))
    for where, team_counts in teams.items():
        assert all(t <= s for t, s in zip(team_counts, by_site_day[where]))


@settings(max_examples=100, deadline=None)
@given(worlds(), st.sampled_from(["agent", "site"]))
def test_a_period_is_the_sum_of_its_days(world: Any, by: str) -> None:
    results, tasks, us = world
    whole = kpis(results, tasks, us, by=by, day_from=DAY_FROM, day_to=DAY_TO)  # type: ignore[arg-type]
    days = []
    for i in range((DAY_TO - DAY_FROM).days + 1):
        day = DAY_FROM + timedelta(days=i)
        days += kpis(results, tasks, us, by=by, day_from=day, day_to=day)  # type: ignore[arg-type]
    assert days == whole
