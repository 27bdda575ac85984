"""What a phone may not do: sync for a disabled or revoked user, write a field
its user may not write or a row outside their scope (refused, and the phone
converges back), sync anywhere but at its site, enrol under a bad name or key."""

from __future__ import annotations

import os

import httpx
import pytest

from crypto.identity import NodeIdentity
from mobile import Phone
from mobile.keys import enrolment
from mobile.transport import SiteTransport
from sync.changes import PullRequest, encode_frame
from sync.edits import Edit
from sync.errors import PeerRefusedError, UnknownNodeError
from sync.ids import new_ulid
from sync.store.sqlite import wall_clock_ms
from tests.conftest import LoopThread
from tests.mobile.conftest import PASSWORD, Site

pytestmark = pytest.mark.system


def _bearer(site: Site, username: str) -> dict[str, str]:
    response = httpx.post(f"{site.branch.url}/auth/sign-in", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def test_a_revoked_users_phone_is_refused_at_sync(site: Site, aio: LoopThread) -> None:
    phone = aio.run(site.enroll("rex"), timeout=60)
    aio.run(phone.sync(), timeout=60)
    aio.run(site.hq.call("POST", f"/users/{site.users['rex']}/revoke-tokens"))
    aio.run(site.branch_sync())
    with pytest.raises(PeerRefusedError) as refused:
        aio.run(phone.sync(), timeout=60)
    assert (refused.value.status, refused.value.peer_code) == (401, "unauthorized")
    with pytest.raises(PeerRefusedError) as keys:
        aio.run(phone.refresh_keys())
    assert keys.value.status == 401
    log = site.branch.log_path.read_text()
    assert f"sync.phone refused peer={phone.node_id} route=pull reason=revoked" in log


def test_writes_outside_the_users_policy_are_refused_and_converge_back(site: Site, aio: LoopThread) -> None:
    async def run() -> None:
        phone = await site.enroll("max", "max-rogue")
        await phone.sync()
        customer = site.customers["max_1"]
        before = await phone.store.read_row("customers", customer)
        assert before is not None and before["star_level"] == 5
        others_task = site.tasks["mia_1_due"]
        await phone.store.write_local([
            Edit("customers", customer, "star_level", "set", 7),  # read-only for an account manager
            Edit("tasks", others_task, "status", "set", "done"),  # mia's task: outside max's scope
        ])
        report = await phone.sync()
        assert report.refused_upstream == 2
        await phone.sync()
        after = await phone.store.read_row("customers", customer)
        assert after is not None and after["star_level"] == 5, "converged back to the site's value"
        assert await phone.store.read_row("tasks", others_task) is None
        branch = await site.branch_store()
        try:
            assert (await branch.read_row("customers", customer))["star_level"] == 5  # type: ignore[index]
            assert (await branch.read_row("tasks", others_task))["status"] == "assigned"  # type: ignore[index]
        finally:
            await branch.close()

    aio.run(run(), timeout=120)


def test_a_phone_syncs_at_its_site_only(site: Site, aio: LoopThread) -> None:
    async def run() -> None:
        phone = await site.enroll("mia", "mia-roaming")
        await phone.sync()
        await site.branch_sync()  # HQ now knows the phone, as a node below branch-a
        at_hq = SiteTransport(site.hq.url, site="hq", identity=lambda: phone.keystore.identity,
                              now_ms=wall_clock_ms)
        try:
            request = PullRequest(node=phone.node_id, store_id=None, since=0, cursor=0, limit=100,
                                  node_store_id=phone.store.store_id)
            with pytest.raises(UnknownNodeError):
                await at_hq("pull", encode_frame(request))
        finally:
            await at_hq.aclose()

    aio.run(run(), timeout=60)


def _enrol_body(node_id: str) -> dict[str, object]:
    return {"phone_keys": enrolment(NodeIdentity.generate(node_id))}


def test_bad_enrolments_are_refused_and_change_nothing(site: Site, aio: LoopThread) -> None:
    url = site.branch.url
    fresh = new_ulid(wall_clock_ms(), os.urandom(10)).lower()
    manager = _bearer(site, "mia")
    for node_id in (f"hq.{fresh}", f"branch-a.{fresh}x", f"branch-a.{fresh[:-1]}", f"branch-a-{fresh}"):
        response = httpx.post(f"{url}/devices/enroll", json=_enrol_body(node_id), headers=manager)
        assert response.status_code == 422 and response.json()["code"] == "invalid_phone_node", response.text
    forged = _enrol_body(f"branch-a.{fresh}")
    forged["phone_keys"]["signature"] = enrolment(NodeIdentity.generate(f"branch-a.{fresh}"))["signature"]  # type: ignore[index]
    response = httpx.post(f"{url}/devices/enroll", json=forged, headers=manager)
    assert response.status_code == 403 and response.json()["code"] == "bad_signature"
    agent = _bearer(site, "ana")
    response = httpx.post(f"{url}/devices/enroll", json=_enrol_body(f"branch-a.{fresh}"), headers=agent)
    assert response.status_code == 403
    taken = aio.run(site.enroll("mia", "mia-first"), timeout=60)
    response = httpx.post(f"{url}/devices/enroll", json=_enrol_body(taken.node_id), headers=manager)
    assert response.status_code == 409 and response.json()["code"] == "phone_node"
    for node_id in (f"branch-a.{fresh}", f"hq.{fresh}"):
        unknown = httpx.post(f"{url}/devices/keys", json={"phone": node_id})
        assert unknown.status_code == 403, unknown.text
    assert aio.run(site.branch.call("GET", "/status"))  # the branch still serves
    phone_again: Phone = taken
    assert aio.run(phone_again.sync(), timeout=60).refused_upstream == 0
