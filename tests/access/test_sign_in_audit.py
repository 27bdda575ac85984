"""Sign-ins and failed sign-ins are in the audit log: the user's id when the
sign-in works, ``anonymous`` when it fails, and never the name that was typed."""

from __future__ import annotations

import msgspec

from tests.access.conftest import PASSWORD, AccessDeployment


def test_sign_ins_and_failures_are_recorded_without_the_name_typed(deployment: AccessDeployment) -> None:
    d = deployment
    client = d.clients["branch-a"]
    last = d.last_event_id("branch-a")
    assert client.post("/auth/sign-in", json={"username": "agent", "password": PASSWORD}).status_code == 200
    wrong = client.post("/auth/sign-in", json={"username": "agent", "password": "not-the-password"})
    unknown = client.post("/auth/sign-in", json={"username": "13800138000", "password": "x"})
    assert wrong.status_code == 401 and unknown.status_code == 401
    entries = d.events("branch-a", after_id=last, action="sign_in")
    assert [(e.actor, e.outcome, e.status, e.collection) for e in entries] == [
        (d.user_id("agent"), "ok", 200, "auth"), ("anonymous", "refused", 401, "auth"),
        ("anonymous", "refused", 401, "auth")]
    text = msgspec.json.encode(entries).decode()
    assert "13800138000" not in text and all(e.actor != "agent" for e in entries)  # the id, not the name
