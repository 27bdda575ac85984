"""The inbox (work order, filters, pages, deltas, what is not offered) and the
customer card, as an agent at branch-a sees them."""

from __future__ import annotations

import time
from typing import Any

from tests.work_api.conftest import HOUR_MS, Work, refused


def now_ms() -> int:
    return int(time.time() * 1000)


def mine(work: Work, username: str = "agent", **params: object) -> list[dict[str, object]]:
    response = work.get(username, "/work/inbox", **params)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def test_the_inbox_lists_my_open_tasks_in_work_order_without_personal_information(work: Work) -> None:
    customer = work.customer()
    now = now_ms()
    late = work.task(customer, due_at_ms=now - 2 * HOUR_MS, priority=1)
    urgent = work.task(customer, due_at_ms=now - 2 * HOUR_MS, priority=8)
    later = work.task(customer, due_at_ms=now + 3 * HOUR_MS, kind="survey")
    undated = work.task(customer)
    someone_elses = work.task(customer, assignee=work.mate)
    items = [i for i in mine(work) if i["customer"]["row_id"] == customer]  # type: ignore[index]
    assert [i["task"]["row_id"] for i in items] == [  # type: ignore[index]
        urgent["row_id"], late["row_id"], later["row_id"], undated["row_id"]]
    assert someone_elses["row_id"] not in {i["task"]["row_id"] for i in mine(work)}  # type: ignore[index]
    offers = {i["task"]["row_id"]: i["offer"] for i in items}  # type: ignore[index]
    assert offers[urgent["row_id"]] == {"available": True, "code": None, "available_at_ms": None}
    assert offers[later["row_id"]]["available"] is False and offers[later["row_id"]]["code"] == "too_soon"
    assert offers[later["row_id"]]["available_at_ms"] >= later["due_at_ms"]
    # filters
    assert [i["task"]["row_id"] for i in mine(work, kind="survey") if i["customer"]["row_id"] == customer] == [  # type: ignore[index]
        later["row_id"]]
    assert {i["task"]["row_id"] for i in mine(work, priority_min=8)} >= {urgent["row_id"]}  # type: ignore[index]
    assert undated["row_id"] not in {i["task"]["row_id"] for i in mine(work, due_before=now)}  # type: ignore[index]
    # no personal value of the customer in the inbox
    text = work.get("agent", "/work/inbox").text
    made = work.d.customers[f"work-{work.serial}"].body
    assert all(made[f] not in text for f in ("name", "phone", "email", "address"))


def test_an_inbox_read_again_shows_every_change_made_since(work: Work) -> None:
    """The inbox keeps the rows it reads for the next read (`sync.store.row_cache`):
    a task or customer written in between is read afresh, and a suppression
    added since takes the customer's tasks out at once."""
    customer = work.customer()
    due = now_ms() - 2 * HOUR_MS
    first = work.task(customer, due_at_ms=due, priority=2, kind="survey")
    second = work.task(customer, due_at_ms=due, priority=3, kind="survey")

    def listed() -> list[dict[str, Any]]:
        return [i for i in mine(work, kind="survey") if i["customer"]["row_id"] == customer]  # type: ignore[index]

    for _ in range(6):  # read often enough that the rows come from what was kept
        assert [i["task"]["row_id"] for i in listed()] == [second["row_id"], first["row_id"]]
    moved = work.d.clients["branch-a"].patch(f"/tasks/{first['row_id']}", json={"priority": 9},
                                             headers=work.headers("supervisor"))
    assert moved.status_code == 200, moved.text
    promoted = work.d.clients["branch-a"].patch(f"/customers/{customer}", json={"star_level": 7},
                                                headers=work.headers("supervisor"))
    assert promoted.status_code == 200, promoted.text
    items = listed()
    assert [(i["task"]["row_id"], i["task"]["priority"]) for i in items] == [(first["row_id"], 9),
                                                                            (second["row_id"], 3)]
    assert {i["customer"]["star_level"] for i in items} == {7}
    refused_calls = work.d.clients["branch-a"].patch(f"/customers/{customer}", json={"suppression_add": ["do_not_call"]},
                                                     headers=work.headers("supervisor"))
    assert refused_calls.status_code == 200, refused_calls.text
    assert listed() == []


