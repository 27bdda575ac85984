"""The ID number is sensitive personal information (PIPL Art. 28-29): storing one
needs the person's separate consent for it, in force. Without it a create or
update is refused with a 422 that says so, and nothing at all changes: no
customer, no consent row, no field."""

from __future__ import annotations

import time
from typing import Any

from tests.access.conftest import ADMIN, AccessDeployment, person
from tests.consent.conftest import consents, customer_row, new_customer, quiet, record, stamps

ID = "110105198001011234"


def assert_consent_required(d: AccessDeployment, response: Any, *, before_seq: int, row_id: str | None) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["code"], body["field"], body["purpose"]) == ("consent_required", "id_number", "id_number")
    assert body.get("row_id") == row_id
    assert "consent" in body["detail"] and "id_number" in body["detail"] and "Art. 2" in body["detail"]
    assert ID not in response.text, "the refused value is not echoed"
    assert d.high_seq("hq") == before_seq, "a refused write stored something"


def test_a_create_with_an_id_number_and_no_consent_is_refused_and_stores_nothing(deployment: AccessDeployment) -> None:
    d = deployment
    hq = d.node("hq").store
    customers_before = len(d.on("hq", hq.row_ids("customers")))
    consents_before = len(d.on("hq", hq.row_ids("consents")))
    quiet(d)
    before, last = d.high_seq("hq"), d.last_event_id("hq")
    response = d.clients["hq"].post("/customers", json={**person(501), "id_number": ID, "home_branch": "branch-a"},
                                    headers=ADMIN)
    assert_consent_required(d, response, before_seq=before, row_id=None)
    (event,) = d.events("hq", after_id=last)  # the refused change is in the audit log, without the value
    assert (event.action, event.status, event.outcome, event.reason) == ("create", 422, "refused", "consent_required")
    assert "id_number" in event.fields and ID not in repr(event)
    assert "id_number_consent" in response.json()["detail"], "says how to give it"
    assert len(d.on("hq", hq.row_ids("customers"))) == customers_before
    assert len(d.on("hq", hq.row_ids("consents"))) == consents_before


def test_a_create_that_gives_the_consent_stores_both_in_one_write(deployment: AccessDeployment) -> None:
    d = deployment
    at = int(time.time() * 1000) - 3_600_000
    last = d.last_event_id("hq")
    response = d.clients["hq"].post("/customers", headers=ADMIN, json={
        **person(502), "id_number": ID, "home_branch": "branch-a",
        "id_number_consent": {"channel": "in_person", "at_ms": at}})
    assert response.status_code == 201, response.text
    card = response.json()
    assert card["id_number"] == ID
    (row,) = consents(d, "hq", card["row_id"])
    written = set(stamps(d, "hq", "consents", row["row_id"]).values())
    assert written == {stamps(d, "hq", "customers", card["row_id"])["id_number"]}, "one write, one stamp"
    assert (row["purpose"], row["granted"], row["channel"], row["at_ms"], row["recorded_by"], row["site"]) == (
        "id_number", True, "in_person", at, "operator", "hq")
    (event,) = d.events("hq", after_id=last)  # one entry, committed with both, naming the consent
    assert (event.action, event.reference, "id_number" in event.fields) == ("create", row["row_id"], True)


def test_creating_without_an_id_number_needs_no_consent(deployment: AccessDeployment) -> None:
    d = deployment
    body = {k: v for k, v in person(503).items() if k != "id_number"}
    response = d.clients["hq"].post("/customers", json={**body, "id_number": None}, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert consents(d, "hq", response.json()["row_id"]) == []


def test_an_update_setting_an_id_number_needs_the_consent_in_force(deployment: AccessDeployment) -> None:
    d = deployment
    created = d.clients["hq"].post("/customers", headers=ADMIN, json={
        k: v for k, v in {**person(504), "home_branch": "branch-a"}.items() if k != "id_number"})
    customer = created.json()["row_id"]
    quiet(d)
    view = d.clients["hq"].get(f"/customers/{customer}", headers=ADMIN).json()
    state = customer_row(d, "hq", customer)

    before = d.high_seq("hq")
    refused = d.clients["hq"].patch(f"/customers/{customer}", json={"id_number": ID, "star_level": 6}, headers=ADMIN)
    assert_consent_required(d, refused, before_seq=before, row_id=customer)
    assert f"/customers/{customer}/consents" in refused.json()["detail"]
    assert d.clients["hq"].get(f"/customers/{customer}", headers=ADMIN).json() == view
    assert customer_row(d, "hq", customer) == state and consents(d, "hq", customer) == []

    assert record(d, "hq", customer, {"purpose": "id_number", "granted": True, "channel": "paper"}).status_code == 201
    done = d.clients["hq"].patch(f"/customers/{customer}", json={"id_number": ID}, headers=ADMIN)
    assert done.status_code == 200 and done.json()["id_number"] == ID

    assert record(d, "hq", customer, {"purpose": "id_number", "granted": False, "channel": "phone"}).status_code == 201
    before = d.high_seq("hq")
    again = d.clients["hq"].patch(f"/customers/{customer}", json={"id_number": "110105198001015678"}, headers=ADMIN)
    assert again.status_code == 422 and again.json()["code"] == "consent_required", "withdrawn: refused again"
    assert d.high_seq("hq") == before
    cleared = d.clients["hq"].patch(f"/customers/{customer}", json={"id_number": None}, headers=ADMIN)
    assert cleared.status_code == 200 and cleared.json()["id_number"] is None, "clearing it needs no consent"


def test_an_update_may_give_the_consent_with_the_number(deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False)
    record(d, "hq", customer, {"purpose": "id_number", "granted": False, "channel": "phone"})
    withdrawn_at = consents(d, "hq", customer)
    before = d.high_seq("hq")
    stale = d.clients["hq"].patch(f"/customers/{customer}", headers=ADMIN, json={
        "id_number": ID, "id_number_consent": {"channel": "paper", "at_ms": 1_600_000_000_000}})
    assert stale.status_code == 422, "a consent dated before the withdrawal is not in force"
    assert d.high_seq("hq") == before and consents(d, "hq", customer) == withdrawn_at, "nothing recorded either"
    fresh = d.clients["hq"].patch(f"/customers/{customer}", headers=ADMIN, json={
        "id_number": ID, "id_number_consent": {"channel": "paper"}})
    assert fresh.status_code == 200 and fresh.json()["id_number"] == ID
    history = d.clients["hq"].get(f"/customers/{customer}/consents", headers=ADMIN).json()
    assert {s["purpose"]: s["granted"] for s in history["current"]} == {"id_number": True}


def test_the_consent_check_comes_after_the_access_check(deployment: AccessDeployment) -> None:
    """A role that may not write the ID number gets the 403 it always got, not a
    422 that would tell it about the customer's consents."""
    d = deployment
    customer = new_customer(d)
    headers = d.sign_in("supervisor")
    before = d.high_seq("branch-a")
    response = d.clients["branch-a"].patch(f"/customers/{customer}", json={"id_number": ID}, headers=headers)
    assert response.status_code == 403 and response.json()["code"] == "fields_not_writable"
    assert d.high_seq("branch-a") == before
