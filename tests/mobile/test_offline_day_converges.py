"""The offline day of issue 6: two account managers on their phones and a
supervisor at HQ change the same customers and tasks while apart (the phones
have no signal, branch-a has no link to HQ). After sync, every node holds the
same rows (the phones: the fields they hold), so the work rules' outcomes are
the same everywhere, and the KPIs computed at HQ, at branch-a and from each
phone's own rows agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mobile import Phone
from server.config import NodeEntry
from server.policy import load_policy
from server.work.kpi import kpis
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.conftest import POLICY_FILE, LoopThread
from tests.mobile.conftest import HOUR_MS, PASSWORD, Site

pytestmark = pytest.mark.system

TZ = "Asia/Shanghai"


async def _rows(store: SqliteStore, collection: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {r["row_id"]: r for r in await store.find_rows(collection, limit=10_000, row_id=ids)}


async def _phone_rows(phone: Phone, collection: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    return await _rows(phone.store, collection, ids)


def _kpi_rows(report: list[dict[str, Any]], agents: set[str]) -> list[dict[str, Any]]:
    return sorted((r for r in report if r["key"] in agents), key=lambda r: (r["key"], r["day"]))


def test_two_phones_and_hq_work_apart_and_converge_with_the_same_outcomes_and_kpis(site: Site,
                                                                                    aio: LoopThread) -> None:
    async def day() -> None:
        hq = site.hq
        supervisor = await hq.call("POST", "/users", json={"username": "hq-sup", "role": "supervisor", "site": "hq",
                                                            "password": PASSWORD})
        await site.branch_sync()
        max_phone = await site.enroll("max", "max-apart")
        mia_phone = await site.enroll("mia", "mia-apart")
        for phone in (max_phone, mia_phone):
            await phone.sync()
        # fresh tasks for this test, at HQ, reaching the branch and the phones
        made = {}
        now = wall_clock_ms()
        for key, customer, user in (("max_a", "max_1", "max"), ("max_b", "max_1", "max"), ("mia_a", "mia_1", "mia")):
            made[key] = (await hq.call("POST", "/tasks", json={
                "customer_id": site.customers[customer], "kind": "retention", "assignee": site.users[user],
                "due_at_ms": now - HOUR_MS}))["row_id"]
        await site.branch_sync()
        for phone in (max_phone, mia_phone):
            await phone.sync()
        assert {t.task_id for t in await max_phone.inbox(now)} >= {made["max_a"], made["max_b"]}

        sign_in = await hq.client.post("/auth/sign-in", json={"username": "hq-sup", "password": PASSWORD})
        sup = {"authorization": f"Bearer {sign_in.json()['access_token']}"}
        await site.proxy.cut()  # the phones lose their signal; branch-a does not sync with HQ meanwhile
        try:
            # the account managers work offline
            await max_phone.record_result(made["max_a"], "refused", 40, now_ms=now, refusal_reason="not_interested")
            await max_phone.record_result(made["max_b"], "no_answer", 0, now_ms=now + 1)
            await mia_phone.record_result(made["mia_a"], "callback_requested", 30, now_ms=now + 2,
                                          callback_at_ms=now + 24 * HOUR_MS)
            # the HQ supervisor changes the same tasks, and calls mia's customer too
            for task_id, body in ((made["max_b"], {"due_at_ms": now + 5 * HOUR_MS, "priority": 9}),
                                  (made["mia_a"], {"priority": 2})):
                changed = await hq.client.patch(f"/tasks/{task_id}", json=body, headers=sup)
                assert changed.status_code == 200, changed.text
            called = await hq.client.post(f"/tasks/{made['mia_a']}/results", json={"outcome": "no_answer"},
                                          headers=sup)
            assert called.status_code == 201, called.text
            ticket = await hq.client.post("/complaints", json={"customer_id": site.customers["max_1"],
                                                               "category": "billing"}, headers=sup)
            assert ticket.status_code == 201, ticket.text
        finally:
            await site.proxy.heal()

        for phone in (max_phone, mia_phone):
            await phone.sync()
        await site.branch_sync()
        await site.branch_sync()
        for phone in (max_phone, mia_phone):
            await phone.sync()

        tasks = sorted(made.values())
        customers = sorted({site.customers["max_1"], site.customers["mia_1"]})
        hq_store, branch_store = await site.hq_store(), await site.branch_store()
        try:
            at_hq = {c: await _rows(hq_store, c, ids) for c, ids in (("tasks", tasks), ("customers", customers))}
            at_branch = {c: await _rows(branch_store, c, ids) for c, ids in (("tasks", tasks), ("customers", customers))}
            held = load_policy(POLICY_FILE).node_scope(NodeEntry(node_id="branch-a", role="branch", parent="hq"))
            for collection, rows in at_hq.items():  # every field the branch holds, as HQ holds it
                fields = held.fields[collection] | {"row_id"}
                for row_id, row in rows.items():
                    assert {k: v for k, v in row.items() if k in fields} == {
                        k: v for k, v in at_branch[collection][row_id].items() if k in fields}, (collection, row_id)
            for phone, mine in ((max_phone, [made["max_a"], made["max_b"]]), (mia_phone, [made["mia_a"]])):
                held = await _phone_rows(phone, "tasks", mine)
                for row_id in mine:
                    assert {k: v for k, v in at_hq["tasks"][row_id].items() if k in held[row_id]} == held[row_id]
            # the rules' outcomes, the same everywhere
            max_a, max_b, mia_a = (at_hq["tasks"][made[k]] for k in ("max_a", "max_b", "mia_a"))
            assert max_a["status"] == "done" and "refused_marketing" in at_hq["customers"][site.customers["max_1"]][
                "suppression"]
            assert max_b["attempts"] == 1 and max_b["priority"] == 9 and max_b["due_at_ms"] == now + 5 * HOUR_MS
            assert mia_a["attempts"] == 2, "one attempt on the phone, one at HQ: counted per node, summed"
            assert mia_a["status"] == "done" and mia_a["priority"] == 2
            callbacks = [t for t in await hq_store.find_rows("tasks", limit=100, customer_id=site.customers["mia_1"])
                         if t["rule"] == "callback"]
            assert [t["due_at_ms"] for t in callbacks] == [now + 24 * HOUR_MS]
            assert await branch_store.read_row("tasks", callbacks[0]["row_id"]) == callbacks[0]
            assert (await _phone_rows(mia_phone, "tasks", [callbacks[0]["row_id"]]))[callbacks[0]["row_id"]][
                "due_at_ms"] == now + 24 * HOUR_MS
        finally:
            await hq_store.close()
            await branch_store.close()

        # the KPIs: at HQ and at branch-a, by agent, today; and from each phone's own rows
        today = datetime.fromtimestamp(now / 1000, ZoneInfo(TZ)).date().isoformat()
        agents = {site.users["max"], site.users["mia"]}
        params = {"by": "agent", "from": today, "to": today}
        reports = [_kpi_rows(await node.call("GET", "/reports/kpi", params=params), agents)
                   for node in (hq, site.branch)]
        assert reports[0] == reports[1] and {r["key"] for r in reports[0]} == agents
        by_agent = {r["key"]: r for r in reports[0]}
        # this test's two calls of max's are in (other tests of the package may have made more today)
        assert by_agent[site.users["max"]]["attempts"] >= 2 and by_agent[site.users["max"]]["connected"] >= 1
        for phone in (max_phone, mia_phone):
            results = await phone.store.find_rows("results", limit=10_000, agent=phone.user_id, deleted=False)
            own = kpis(results, [], [], by="agent", day_from=datetime.fromisoformat(today).date(),
                       day_to=datetime.fromisoformat(today).date(), tz=TZ)
            (row,) = [r for r in own if r.key == phone.user_id]
            assert (row.attempts, row.connected, row.connect_rate) == (
                by_agent[phone.user_id]["attempts"], by_agent[phone.user_id]["connected"],
                by_agent[phone.user_id]["connect_rate"])
        assert supervisor["row_id"]

    aio.run(day(), timeout=180)
