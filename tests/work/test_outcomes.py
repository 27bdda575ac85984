"""What a result causes: retries at another slot, invalid numbers, refusals, callbacks."""

from __future__ import annotations

from server.work.ids import rule_row_id
from server.work.outcomes import result_edits
from sync.edits import Edit
from tests.work.clock import CAL, CUSTOMER, HOUR, TASK, at, customer, result, task


def _edits(outcome: str | None, *, t: dict | None = None, history: list | None = None, now: int | None = None,
           c: dict | None = None, **extra: object) -> list[Edit]:
    now = now if now is not None else at(2025, 3, 7, 10, 15)
    r = {**result("rnew", now, outcome), **extra}
    return result_edits("rnew", r, t or task(), c or customer(), None, history or [], now_ms=now, calendar=CAL,
                        site="branch-a")


def _field(edits: list[Edit], field: str) -> object:
    return next(e.value for e in edits if e.field == field)


def test_no_answer_retries_in_another_hour_and_counts_an_attempt() -> None:
    edits = _edits("no_answer")
    assert Edit("tasks", TASK, "attempts", "increment", 1) in edits
    assert _field(edits, "due_at_ms") == at(2025, 3, 7, 11, 15)  # an hour on: the 11:00 slot


def test_the_retry_avoids_hours_already_tried() -> None:
    history = [result("r1", at(2025, 3, 6, 11, 5)), result("r2", at(2025, 3, 6, 12, 5))]
    edits = _edits("busy", history=history)
    due = _field(edits, "due_at_ms")
    assert CAL.local(due).hour == 13 and due == at(2025, 3, 7, 13)


def test_a_retry_after_the_window_goes_to_tomorrow_and_a_full_day_too() -> None:
    late = _edits("powered_off", now=at(2025, 3, 7, 20, 30))
    assert _field(late, "due_at_ms") == at(2025, 3, 8, 8)
    other = "01JD0QK2M6X3Z1V9A8B7C6D5T9"
    busy_day = [result("a", at(2025, 3, 7, 8, 10), task_id=other), result("b", at(2025, 3, 7, 9, 10), task_id=other)]
    capped = _edits("out_of_area", history=busy_day)  # the third attempt today
    assert _field(capped, "due_at_ms") == at(2025, 3, 8, 8)


def test_attempts_used_up_archive_the_task() -> None:
    edits = _edits("no_answer", t=task(attempts=2))
    assert Edit("tasks", TASK, "status", "set", "archived") in edits
    assert not any(e.field == "due_at_ms" for e in edits)


def test_a_revisit_whose_next_slot_is_past_the_deadline_is_archived() -> None:
    now = at(2025, 3, 7, 10, 15)
    revisit = task(kind="revisit_installation", deadline_at_ms=now + 30 * 60_000)
    assert Edit("tasks", TASK, "status", "set", "archived") in _edits("no_answer", t=revisit)
    roomy = task(kind="revisit_installation", deadline_at_ms=now + 10 * HOUR)
    assert _field(_edits("no_answer", t=roomy), "due_at_ms") == at(2025, 3, 7, 11, 15)


def test_invalid_numbers_are_not_retried_and_tag_the_customer() -> None:
    for outcome in ("suspended", "vacant_number"):
        edits = _edits(outcome)
        assert Edit("customers", CUSTOMER, "tags", "add", "invalid_number") in edits
        assert Edit("tasks", TASK, "status", "set", "done") in edits
        assert not any(e.field == "due_at_ms" for e in edits)


def test_a_refusal_suppresses_marketing() -> None:
    edits = _edits("refused")
    assert Edit("customers", CUSTOMER, "suppression", "add", "refused_marketing") in edits
    assert Edit("tasks", TASK, "status", "set", "done") in edits
    assert not any(e.collection == "customers" for e in _edits("refused", c=customer(suppression=["refused_marketing"])))


def test_a_callback_request_makes_a_task_at_the_requested_time() -> None:
    when = at(2025, 3, 9, 19, 30)
    edits = _edits("callback_requested", callback_at_ms=when, agent="ag-7")
    made = rule_row_id("callback", "rnew")
    mine = {e.field: e.value for e in edits if e.row_id == made}
    assert mine["due_at_ms"] == when and mine["assignee"] == "ag-7" and mine["customer_id"] == CUSTOMER
    assert mine["kind"] == "sales" and mine["rule"] == "callback"
    assert Edit("tasks", TASK, "status", "set", "done") in edits
    assert edits == _edits("callback_requested", callback_at_ms=when, agent="ag-7")  # deterministic


def test_success_closes_and_status_never_moves_back() -> None:
    assert Edit("tasks", TASK, "status", "set", "done") in _edits("success")
    assert not any(e.field == "status" for e in _edits("connected", t=task(status="archived")))
    complaint = _edits("connected", t=task(kind="complaint"))
    assert not any(e.field == "status" for e in complaint)  # only the owner archives a ticket
