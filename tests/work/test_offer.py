"""offer_check: suppression, daily cap, calling window, attempts, spacing, on a controlled clock."""

from __future__ import annotations

from server.work.offer import offer_check, results_since, spacing_ms_of
from tests.work.clock import CAL, DAY, HOUR, at, customer, result, task

CAMPAIGN = {"row_id": "c1", "status": "active", "window_start_min": 9 * 60, "window_end_min": 18 * 60,
            "max_attempts": 5, "retry_spacing_min": 90, "deleted": False}


def test_a_fresh_task_inside_the_window_is_offered() -> None:
    assert offer_check(task(), customer(), None, [], now_ms=at(2025, 3, 7, 10), calendar=CAL) is None


def test_suppression_is_checked_at_offer_and_again_at_the_call() -> None:
    now = at(2025, 3, 7, 10)
    assert offer_check(task(), customer(), None, [], now_ms=now, calendar=CAL) is None
    # a refusal recorded elsewhere arrives by sync between the offer and the call
    refused = offer_check(task(), customer(suppression=["refused_marketing"]), None, [], now_ms=now + 60_000,
                          calendar=CAL)
    assert refused is not None and refused.code == "suppressed" and refused.retry_at_ms is None
    # refusing marketing does not stop the customer's own complaint work; do-not-call stops calls, not visits
    assert offer_check(task(kind="revisit_complaint"), customer(suppression=["refused_marketing"]), None, [],
                       now_ms=now, calendar=CAL) is None
    assert offer_check(task(kind="care"), customer(suppression=["do_not_call"]), None, [], now_ms=now,
                       calendar=CAL).code == "suppressed"
    assert offer_check(task(kind="visit"), customer(suppression=["do_not_call"]), None, [], now_ms=now,
                       calendar=CAL) is None
    assert offer_check(task(), customer(tags=["invalid_number"]), None, [], now_ms=now,
                       calendar=CAL).code == "suppressed"


def test_three_attempts_a_day_across_sites_then_tomorrow() -> None:
    other = "01JD0QK2M6X3Z1V9A8B7C6D5T9"
    results = [result("r1", at(2025, 3, 7, 8, 30), task_id=other), result("r2", at(2025, 3, 7, 9, 40), task_id=other),
               result("r3", at(2025, 3, 7, 11, 0), "connected", task_id=other)]
    refusal = offer_check(task(), customer(), None, results, now_ms=at(2025, 3, 7, 15), calendar=CAL)
    assert refusal is not None and refusal.code == "daily_cap"
    assert refusal.retry_at_ms == at(2025, 3, 8, 8)
    assert offer_check(task(), customer(), None, results[:2], now_ms=at(2025, 3, 7, 15), calendar=CAL) is None
    assert offer_check(task(), customer(), None, results, now_ms=at(2025, 3, 8, 9), calendar=CAL) is None


def test_the_day_is_the_customers_local_day() -> None:
    # 07:30 and 08:30 Shanghai on the 8th are 23:30 and 00:30 London: two London days
    results = [result("r1", at(2025, 3, 7, 20)), result("r2", at(2025, 3, 8, 7, 30)), result("r3", at(2025, 3, 8, 8, 30))]
    now = at(2025, 3, 8, 9)
    london = customer(tz="Europe/London")
    shanghai = customer()
    campaign = {**CAMPAIGN, "window_start_min": 0, "window_end_min": 0, "retry_spacing_min": 0, "max_attempts": 9}
    assert offer_check(task(), shanghai, campaign, results[1:], now_ms=now, calendar=CAL) is None
    assert offer_check(task(), london, campaign, results, now_ms=now, calendar=CAL) is None
    assert offer_check(task(), shanghai, campaign, results + [result("r4", at(2025, 3, 8, 8, 40))], now_ms=now,
                       calendar=CAL).code == "daily_cap"


def test_calling_window_is_in_the_customers_local_time() -> None:
    early = offer_check(task(), customer(), None, [], now_ms=at(2025, 3, 7, 7, 30), calendar=CAL)
    assert early is not None and early.code == "outside_window" and early.retry_at_ms == at(2025, 3, 7, 8)
    late = offer_check(task(), customer(), CAMPAIGN, [], now_ms=at(2025, 3, 7, 18, 0), calendar=CAL)
    assert late is not None and late.code == "outside_window" and late.retry_at_ms == at(2025, 3, 8, 9)
    # 10:00 in Shanghai is 21:00 the day before in New York: outside its default window
    ny = offer_check(task(), customer(tz="America/New_York"), None, [], now_ms=at(2025, 3, 7, 10), calendar=CAL)
    assert ny is not None and ny.code == "outside_window"
    assert ny.retry_at_ms == at(2025, 3, 7, 8, tz="America/New_York")


