"""Recording results and what the work rules make of them, placing calls,
callbacks, complaint tickets, refusals of marketing and the team's view, at
branch-a through the API; every refusal changes nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.work_api.conftest import HOUR_MS, Work, refused


def now_ms() -> int:
    return int(time.time() * 1000)


def record(work: Work, task_id: str, body: dict[str, Any], username: str = "agent") -> dict[str, Any]:
    response = work.post(username, f"/tasks/{task_id}/results", body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_no_answer_moves_the_task_to_another_slot_and_counts_the_attempt(work: Work) -> None:
    task = work.task(work.customer(), due_at_ms=now_ms() - HOUR_MS)
    before = work.d.last_event_id("branch-a")
    done = record(work, task["row_id"], {"outcome": "no_answer"})
    assert done["result"]["outcome"] == "no_answer" and done["result"]["agent"] == work.agent
    assert done["task"]["attempts"] == 1 and done["task"]["status"] == "assigned"
    assert done["task"]["due_at_ms"] > now_ms() + HOUR_MS // 2, "retried in another slot, not now"
    (entry,) = work.d.events("branch-a", after_id=before)
    assert (entry.action, entry.reference, entry.reason) == ("record_result", done["result"]["row_id"], "no_answer")
    assert "outcome" in entry.fields


def test_a_refusal_puts_the_customer_on_suppression_and_ends_the_task(work: Work) -> None:
    customer = work.customer()
    task = work.task(customer)
    done = record(work, task["row_id"], {"outcome": "refused", "refusal_reason": "not_interested"})
    assert done["task"]["status"] == "done"
    row = work.row("customers", customer)
    assert row is not None and "refused_marketing" in row["suppression"]
    care = work.task(customer)  # a marketing task on them is not offered any more
    assert care["row_id"] not in {i["task"]["row_id"] for i in work.get("agent", "/work/inbox").json()["items"]}


def test_a_callback_request_makes_a_task_at_the_time_asked(work: Work) -> None:
    task = work.task(work.customer())
    at = now_ms() + 5 * HOUR_MS
    done = record(work, task["row_id"], {"outcome": "callback_requested", "callback_at_ms": at, "duration_s": 25})
    (follow_up,) = done["follow_ups"]
    assert follow_up["due_at_ms"] == at and follow_up["assignee"] == work.agent
    assert done["task"]["status"] == "done"


def test_a_result_on_a_closed_task_and_bad_results_are_refused_and_change_nothing(work: Work) -> None:
    task = work.task(work.customer())
    record(work, task["row_id"], {"outcome": "success", "order_id": "ord-1"})
    other = work.task(work.customer())
    seq = work.high_seq()
    body = refused(work.post("agent", f"/tasks/{task['row_id']}/results", {"outcome": "no_answer"}), 409,
                   "impossible_transition")
    assert body["state"] == "done"
    for bad, status in (({"outcome": "shouted"}, 400), ({"duration_s": -1}, 400), ({"satisfaction": 6}, 400),
                        ({"recorded_at_ms": now_ms() + 10 * HOUR_MS}, 422),
                        ({"outcome": "callback_requested", "callback_at_ms": now_ms() - HOUR_MS}, 422),
                        ({"notes": "free text"}, 400)):
        response = work.post("agent", f"/tasks/{other['row_id']}/results", bad)
        assert response.status_code == status, (bad, response.text)
    refused(work.post("agent", "/tasks/01JD0QK2M6X3Z1V9A8B7C6D5Q9/results", {"outcome": "no_answer"}), 404,
            "not_found")
    assert work.high_seq() == seq


def test_placing_a_call_checks_the_rules_again(work: Work) -> None:
    task = work.task(work.customer())
    permit = work.post("agent", f"/tasks/{task['row_id']}/call")
    assert permit.status_code == 200, permit.text
    assert permit.json()["status"] == "in_progress"
    night = work.task(work.customer(night=True))
    before = work.d.last_event_id("branch-a")
    body = refused(work.post("agent", f"/tasks/{night['row_id']}/call"), 409, "call_refused")
    assert body["reason"] == "outside_window" and body["retry_at_ms"] > now_ms()
    (entry,) = work.d.events("branch-a", after_id=before)  # the refusal, once
    assert (entry.action, entry.status, entry.reason) == ("call", 409, "outside_window")
    # three attempts today at any site are the cap
    capped = work.customer()
    for _ in range(3):
        record(work, work.task(capped)["row_id"], {"outcome": "no_answer"})
    body = refused(work.post("agent", f"/tasks/{work.task(capped)['row_id']}/call"), 409, "call_refused")
    assert body["reason"] == "daily_cap"


def test_a_callback_is_scheduled_for_the_caller(work: Work) -> None:
    customer = work.customer()
    at = now_ms() + 2 * HOUR_MS
    response = work.post("agent", f"/customers/{customer}/callbacks", {"at_ms": at})
    assert response.status_code == 201, response.text
    assert (response.json()["due_at_ms"], response.json()["assignee"]) == (at, work.agent)
    refused(work.post("agent", f"/customers/{customer}/callbacks", {"at_ms": now_ms() - HOUR_MS}), 422, "bad_time")


def test_a_complaint_is_owned_by_its_first_responder_until_archived(work: Work) -> None:
    customer = work.customer()
    opened = work.post("agent", "/complaints", {"customer_id": customer, "category": "billing"})
    assert opened.status_code == 201, opened.text
    ticket = opened.json()
    task_id = ticket["task"]["row_id"]
    assert ticket["task"]["first_responder"] == work.agent and ticket["deadline_state"] == "ok"
    assert ticket["repeat_of"] is None
    again = work.post("agent", "/complaints", {"customer_id": customer, "category": "billing"}).json()
    assert again["repeat_of"] == task_id, "same customer and category within 30 days"

    refused(work.post("mate", f"/complaints/{task_id}/hand-over", {"to": work.mate}), 403, "not_ticket_owner")
    refused(work.post("agent", f"/complaints/{task_id}/hand-over", {"to": "01JD0QK2M6X3Z1V9A8B7C6D5Q8"}), 422,
            "unknown_user")
    handed = work.post("agent", f"/complaints/{task_id}/hand-over", {"to": work.mate})
    assert handed.status_code == 200, handed.text
    assert (handed.json()["task"]["assignee"], handed.json()["task"]["first_responder"]) == (work.mate, work.agent)
    archived = work.post("supervisor", f"/complaints/{task_id}/archive")
    assert archived.status_code == 200 and archived.json()["task"]["status"] == "archived"
    other = work.task(customer)
    seq = work.high_seq()
    for path, body in ((f"/complaints/{task_id}/archive", None), (f"/complaints/{task_id}/hand-over", {"to": work.agent})):
        problem = refused(work.post("agent", path, body), 409, "impossible_transition")
        assert problem["state"] == "archived"
    refused(work.post("agent", f"/complaints/{other['row_id']}/archive"), 422, "not_a_complaint")
    assert work.high_seq() == seq


def test_refusing_marketing_withdraws_consent_and_suppresses(work: Work) -> None:
    customer = work.customer()
    response = work.post("agent", f"/customers/{customer}/refuse-marketing", {"channel": "phone"})
    assert response.status_code == 201, response.text
    history = response.json()
    assert "refused_marketing" in history["suppression"]
    assert {(s["purpose"], s["granted"]) for s in history["current"]} == {("marketing", False)}


@pytest.mark.parametrize("username", ["agent", "partner-agent"])
def test_the_team_view_is_for_supervisors(work: Work, username: str) -> None:
    refused(work.get(username, "/work/team") if username == "agent" else
            work.d.clients["partner-x"].get("/work/team", headers=work.d.sign_in(username)), 403, "forbidden")


def test_a_supervisor_sees_the_load_of_each_member(work: Work) -> None:
    task = work.task(work.customer(), due_at_ms=now_ms() - HOUR_MS)
    record(work, task["row_id"], {"outcome": "no_answer"})
    response = work.get("supervisor", "/work/team")
    assert response.status_code == 200, response.text
    members = {m["user_id"]: m for m in response.json()["members"]}
    assert members[work.agent]["open"] >= 1 and members[work.agent]["results_today"] >= 1


def test_results_and_calls_racing_on_one_task_are_each_done_or_refused_as_closed(work: Work) -> None:
    """Six results and two calls sent at once on one task (two agents' screens,
    a phone's sync): each is worked out from the task as its write finds it, so
    one that finds the task closed by another is a 409 naming why, never a 422
    about a status moving back."""
    task = work.task(work.customer(), kind="survey")
    for _ in range(2):  # one attempt left: the next unanswered call archives the task
        assert work.post("agent", f"/tasks/{task['row_id']}/results", {"outcome": "no_answer"}).status_code == 201
    headers = work.headers("agent")
    app = work.d.clients["branch-a"].app
    path = f"/tasks/{task['row_id']}"

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://branch-a") as client:
            results = [client.post(f"{path}/results", headers=headers, json={"outcome": outcome, "duration_s": 30})
                       for outcome in ("no_answer", "connected") * 3]
            calls = [client.post(f"{path}/call", headers=headers) for _ in range(2)]
            return await asyncio.gather(*results[:3], *calls, *results[3:])

    responses = work.d.on("branch-a", race())
    results, calls = responses[:3] + responses[5:], responses[3:5]
    assert {r.status_code for r in results} <= {201, 409}, [r.text for r in results]
    assert {r.status_code for r in calls} <= {200, 409}, [r.text for r in calls]
    assert any(r.status_code == 201 for r in results)
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] in ("impossible_transition", "call_refused"), response.text
    stored = [r.json()["result"]["row_id"] for r in results if r.status_code == 201]
    assert all(work.row("results", row_id) is not None for row_id in stored)
