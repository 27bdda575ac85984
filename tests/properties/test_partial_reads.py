"""What the inbox leaves unread changes none of its answers (issue 6, item 1).

The inbox reads part of each row and part of the call history, for speed:

* customers with `INBOX_CUSTOMER_FIELDS` only: the offer check reads no other
  customer field (`CUSTOMER_FIELDS`), row admission no other field of any
  governed row (`ADMISSION_FIELDS`), and a row cut to those is admitted exactly
  as the whole row is;
* results recorded since `results_since` only: the offer check gives the same
  answer with the cut history as with the whole, whatever the zones, spacings
  and times.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.policy import ADMISSION_FIELDS, Policy, Principal, load_policy
from server.work.offer import CUSTOMER_FIELDS, offer_check, results_since, spacing_ms_of
from server.work_api import INBOX_CUSTOMER_FIELDS
from sync.schema import COLLECTIONS, CallOutcome, TaskKind, TaskStatus
from tests.policy.conftest import POLICY_FILE
from tests.work.clock import CAL, CUSTOMER, DAY, HOUR, TASK, at

POLICY: Policy = load_policy(POLICY_FILE)
ZONES = (None, "Asia/Shanghai", "Europe/London", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago")
START = at(2025, 1, 1)
OTHER_TASK = "01JD0QK2M6X3Z1V9A8B7C6D5T9"


class Guarded(dict[str, Any]):
    """A row that fails the test when a field outside ``allowed`` is read."""

    def __init__(self, row: dict[str, Any], allowed: Iterable[str]) -> None:
        super().__init__(row)
        self.allowed = frozenset(allowed)

    def _check(self, key: object) -> None:
        assert key in self.allowed, f"read {key!r}, which the partial read leaves out"

    def __getitem__(self, key: str) -> Any:
        self._check(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._check(key)
        return super().__contains__(key)


# ---------------------------------------------------------------- strategies


def mostly(usual: Any, *others: Any) -> st.SearchStrategy[Any]:
    """``usual`` nine times in ten: most drawn tasks get past the early refusals
    to the checks that read the history."""
    return st.sampled_from((usual,) * 9 * len(others) + others)


tasks = st.fixed_dictionaries({
    "row_id": st.just(TASK), "customer_id": st.just(CUSTOMER), "deleted": mostly(False, True),
    "kind": st.sampled_from(typing.get_args(TaskKind)),
    "status": mostly("assigned", *typing.get_args(TaskStatus)),
    "attempts": st.integers(0, 4), "campaign_id": st.just("c1"),
    "due_at_ms": st.none() | st.integers(-3 * DAY, 3 * DAY), "deadline_at_ms": st.none() | st.integers(-DAY, 9 * DAY),
})
customers = st.fixed_dictionaries({
    "row_id": st.just(CUSTOMER), "deleted": mostly(False, True), "status": mostly("active", "closed"),
    "suppression": mostly([], ["do_not_call"], ["refused_marketing"], ["blacklist"]),
    "tags": mostly([], ["invalid_number"], ["vip"]), "tz": st.sampled_from(ZONES),
    "star_level": st.integers(0, 7), "segment": st.sampled_from(("gold", "silver")),
    "home_branch": st.sampled_from(("branch-a", "branch-b")), "name": st.just(b"sealed"),
})
campaigns = st.none() | st.fixed_dictionaries({
    "row_id": st.just("c1"), "status": mostly("active", "closed"), "deleted": st.just(False),
    "window_start_min": st.integers(0, 1440), "window_end_min": st.integers(0, 1440),
    "max_attempts": st.integers(1, 20),
    # whole hours, as the history's times are near them: spacings ending near a result
    "retry_spacing_min": st.one_of(st.integers(0, 10_080), st.integers(0, 168).map(lambda h: h * 60)),
})
#: results in the last ten days, near whole hours before now
hours_ago = st.one_of(st.integers(-240, 0), st.integers(-30, 0))  # many today, to reach the daily cap
histories = st.lists(st.tuples(st.builds(lambda h, ms: h * HOUR + ms, hours_ago, st.integers(0, HOUR)),
                               mostly("no_answer", None, *typing.get_args(CallOutcome)), mostly(True, False)),
                     max_size=12)


def _at(offset: int | None, now: int) -> int | None:
    return None if offset is None else now + offset


@settings(max_examples=1500, deadline=None)
@given(task=tasks, customer=customers, campaign=campaigns, history=histories, now=st.integers(0, 366 * DAY))
def test_the_offer_check_answers_the_same_from_recent_results_and_customer_fields(
    task: dict[str, Any], customer: dict[str, Any], campaign: dict[str, Any] | None,
    history: list[tuple[int, str | None, bool]], now: int,
) -> None:
    now += START
    task = {**task, "due_at_ms": _at(task["due_at_ms"], now), "deadline_at_ms": _at(task["deadline_at_ms"], now)}
    if campaign is None:
        task["campaign_id"] = None
    results = [{"row_id": f"r{i:02d}", "task_id": TASK if mine else OTHER_TASK, "customer_id": CUSTOMER,
                "outcome": outcome, "recorded_at_ms": now + offset, "deleted": False}
               for i, (offset, outcome, mine) in enumerate(history)]
    whole = offer_check(task, customer, campaign, results, now_ms=now, calendar=CAL)
    since = results_since(now, [spacing_ms_of(task, campaign)])
    recent = [r for r in results if r["recorded_at_ms"] >= since]
    part = {k: customer[k] for k in INBOX_CUSTOMER_FIELDS if k in customer}
    assert offer_check(task, Guarded(part, CUSTOMER_FIELDS), campaign, recent, now_ms=now, calendar=CAL) == whole


PRINCIPALS = (
    Principal(user_id="root", role="hq_admin", site="hq", site_kind="hq"),
    Principal(user_id="s1", role="supervisor", site="branch-a", site_kind="branch", team="t1"),
    Principal(user_id="a1", role="agent", site="branch-a", site_kind="branch", team="t1",
              team_members=frozenset({"a1", "a2"})),
    Principal(user_id="am1", role="account_manager", site="branch-a", site_kind="branch"),
    Principal(user_id="am1", role="account_manager", site="branch-a.m1", site_kind="mobile"),
    Principal(user_id="p1", role="partner_agent", site="partner-x", site_kind="partner", campaigns=frozenset({"c1"})),
    Principal(user_id="p2", role="partner_supervisor", site="partner-x", site_kind="partner",
              campaigns=frozenset({"c1"})),
    Principal(user_id="dpo", role="auditor", site="hq", site_kind="hq"),
)
#: values that make the row rules answer both ways: the principals' ids, sites and campaigns, and others
VALUES = st.sampled_from((None, "a1", "a2", "a9", "am1", "p1", "hq", "branch-a", "branch-b", "branch-a.m1",
                          "partner-x", "c1", "c2"))


@st.composite
def governed_rows(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    collection = draw(st.sampled_from(sorted(ADMISSION_FIELDS)))
    row: dict[str, Any] = {"row_id": "01JD0QK2M6X3Z1V9A8B7C6D5R1"}
    for name, column in COLLECTIONS[collection].columns.items():
        if column.field.merge == "add_wins_set":
            row[name] = draw(st.lists(VALUES.filter(lambda v: v is not None), max_size=2))
        else:
            row[name] = draw(VALUES)
    return collection, row


@settings(max_examples=400, deadline=None)
@given(row=governed_rows(), who=st.sampled_from(PRINCIPALS))
def test_a_row_cut_to_its_admission_fields_is_admitted_as_the_whole_row(
    row: tuple[str, dict[str, Any]], who: Principal
) -> None:
    collection, whole = row
    fields = ADMISSION_FIELDS[collection]
    part = Guarded({k: whole[k] for k in ("row_id", *fields)}, ("row_id", *fields))
    assert POLICY.admits_row(who, collection, part) == POLICY.admits_row(who, collection, whole)
