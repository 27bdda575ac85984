"""The sweep: care cadence by star level, promotion, birthday care, revisit expiry, sales reps."""

from __future__ import annotations

from server.work.cadence import sweep
from server.work.ids import rule_row_id
from sync.edits import Edit
from tests.work.clock import CAL, CUSTOMER, DAY, HOUR, TASK, at, customer, result


def _made(edits: list[Edit]) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    for e in edits:
        if e.collection == "tasks":
            rows.setdefault(e.row_id, {})[e.field] = e.value
    return rows


def _care_task(kind: str = "care") -> dict[str, object]:
    return {"row_id": TASK, "customer_id": CUSTOMER, "kind": kind, "status": "done", "deleted": False}


def test_care_is_due_by_star_level_interval() -> None:
    contact = at(2025, 1, 15, 10)
    history = [result("r1", contact, "connected")]
    for star, months in ((7, 1), (6, 2), (5, 3), (3, 5), (0, 5)):
        c = customer(star_level=star, star_seen=star)
        due = CAL.add_months(contact, months)
        assert _made(sweep([c], [_care_task()], history, now_ms=due - 1, calendar=CAL)) == {}
        made = _made(sweep([c], [_care_task()], history, now_ms=due, calendar=CAL))
        assert len(made) == 1, star
        (task,) = made.values()
        assert task["kind"] == "care" and task["due_at_ms"] == due and task["site"] == "branch-a"
        assert task["deadline_at_ms"] == CAL.add_months(contact, 2 * months)


def test_only_contacts_count_and_an_open_care_task_is_enough() -> None:
    contact = at(2025, 1, 15, 10)
    now = at(2025, 2, 20, 10)
    c = customer(star_level=7, star_seen=7)
    no_answer = [result("r1", at(2025, 2, 10, 10), "no_answer")]
    assert _made(sweep([c], [_care_task()], [result("r0", contact, "connected"), *no_answer], now_ms=now, calendar=CAL))
    open_task = {**_care_task(), "row_id": "01JD0QK2M6X3Z1V9A8B7C6D5T7", "status": "assigned"}
    assert _made(sweep([c], [_care_task(), open_task], [], now_ms=now, calendar=CAL)) == {}
    # a visit recorded without a call outcome is a contact
    visit = [result("r2", at(2025, 2, 10, 10), None)]
    assert _made(sweep([c], [_care_task("visit")], visit, now_ms=now, calendar=CAL)) == {}


def test_the_same_period_makes_the_same_task_and_a_missed_one_a_new_one() -> None:
    c = customer(star_level=7, star_seen=7)
    history = [result("r1", at(2025, 1, 15, 10), "connected")]
    first = sweep([c], [_care_task()], history, now_ms=at(2025, 2, 16, 9), calendar=CAL)
    again = sweep([c], [_care_task()], history, now_ms=at(2025, 3, 1, 9), calendar=CAL)
    assert first == sweep([c], [_care_task()], history, now_ms=at(2025, 2, 16, 9), calendar=CAL)
    (made,) = _made(first)
    assert set(_made(again)) == {made}  # the same period: the same row id
    closed = {"row_id": made, "customer_id": CUSTOMER, "kind": "care", "status": "archived", "deleted": False}
    assert _made(sweep([c], [_care_task(), closed], history, now_ms=at(2025, 3, 1, 9), calendar=CAL)) == {}
    later = _made(sweep([c], [_care_task(), closed], history, now_ms=at(2025, 3, 16, 9), calendar=CAL))
    assert len(later) == 1 and made not in later


def test_suppressed_or_inactive_customers_get_no_care_task() -> None:
    now = at(2025, 3, 1, 9)
    assert _made(sweep([customer(star_seen=0, suppression=["refused_marketing"])], [], [], now_ms=now, calendar=CAL)) == {}
    assert _made(sweep([customer(star_seen=0, status="suspended")], [], [], now_ms=now, calendar=CAL)) == {}


def test_promotion_binds_within_three_working_days_and_visits_within_a_month() -> None:
    friday = at(2025, 3, 7, 16)
    c = customer(star_level=6, star_seen=4, assigned_agent="ag-1")
    edits = sweep([c], [_care_task()], [result("r1", friday - DAY, "connected")], now_ms=friday, calendar=CAL)
    assert Edit("customers", CUSTOMER, "star_seen", "set", 6) in edits
    assert Edit("customers", CUSTOMER, "promoted_at_ms", "set", friday) in edits
    made = _made(edits)
    bind = made[rule_row_id("bind_account_manager", CUSTOMER, 6)]
    visit = made[rule_row_id("promotion_visit", CUSTOMER, 6)]
    assert bind["category"] == "bind_account_manager" and "assignee" not in bind
    assert bind["deadline_at_ms"] == at(2025, 3, 12, 16)  # Mon, Tue, Wed
    assert visit["kind"] == "visit" and visit["deadline_at_ms"] == at(2025, 4, 7, 16)
    # seen: no second promotion; once bound, the binding task is done
    seen = customer(star_level=6, star_seen=6, account_manager="am-1")
    bind_row = {"row_id": rule_row_id("bind_account_manager", CUSTOMER, 6), "customer_id": CUSTOMER,
                "kind": "notice", "rule": "bind_account_manager", "status": "open", "deleted": False}
    later = sweep([seen], [_care_task(), bind_row], [result("r1", friday - DAY, "connected")], now_ms=friday + DAY,
                  calendar=CAL)
    assert later == [Edit("tasks", bind_row["row_id"], "status", "set", "done")]


