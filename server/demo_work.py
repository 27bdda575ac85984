"""The demo's work step (server/demo.py): a day at branch-a through the work
API. HQ defines an agent, a supervisor and an account manager; the supervisor
opens tasks; the agent works the inbox, places calls (checked against the
rules when placed), records results whose rules run in the same write (a retry
in another slot, a refusal that suppresses the customer everywhere, a callback
at the time asked), opens a complaint ticket the supervisor archives; the
results reach HQ with the next sync."""

from __future__ import annotations

import secrets
import time
from typing import Any

from rich.console import Console

from server.node_process import NodeProcess

console = Console()
HOUR_MS = 3_600_000


def _bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {pair['access_token']}"}


async def _as(node: NodeProcess, username: str, password: str) -> dict[str, str]:
    return _bearer(await node.call("POST", "/auth/sign-in", json={"username": username, "password": password}))


async def work_day(hq: NodeProcess, a: NodeProcess, ids: list[str]) -> tuple[int, dict[str, str]]:
    """Run the step; returns (0 when every check held, the users made: username -> id)."""
    console.rule("a working day at branch-a")
    password = secrets.token_urlsafe(18)
    users: dict[str, str] = {}
    for username, role in (("demo-agent", "agent"), ("demo-supervisor", "supervisor"),
                           ("demo-manager", "account_manager")):
        made = await hq.call("POST", "/users", json={"username": username, "role": role, "site": "branch-a",
                                                      "password": password, "team": "north"})
        users[username] = made["row_id"]
    mine = ids[1:8:2]  # four customers at home in branch-a
    for row in mine:  # the agent's customers now (HQ's assignment reaches branch-a by sync)
        await hq.call("PATCH", f"/customers/{row}", json={"assigned_agent": users["demo-agent"],
                                                          "account_manager": users["demo-manager"]})
    await a.sync_now()
    await a.sync_now()
    agent = await _as(a, "demo-agent", password)
    supervisor = await _as(a, "demo-supervisor", password)
    now = int(time.time() * 1000)
    tasks = [await a.call("POST", "/tasks", headers=supervisor, json={
        "customer_id": row, "kind": "care", "assignee": users["demo-agent"], "due_at_ms": now - HOUR_MS,
        "priority": p}) for p, row in enumerate(mine[:3])]
    revisit = await a.call("POST", "/tasks", headers=supervisor, json={
        "customer_id": mine[3], "kind": "revisit_installation", "assignee": users["demo-agent"],
        "order_ref": "WO-2026-0042", "returned_at_ms": now - 2 * HOUR_MS})
    console.print(f"HQ defined an agent, a supervisor and an account manager; they signed in at branch-a. The "
                  f"supervisor opened {len(tasks)} care tasks and a revisit after a returned installation "
                  f"(deadline {(revisit['deadline_at_ms'] - now) // HOUR_MS} h from now)")
    inbox = await a.call("GET", "/work/inbox", headers=agent)
    first = inbox["items"][0]
    offer = first["offer"]
    console.print(f"the agent's inbox: {len(inbox['items'])} tasks in work order, no personal information in it; "
                  f"the first one's call is {'available now' if offer['available'] else 'not yet: ' + offer['code']}")
    card = await a.call("GET", f"/customers/{first['customer']['row_id']}/card", headers=agent,
                        params={"purpose": "outbound_call"})
    shown = sorted(k for k in ("name", "phone", "email", "address", "id_number") if card["customer"].get(k))
    console.print(f"its card, as an agent sees it: {', '.join(shown)} masked (no personal value printed here), "
                  f"{len(card['open_tasks'])} open task(s)")
    call = await a.client.post(f"/tasks/{first['task']['row_id']}/call", headers=agent)
    if call.status_code == 200:
        console.print("the call is placed: the rules were checked again (suppression, today's attempts at every "
                      "site, the calling window in the customer's local time)")
    else:
        problem = call.json()
        console.print(f"the call is refused as it is placed ({problem['reason']}): the calling window is "
                      f"08:00-21:00 in the customer's local time, and it is outside it now")
    outcomes = [{"outcome": "no_answer"}, {"outcome": "refused", "refusal_reason": "not_interested"},
                {"outcome": "callback_requested", "callback_at_ms": now + 26 * HOUR_MS, "duration_s": 31}]
    recorded = [await a.call("POST", f"/tasks/{t['row_id']}/results", headers=agent, json=body)
                for t, body in zip(tasks, outcomes)]
    retry, refusal, callback = recorded
    console.print(f"no answer: attempt {retry['task']['attempts']}, retried at another slot "
                  f"(+{(retry['task']['due_at_ms'] - now) / HOUR_MS:.1f} h); refused: the customer is on "
                  f"suppression, that task {refusal['task']['status']}; callback requested: a new task at the "
                  f"time asked ({len(callback['follow_ups'])} made)")
    ticket = await a.call("POST", "/complaints", headers=agent, json={"customer_id": mine[0], "category": "billing"})
    await a.call("POST", f"/complaints/{ticket['task']['row_id']}/archive", headers=supervisor)
    again = await a.client.post(f"/complaints/{ticket['task']['row_id']}/archive", headers=supervisor)
    console.print(f"a complaint ticket, owned by the agent who opened it, archived by the supervisor; archiving it "
                  f"again is refused ({again.status_code} {again.json()['code']})")
    team = await a.call("GET", "/work/team", headers=supervisor)
    load = next(m for m in team["members"] if m["user_id"] == users["demo-agent"])
    console.print(f"the supervisor's team view: the agent has {load['open']} open tasks and recorded "
                  f"{load['results_today']} results today")
    await a.sync_now()
    at_hq = await hq.call("GET", f"/customers/{mine[1]}")
    if "refused_marketing" not in at_hq["suppression"] or again.status_code != 409:
        console.print("[bold red]the refusal did not reach HQ as suppression")
        return 1, users
    console.print("after branch-a's next sync HQ holds the results, the new tasks and the suppression")
    return 0, users
