"""Refusals on the customers API: a clear problem body, nothing changed, and an
access event each, whoever the caller (no token, another node's token, a user
calling an operator operation). Whether branch-b accepts branch-a's tokens at all
is tests/auth/test_trusted_issuers.py; here, only what the customers API adds."""

from __future__ import annotations

from typing import Any

import pytest

from tests.access.conftest import ADMIN, AccessDeployment, bearer


def refusal(d: AccessDeployment, node: str, response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code and body["detail"] and body["type"].endswith(code)
    return body


@pytest.mark.parametrize("headers", [{}, bearer("not-a-token"), {"authorization": "Basic b3BlcmF0b3I6eA=="}],
                         ids=["none", "garbage", "basic"])
def test_no_valid_credential_is_a_401_recorded_as_anonymous(deployment: AccessDeployment,
                                                            headers: dict[str, str]) -> None:
    d = deployment
    customer = d.customers["a_team"]
    last = d.last_event_id("branch-a")
    body = refusal(d, "branch-a", d.clients["branch-a"].get(f"/customers/{customer.row_id}", headers=headers),
                   401, "unauthorized")
    assert body["reason"] in ("missing_token", "malformed")
    (event,) = d.events("branch-a", after_id=last)
    assert (event.actor, event.role, event.action, event.row_id, event.status, event.outcome) == (
        "anonymous", None, "read", customer.row_id, 401, "refused")
    assert event.reason == body["reason"]


def test_a_token_of_another_node_is_refused_on_customers_and_recorded(deployment: AccessDeployment) -> None:
    d = deployment
    token = d.sign_in("agent")  # at branch-a; branch-b does not trust branch-a
    last = d.last_event_id("branch-b")
    response = d.clients["branch-b"].post("/customers/lookup", json={"field": "phone", "value": "13800138000"},
                                          headers=token)
    body = refusal(d, "branch-b", response, 401, "unauthorized")
    assert body["reason"] == "untrusted_issuer" and "13800138000" not in response.text
    (event,) = d.events("branch-b", after_id=last)
    assert (event.actor, event.action, event.reason, event.fields) == ("anonymous", "lookup", "untrusted_issuer", ())


@pytest.mark.parametrize(("path", "body", "action"), [
    ("/customers/{id}/erase", {"requested_by": "data_subject", "basis": "subject_request"}, "erase"),
    ("/customers/{id}/rotate-keys", None, "rotate_keys"),
])
def test_erasure_and_key_rotation_are_the_operators(deployment: AccessDeployment, path: str, body: Any,
                                                    action: str) -> None:
    d = deployment
    customer = d.customers["a_team"]
    before, last = d.high_seq("hq"), d.last_event_id("hq")
    headers = d.sign_in("hq-admin")
    problem = refusal(d, "hq", d.clients["hq"].post(path.format(id=customer.row_id), json=body, headers=headers),
                      403, "operator_only")
    assert problem["role"] == "hq_admin" and problem["operation"] == action
    assert d.high_seq("hq") == before
    (event,) = d.events("hq", after_id=last)
    assert (event.actor, event.action, event.status, event.reason, event.row_id) == (
        d.user_id("hq-admin"), action, 403, "operator_only", customer.row_id)


def test_a_missing_customer_is_a_404_for_the_operator_too_and_recorded(deployment: AccessDeployment) -> None:
    d = deployment
    ghost = "01JD0QK2M6X3Z1V9A8B7C6D5E0"
    last = d.last_event_id("hq")
    body = refusal(d, "hq", d.clients["hq"].get(f"/customers/{ghost}", headers=ADMIN), 404, "not_found")
    assert body["row_id"] == ghost
    (event,) = d.events("hq", after_id=last)
    assert (event.actor, event.status, event.reason) == ("operator", 404, "not_found")


def test_bad_input_is_a_400_that_changes_and_records_nothing(deployment: AccessDeployment) -> None:
    d = deployment
    headers = d.sign_in("supervisor")
    customer = d.customers["a_team"]
    before, last = d.high_seq("branch-a"), d.last_event_id("branch-a")
    client = d.clients["branch-a"]
    for response in (
        client.patch(f"/customers/{customer.row_id}", json={"star_level": 9}, headers=headers),
        client.patch(f"/customers/{customer.row_id}", json={"no_such_field": 1}, headers=headers),
        client.post("/customers", json={"phone": "x" * 40}, headers=headers),
        client.get("/customers/not-an-id", headers=headers),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "bad_request"
    assert d.high_seq("branch-a") == before and d.events("branch-a", after_id=last) == []


def test_a_branch_user_signed_in_at_hq_sees_what_they_see_at_their_branch(deployment: AccessDeployment) -> None:
    """The row scope comes from the user's own site (branch-a), not from HQ's."""
    d = deployment
    at_hq, at_branch = d.sign_in("supervisor", "hq"), d.sign_in("supervisor")
    for key, status in (("a_team", 200), ("a_other", 200), ("b", 404), ("b_partner", 404)):
        row_id = d.customers[key].row_id
        here = d.clients["hq"].get(f"/customers/{row_id}", headers=at_hq)
        there = d.clients["branch-a"].get(f"/customers/{row_id}", headers=at_branch)
        assert here.status_code == there.status_code == status, key
        if status == 200:
            assert here.json() == there.json()


def test_an_agent_sees_a_team_mates_customer_and_the_queue_not_anothers(deployment: AccessDeployment) -> None:
    d = deployment
    headers = d.sign_in("agent")
    queued = d.create_customer("queue", {"home_branch": "branch-a", "star_level": 1}, node="branch-a")
    stranger = d.create_customer("stranger", {"home_branch": "branch-a", "assigned_agent": d.user_id("limited")},
                                 node="branch-a")
    client = d.clients["branch-a"]
    assert client.get(f"/customers/{d.customers['a_team'].row_id}", headers=headers).status_code == 200
    assert client.get(f"/customers/{queued.row_id}", headers=headers).status_code == 200
    assert client.get(f"/customers/{stranger.row_id}", headers=headers).status_code == 404
