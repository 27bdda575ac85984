"""Who may record and read consents, generated from sites/policy.toml like the
customers matrix (tests/access/test_matrix.py): every role the policy places,
signed in at its own node, on a customer inside its scope and one outside.

* inside: reading answers exactly the consent fields the role sees; recording
  succeeds exactly for a role that writes every field of a record (and, for
  marketing, the customer's suppression), else 403 with nothing changed;
* outside: both answer the 404 of a customer that does not exist, nothing
  changed, and the refusal is an access event.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from server.consents import READ_FIELDS, RECORD_FIELDS, REFUSED_MARKETING
from server.policy import Policy
from tests.access.conftest import NODES, AccessDeployment, role_username
from tests.consent.conftest import consents, customer_row, new_customer, quiet, record
from tests.conftest import POLICY_FILE

RAW: dict[str, Any] = tomllib.loads(POLICY_FILE.read_text())
ROLES = [r for r, spec in RAW["roles"].items() if any(k in spec.get("sites", []) for k in NODES.values())]
CONSENT_FIELDS = [*RECORD_FIELDS, "deleted"]


def grants(role: str, collection: str, *levels: str) -> set[str]:
    table = RAW["roles"][role].get(collection, {})
    return {f for level in levels for f in table.get(level, [])}


def sees(role: str) -> set[str]:
    return grants(role, "consents", "read", "write", "masked")


def records(role: str) -> bool:
    return set(RECORD_FIELDS) <= grants(role, "consents", "write") and "suppression" in grants(
        role, "customers", "write")


class Who:
    def __init__(self, d: AccessDeployment, role: str) -> None:
        self.username = role_username(role)
        self.node = d.site_of(self.username)
        self.headers = d.sign_in(self.username)
        self.user_id = d.user_id(self.username)


@pytest.fixture(scope="module")
def inside(deployment: AccessDeployment) -> str:
    """A customer inside every role's scope (branch-a, the agents' team, the
    account manager's, contracted to partner-x), with a marketing consent."""
    customer = new_customer(deployment, settle=False)
    record(deployment, "hq", customer, {"purpose": "marketing", "granted": True, "channel": "web"})
    deployment.settle()
    return customer


@pytest.mark.parametrize("role", ROLES)
def test_reading_shows_exactly_the_consent_fields_the_role_sees(deployment: AccessDeployment, inside: str,
                                                                role: str) -> None:
    d, who = deployment, Who(deployment, role)
    response = d.clients[who.node].get(f"/customers/{inside}/consents", headers=who.headers)
    if not READ_FIELDS <= sees(role):
        assert response.status_code == 403 and response.json()["code"] == "not_permitted", response.text
        return
    assert response.status_code == 200, response.text
    history = response.json()
    assert [r["purpose"] for r in history["records"]] == ["id_number", "marketing"], "at its node too"
    for shown in history["records"]:
        assert set(shown) == {"row_id"} | (sees(role) & set(CONSENT_FIELDS)), role
    assert {s["purpose"]: s["granted"] for s in history["current"]} == {"id_number": True, "marketing": True}
    assert ("suppression" in history) == ("suppression" in grants(role, "customers", "read", "write"))


@pytest.mark.parametrize("role", ROLES)
def test_recording_is_allowed_exactly_for_roles_that_write_consents(deployment: AccessDeployment, role: str) -> None:
    d, who = deployment, Who(deployment, role)
    customer = new_customer(d)
    quiet(d, who.node)
    before, last = d.high_seq(who.node), d.last_event_id(who.node)
    held = consents(d, who.node, customer)
    response = record(d, who.node, customer, {"purpose": "marketing", "granted": False, "channel": "phone"},
                      headers=who.headers)
    if records(role):
        assert response.status_code == 201, response.text
        latest = [r for r in response.json()["records"] if r["purpose"] == "marketing"][-1]
        assert (latest["recorded_by"], latest["site"]) == (who.user_id, who.node)
        row = customer_row(d, who.node, customer)
        assert row is not None and REFUSED_MARKETING in row["suppression"]
        (event,) = [e for e in d.events(who.node, after_id=last) if e.action == "consent"]
        assert (event.actor, event.role, event.row_id, event.purpose) == (who.user_id, role, customer, "marketing")
        return
    assert response.status_code == 403, response.text
    assert response.json()["code"] in ("not_permitted", "fields_not_writable")
    assert d.high_seq(who.node) == before and consents(d, who.node, customer) == held
    row = customer_row(d, who.node, customer)
    assert row is not None and REFUSED_MARKETING not in row["suppression"]
    (event,) = d.events(who.node, after_id=last)
    assert (event.actor, event.action, event.outcome, event.status, event.row_id) == (
        who.user_id, "consent", "refused", 403, customer)


def _outside(d: AccessDeployment, policy: Policy, username: str) -> list[str]:
    principal = d.principal(username, policy)
    return [c.row_id for key, c in d.customers.items()
            if key in ("a_team", "a_other", "b", "b_partner") and not policy.admits_row(principal, "customers", c.full)]


@pytest.mark.parametrize("role", ROLES)
def test_a_customer_outside_the_scope_answers_like_one_that_does_not_exist(
        deployment: AccessDeployment, policy: Policy, role: str) -> None:
    d, who = deployment, Who(deployment, role)
    outside = _outside(d, policy, who.username)
    if not outside:
        assert RAW["roles"][role]["rows"] == "all"
        return
    ghost = "01JD0QK2M6X3Z1V9A8B7C6D5ZY"
    body = {"purpose": "marketing", "granted": False, "channel": "phone"}
    client = d.clients[who.node]
    for customer in outside:
        for method, kwargs in (("POST", {"json": body}), ("GET", {})):
            quiet(d, who.node)
            before, last = d.high_seq(who.node), d.last_event_id(who.node)
            response = client.request(method, f"/customers/{customer}/consents", headers=who.headers, **kwargs)
            missing = client.request(method, f"/customers/{ghost}/consents", headers=who.headers, **kwargs)
            assert response.status_code == missing.status_code == 404, response.text
            assert response.json()["detail"].replace(customer, "<id>") == missing.json()["detail"].replace(ghost, "<id>")
            assert d.high_seq(who.node) == before
            event = d.events(who.node, after_id=last)[0]
            assert (event.actor, event.outcome, event.status, event.row_id) == (who.user_id, "refused", 404, customer)
            assert event.action == ("consent" if method == "POST" else "read_consents")


def test_a_node_holds_the_consents_of_exactly_the_customers_it_holds(deployment: AccessDeployment,
                                                                     inside: str) -> None:
    d = deployment
    for node in ("branch-a", "partner-x"):
        assert {r["purpose"] for r in consents(d, node, inside)} == {"id_number", "marketing"}, node
    assert consents(d, "branch-b", inside) == [], "not its customer: not its consents"
    held_at_partner = consents(d, "partner-x", inside)[0]
    assert held_at_partner["channel"] is None and held_at_partner["recorded_by"] is None, (
        "fields no role at a partner sees are absent there")
