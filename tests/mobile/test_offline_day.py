"""A day of offline work: fetch the inbox, lose the signal, record results and a
callback, come back, sync; the work reaches branch-a and HQ. A second account
manager's phone never sees the first one's customers."""

from __future__ import annotations

import pytest

from mobile import NotHeldError, Phone
from sync.errors import LinkDownError
from sync.store.sqlite import wall_clock_ms
from tests.conftest import LoopThread
from tests.mobile.conftest import HOUR_MS, Site

pytestmark = pytest.mark.system


def test_a_day_offline_then_sync(site: Site, aio: LoopThread) -> None:
    async def day() -> None:
        phone = await site.enroll("max", "max-day")
        await phone.sync()
        now = wall_clock_ms()
        inbox = await phone.inbox(now)
        assert [t.task_id for t in inbox] == [site.tasks["max_1_urgent"], site.tasks["max_1_due"]]

        await site.proxy.cut()  # the signal is gone
        try:
            with pytest.raises(LinkDownError):
                await phone.sync()
            first, second = inbox
            card = await phone.card(first.customer_id)  # offline: opened with the phone's own keys
            assert card.pii["name"].reveal() == "欧阳明远"
            done = await phone.record_result(first.task_id, "success", 95, now_ms=now, satisfaction=5)
            tried = await phone.record_result(second.task_id, "no_answer", 0, now_ms=now + 1)
            callback = await phone.schedule_callback(second.customer_id, now + 24 * HOUR_MS, now_ms=now + 2,
                                                     task_id=second.task_id)
            assert await phone.inbox(now + 3) == [], "the work rules ran offline: one done, one retried later"
            retried = await phone.store.read_row("tasks", second.task_id)
            assert retried is not None and retried["status"] == "assigned" and retried["due_at_ms"] > now + 3
            assert retried["attempts"] == 1
            tomorrow = await phone.inbox(now + 25 * HOUR_MS)
            assert {callback, second.task_id} <= {t.task_id for t in tomorrow}
            assert await phone.pending() > 0
            with pytest.raises(NotHeldError):
                await phone.record_result(site.tasks["mia_1_due"], "success", 1, now_ms=now)
        finally:
            await site.proxy.heal()

        report = await phone.sync()
        assert report.pushed > 0 and report.refused_upstream == 0
        assert await phone.pending() == 0

        branch = await site.branch_store()
        try:
            result = await branch.read_row("results", done)
            assert result is not None and result["outcome"] == "success" and result["agent"] == site.users["max"]
            task = await branch.read_row("tasks", first.task_id)
            assert task is not None and task["status"] == "done" and task["attempts"] == 1
            assert await branch.read_row("tasks", callback) is not None
        finally:
            await branch.close()

        await site.branch_sync()  # branch-a forwards the phone's work to HQ
        hq = await site.hq_store()
        try:
            for row_id in (done, tried):
                result = await hq.read_row("results", row_id)
                assert result is not None and result["site"] == "branch-a"
            origins = await hq.field_origins("results", done)
            assert set(origins.values()) == {phone.node_id}, "HQ takes the phone's changes as the phone's"
            task = await hq.read_row("tasks", callback)
            assert task is not None and task["due_at_ms"] == now + 24 * HOUR_MS
            assert task["assignee"] == site.users["max"]
            record = await hq.node(phone.node_id)
            assert record is not None and record.parent == "branch-a" and record.role == "mobile"
        finally:
            await hq.close()

    aio.run(day(), timeout=120)


def test_a_second_account_managers_phone_sees_none_of_the_firsts(site: Site, aio: LoopThread) -> None:
    async def run() -> tuple[Phone, list[str]]:
        phone = await site.enroll("mia")
        await phone.sync()
        return phone, await phone.customers()

    phone, customers = aio.run(run(), timeout=60)
    assert customers == [site.customers["mia_1"]]
    tasks = aio.run(phone.inbox(wall_clock_ms()))
    assert [t.task_id for t in tasks] == [site.tasks["mia_1_due"]]
    with pytest.raises(NotHeldError):
        aio.run(phone.card(site.customers["max_1"]))
    db = (phone.data_dir / "phone.db").read_bytes()
    for key in ("max_1", "max_2", "nobody"):
        assert site.customers[key].encode() not in db, "not even the id of another's customer"