def test_max_attempts_and_retry_spacing() -> None:
    now = at(2025, 3, 7, 12)
    assert offer_check(task(attempts=5), customer(), CAMPAIGN, [], now_ms=now, calendar=CAL).code == "max_attempts"
    assert offer_check(task(attempts=3), customer(), None, [], now_ms=now, calendar=CAL).code == "max_attempts"
    soon = offer_check(task(attempts=1), customer(), CAMPAIGN, [result("r1", now - HOUR)], now_ms=now, calendar=CAL)
    assert soon is not None and soon.code == "too_soon" and soon.retry_at_ms == now + HOUR // 2
    due = offer_check(task(due_at_ms=now + 2 * HOUR), customer(), None, [], now_ms=now, calendar=CAL)
    assert due is not None and due.code == "too_soon" and due.retry_at_ms == now + 2 * HOUR


def test_revisits_three_attempts_an_hour_apart_inside_48_hours() -> None:
    returned = at(2025, 3, 7, 10)
    revisit = task(kind="revisit_repair", deadline_at_ms=returned + 48 * HOUR, attempts=1)
    first = [result("r1", returned + HOUR)]
    soon = offer_check(revisit, customer(), None, first, now_ms=returned + HOUR + 30 * 60_000, calendar=CAL)
    assert soon.code == "too_soon" and soon.retry_at_ms == returned + 2 * HOUR
    assert offer_check(revisit, customer(), None, first, now_ms=returned + 2 * HOUR, calendar=CAL) is None
    assert offer_check({**revisit, "attempts": 3}, customer(), None, first, now_ms=returned + 3 * HOUR,
                       calendar=CAL).code == "max_attempts"
    late = offer_check(revisit, customer(), None, first, now_ms=returned + 48 * HOUR + 1, calendar=CAL)
    assert late.code == "closed"
    # the next allowed time would be past the deadline: no retry time is offered
    edge = offer_check({**revisit, "deadline_at_ms": returned + HOUR + 10 * 60_000}, customer(), None, first,
                       now_ms=returned + HOUR + 5 * 60_000, calendar=CAL)
    assert edge.code == "too_soon" and edge.retry_at_ms is None


def test_closed_tasks_and_inactive_campaigns_are_not_offered() -> None:
    now = at(2025, 3, 7, 12)
    for status in ("done", "archived", "cancelled"):
        assert offer_check(task(status=status), customer(), None, [], now_ms=now, calendar=CAL).code == "closed"
    assert offer_check(task(), customer(), {**CAMPAIGN, "status": "draft"}, [], now_ms=now,
                       calendar=CAL).code == "closed"
    refusal = offer_check(task(), customer(status="closed"), None, [], now_ms=now, calendar=CAL)
    assert refusal.code == "closed" and "01JD" not in refusal.detail


def test_the_results_an_inbox_leaves_unread_are_none_the_check_counts() -> None:
    """An inbox reads the results since `results_since` only: the check's answer
    from those is its answer from the whole history, at each edge of the cut."""
    def both(t: dict[str, object], c: dict[str, object], campaign: dict[str, object] | None,
             history: list[dict[str, object]], now: int) -> tuple[object, object]:
        since = results_since(now, [spacing_ms_of(t, campaign)])
        recent = [r for r in history if r["recorded_at_ms"] >= since]  # type: ignore[operator]
        return (offer_check(t, c, campaign, history, now_ms=now, calendar=CAL),
                offer_check(t, c, campaign, recent, now_ms=now, calendar=CAL))

    anytime = {**CAMPAIGN, "window_start_min": 0, "window_end_min": 0, "max_attempts": 9}
    # a five-day spacing: the last attempt three days ago still holds the task back
    five_days = {**anytime, "retry_spacing_min": 5 * 24 * 60}
    now = at(2025, 3, 7, 10)
    whole, part = both(task(campaign_id="c1"), customer(), five_days, [result("r1", now - 3 * DAY)], now)
    assert whole is not None and whole.code == "too_soon" and part == whole
    # an attempt half an hour inside a three-day spacing
    days = {**anytime, "retry_spacing_min": 72 * 60}
    whole, part = both(task(campaign_id="c1"), customer(), days, [result("r1", now - 72 * HOUR + HOUR // 2)], now)
    assert whole is not None and whole.code == "too_soon" and part == whole
    # the daily cap at UTC+14: the local day began 23 hours ago, its three attempts all before noon UTC
    kiritimati = customer(tz="Pacific/Kiritimati")
    late = at(2025, 3, 7, 23, 30, tz="Pacific/Kiritimati")
    early = [result(f"r{i}", at(2025, 3, 7, i, 30, tz="Pacific/Kiritimati"), task_id="01JD0QK2M6X3Z1V9A8B7C6D5T9")
             for i in range(3)]
    whole, part = both(task(campaign_id="c1"), kiritimati, anytime, early, late)
    assert whole is not None and whole.code == "daily_cap" and part == whole
