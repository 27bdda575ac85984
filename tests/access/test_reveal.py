"""Revealing a masked field: a purpose code from a fixed list, a reference that
is an id and never free text, a limit per user and day read from the access
events, and every reveal and refused reveal recorded. Which role may reveal
which field is tests/access/test_matrix.py."""

from __future__ import annotations

import asyncio
import typing
from pathlib import Path

import pytest

from server.access import OPERATOR_ACTOR, Actor, MaskedField, TooManyRevealsError
from server.masking import MASKS
from server.audit_log import DAY_MS, AuditLog
from server.policy import Principal
from sync.hlc import Clock
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.access.conftest import ADMIN, REVEALS_PER_DAY, AccessDeployment


def test_the_fields_one_may_ask_to_reveal_are_those_with_a_mask() -> None:
    assert set(typing.get_args(MaskedField)) == {f for c, f in MASKS if c == "customers"}


def test_a_reveal_is_recorded_with_its_purpose_and_reference(deployment: AccessDeployment) -> None:
    d = deployment
    customer, task = d.customers["a_team"], "01JD0QK2M6X3Z1V9A8B7C6D5T1"
    body = {"field": "phone", "purpose": "complaint", "reference": task}
    response = d.clients["branch-a"].post(f"/customers/{customer.row_id}/reveal", json=body,
                                          headers=d.sign_in("agent"))
    assert response.status_code == 200, response.text
    assert response.json()["value"] == customer.body["phone"]
    event = d.events("branch-a", row_id=customer.row_id, action="reveal")[-1]
    assert (event.actor, event.role, event.fields, event.masked, event.purpose, event.reference, event.status) == (
        d.user_id("agent"), "agent", ("phone",), (), "complaint", task, 200)


@pytest.mark.parametrize("body", [
    {"field": "phone", "purpose": "just curious"},
    {"field": "phone"},
    {"field": "phone", "purpose": "outbound_call", "reference": "13800138000"},
    {"field": "phone", "purpose": "outbound_call", "reference": "张三 asked"},
    {"field": "notes", "purpose": "outbound_call"},
    {"field": "phone", "purpose": "outbound_call", "note": "free text"},
], ids=["free-purpose", "no-purpose", "phone-as-reference", "text-reference", "unmaskable-field", "extra-key"])
def test_anything_but_codes_and_ids_is_a_400_that_reveals_and_records_nothing(deployment: AccessDeployment,
                                                                             body: dict[str, str]) -> None:
    d = deployment
    customer = d.customers["a_team"]
    last = d.last_event_id("branch-a")
    response = d.clients["branch-a"].post(f"/customers/{customer.row_id}/reveal", json=body,
                                          headers=d.sign_in("agent"))
    assert response.status_code == 400, response.text
    assert customer.body["phone"] not in response.text and "13800138000" not in response.text
    assert "张三" not in response.text
    assert d.events("branch-a", after_id=last) == []


def test_over_the_daily_limit_is_a_429_with_retry_after_recorded(deployment: AccessDeployment) -> None:
    d = deployment
    headers = d.sign_in("limited")  # a supervisor nobody else's test reveals as
    customer = d.customers["a_other"]
    url = f"/customers/{customer.row_id}/reveal"
    for _ in range(REVEALS_PER_DAY):
        response = d.clients["branch-a"].post(url, json={"field": "phone", "purpose": "outbound_call"},
                                              headers=headers)
        assert response.status_code == 200, response.text
    response = d.clients["branch-a"].post(url, json={"field": "address", "purpose": "visit"}, headers=headers)
    assert response.status_code == 429, response.text
    problem = response.json()
    assert problem["code"] == "too_many_reveals" and problem["limit"] == REVEALS_PER_DAY
    retry = int(response.headers["retry-after"])
    assert 0 < retry <= 86_400 and problem["retry_after_s"] == retry
    assert customer.body["address"] not in response.text
    refused = d.events("branch-a", actor=d.user_id("limited"), action="reveal")[-1]
    assert (refused.outcome, refused.status, refused.reason, refused.fields, refused.purpose) == (
        "refused", 429, "too_many_reveals", ("address",), "visit")
    # the operator is no person: no limit, still recorded
    response = d.clients["branch-a"].post(url, json={"field": "address", "purpose": "visit"}, headers=ADMIN)
    assert response.status_code == 200 and response.json()["value"] == customer.body["address"]
    assert d.events("branch-a", actor="operator", action="reveal")[-1].fields == ("address",)


def test_the_limit_counts_the_last_24_hours_from_the_table(tmp_path: Path) -> None:
    now = [10 * DAY_MS]
    user = Actor(user=Principal(user_id="u1", role="supervisor", site="branch-a", site_kind="branch"))

    async def go() -> None:
        store = await SqliteStore.create(tmp_path / "n.db", node_id="branch-a", role="branch",
                                         clock=Clock(wall_clock_ms, 60_000))
        try:
            log = AuditLog(store, reveals_per_day=3, now_ms=lambda: now[0])
            for _ in range(3):
                await log.reserve_reveal(user, "R1", "phone", "outbound_call", None)
                now[0] += 1_000
            with pytest.raises(TooManyRevealsError) as refused:
                await log.reserve_reveal(user, "R1", "phone", "outbound_call", None)
            assert refused.value.retry_after_s == (DAY_MS - 3_000) // 1000
            assert await log.reveals_today(user) == 3
            await log.reserve_reveal(OPERATOR_ACTOR, "R1", "phone", "outbound_call", None)  # not limited
            now[0] = 11 * DAY_MS  # the first reveal is a day old
            await log.reserve_reveal(user, "R1", "phone", "outbound_call", None)
            assert await log.reveals_today(user) == 3
            zero = AuditLog(store, reveals_per_day=0, now_ms=lambda: now[0])
            with pytest.raises(TooManyRevealsError):
                await zero.reserve_reveal(user, "R1", "phone", "outbound_call", None)
        finally:
            await store.close()

    asyncio.run(go())