def test_pages_follow_each_other_and_a_delta_names_what_changed(work: Work) -> None:
    customer = work.customer()
    for i in range(5):
        work.task(customer, due_at_ms=now_ms() - (10 - i) * HOUR_MS, kind="retention")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"kind": "retention", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = work.get("agent", "/work/inbox", **params).json()
        seen += [i["task"]["row_id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 5
    delta = work.get("agent", "/work/inbox").json()["delta"]
    assert work.get("agent", "/work/inbox", since=delta).json()["items"] == []
    done = seen[0]
    assert work.post("agent", f"/tasks/{done}/results", {"outcome": "success", "duration_s": 40}).status_code == 201
    fresh = work.task(customer, kind="retention")
    changed = work.get("agent", "/work/inbox", since=delta).json()
    assert done in changed["removed"]
    assert [i["task"]["row_id"] for i in changed["items"]] == [fresh["row_id"]]


def test_a_task_reassigned_to_someone_else_is_removed_in_my_delta(work: Work) -> None:
    customer = work.customer()
    task = work.task(customer, kind="survey")
    delta = work.get("agent", "/work/inbox").json()["delta"]
    moved = work.d.clients["branch-a"].patch(f"/tasks/{task['row_id']}", json={"assignee": work.mate},
                                             headers=work.headers("supervisor"))
    assert moved.status_code == 200 and moved.json()["handed_from"] == work.agent, moved.text
    mine = work.get("agent", "/work/inbox", since=delta).json()
    assert task["row_id"] in mine["removed"] and task["row_id"] not in {i["task"]["row_id"] for i in mine["items"]}
    theirs = work.get("mate", "/work/inbox", kind="survey").json()
    assert task["row_id"] in {i["task"]["row_id"] for i in theirs["items"]}


def test_tasks_of_a_suppressed_customer_are_not_offered(work: Work) -> None:
    customer = work.customer(suppression_add=["do_not_call"])
    task = work.task(customer)
    assert task["row_id"] not in {i["task"]["row_id"] for i in mine(work)}  # type: ignore[index]
    body = refused(work.post("agent", f"/tasks/{task['row_id']}/call"), 409, "call_refused")
    assert body["reason"] == "suppressed"


def test_bad_cursors_and_parameters_are_refused(work: Work) -> None:
    refused(work.get("agent", "/work/inbox", cursor="bm90LWEtY3Vyc29y"), 400, "bad_cursor")
    refused(work.get("agent", "/work/inbox", since="AAAA"), 400, "bad_cursor")
    delta = work.get("agent", "/work/inbox").json()["delta"]
    refused(work.get("agent", "/work/inbox", since=delta, cursor=delta), 400, "bad_cursor")
    for params in ({"limit": 0}, {"limit": 201}, {"kind": "party"}, {"priority_min": 10}):
        response = work.get("agent", "/work/inbox", **params)
        assert response.status_code == 400, (params, response.text)
    assert work.d.clients["branch-a"].get("/work/inbox").status_code == 401


def test_the_card_shows_the_customer_as_get_does_with_tasks_and_history_and_one_entry(work: Work) -> None:
    customer = work.customer()
    task = work.task(customer)
    assert work.post("agent", f"/tasks/{task['row_id']}/results",
                     {"outcome": "no_answer", "duration_s": 0}).status_code == 201
    headers = work.headers("agent")
    plain = work.d.clients["branch-a"].get(f"/customers/{customer}", headers=headers).json()
    before = work.d.last_event_id("branch-a")
    response = work.d.clients["branch-a"].get(f"/customers/{customer}/card", params={"purpose": "outbound_call"},
                                              headers=headers)
    assert response.status_code == 200, response.text
    card = response.json()
    assert card["customer"] == plain
    assert [t["row_id"] for t in card["open_tasks"]] == [task["row_id"]]
    assert [r["outcome"] for r in card["history"]] == ["no_answer"] and "notes" not in card["history"][0]
    (entry,) = work.d.events("branch-a", after_id=before)
    assert (entry.action, entry.rows, entry.purpose) == ("read", (customer,), "outbound_call")
    assert set(entry.masked) >= {"name", "phone"}
    other = work.d.customers["a_other"].row_id  # not the agent's team's
    refused(work.d.clients["branch-a"].get(f"/customers/{other}/card", headers=headers), 404, "not_found")