def test_below_five_stars_or_a_demotion_makes_no_task() -> None:
    now = at(2025, 3, 7, 16)
    history = [result("r1", now - DAY, "connected")]
    assert sweep([customer(star_level=4, star_seen=2)], [_care_task()], history, now_ms=now, calendar=CAL) == []
    assert sweep([customer(star_level=5, star_seen=7)], [_care_task()], history, now_ms=now, calendar=CAL) == [
        Edit("customers", CUSTOMER, "star_seen", "set", 5)]


def test_birthday_care_just_before_the_birthday_without_storing_it() -> None:
    history = [result("r1", at(2025, 3, 1, 10), "connected")]
    c = customer(star_level=3, star_seen=3, account_manager="am-1")
    def run(now: int, born: tuple[int, int] = (3, 12)) -> dict:
        return _made(sweep([c], [_care_task()], history, now_ms=now, calendar=CAL, birthday_of=lambda _: born))
    assert run(at(2025, 3, 8, 9)) == {}
    made = run(at(2025, 3, 9, 9))
    (task,) = made.values()
    assert task["rule"] == "birthday_care" and task["assignee"] == "am-1"
    assert task["due_at_ms"] == at(2025, 3, 9, 9) and task["deadline_at_ms"] == at(2025, 3, 13)
    assert set(run(at(2025, 3, 12, 20))) == set(made)  # one per year
    assert run(at(2025, 3, 13, 9)) == {}
    def birthday_tasks(made: dict) -> int:
        return sum(t.get("rule") == "birthday_care" for t in made.values())
    assert birthday_tasks(run(at(2026, 2, 28, 9), born=(2, 29))) == 1  # not a leap year: the 28th
    assert birthday_tasks(run(at(2025, 12, 30, 9), born=(1, 1))) == 1  # across the new year
    assert birthday_tasks(run(at(2025, 12, 27, 9), born=(1, 1))) == 0


def test_revisits_are_archived_after_the_deadline_or_three_attempts() -> None:
    returned = at(2025, 3, 7, 10)
    revisit = {"row_id": TASK, "customer_id": CUSTOMER, "kind": "revisit_repair", "status": "assigned",
               "attempts": 1, "deadline_at_ms": returned + 48 * HOUR, "deleted": False}
    c = customer(star_seen=0)
    care = [result("r1", returned, "connected", task_id="01JD0QK2M6X3Z1V9A8B7C6D5T8")]
    care_task = {**_care_task(), "row_id": "01JD0QK2M6X3Z1V9A8B7C6D5T8"}
    assert sweep([c], [revisit, care_task], care, now_ms=returned + 48 * HOUR, calendar=CAL) == []
    archived = [Edit("tasks", TASK, "status", "set", "archived")]
    assert sweep([c], [revisit, care_task], care, now_ms=returned + 48 * HOUR + 1, calendar=CAL) == archived
    assert sweep([c], [{**revisit, "attempts": 3}, care_task], care, now_ms=returned + HOUR, calendar=CAL) == archived


def test_all_customers_of_a_sales_rep_go_to_one_agent() -> None:
    ids = [f"01JD0QK2M6X3Z1V9A8B7C6D5{n:02d}" for n in range(10, 16)]
    agents = ["ag-2", "ag-2", "ag-1", None, "ag-1", "ag-2"]
    now = at(2025, 3, 7, 10)
    rows = [customer(row_id=i, sales_rep="rep-1", assigned_agent=a, star_seen=0, suppression=["do_not_call"])
            for i, a in zip(ids, agents)]
    rows.append(customer(row_id="01JD0QK2M6X3Z1V9A8B7C6D599", sales_rep="rep-2", assigned_agent="ag-1",
                         star_seen=0, suppression=["do_not_call"]))
    edits = sweep(rows, [], [], now_ms=now, calendar=CAL)
    assert edits == [Edit("customers", ids[i], "assigned_agent", "set", "ag-2") for i in (2, 3, 4)]
    tie = [customer(row_id=ids[0], sales_rep="r", assigned_agent="ag-9", star_seen=0, suppression=["do_not_call"]),
           customer(row_id=ids[1], sales_rep="r", assigned_agent="ag-3", star_seen=0, suppression=["do_not_call"])]
    assert sweep(tie, [], [], now_ms=now, calendar=CAL) == [Edit("customers", ids[0], "assigned_agent", "set", "ag-3")]
