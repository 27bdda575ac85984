"""Recording consents and reading them back (POST and GET /customers/{id}/consents),
with the operator's token at HQ: the history is kept, the latest record by time
is in force, and marketing consent drives the customer's suppression."""

from __future__ import annotations

import time

from server.consents import REFUSED_MARKETING
from tests.access.conftest import ADMIN, AccessDeployment
from tests.consent.conftest import consents, customer_row, new_customer, quiet, record, stamps

DAY_MS = 86_400_000


def test_recorded_consents_are_kept_as_a_history_with_the_latest_in_force(deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False)
    now = int(time.time() * 1000)
    given = record(d, "hq", customer, {"purpose": "marketing", "granted": True, "channel": "web",
                                       "at_ms": now - 2 * DAY_MS})
    assert given.status_code == 201, given.text
    last = d.last_event_id("hq")
    withdrawn = record(d, "hq", customer, {"purpose": "marketing", "granted": False, "channel": "phone"})
    assert withdrawn.status_code == 201, withdrawn.text
    history = withdrawn.json()
    assert history["customer_id"] == customer
    # the ID-number consent of the create, then the two marketing records, oldest first
    assert [(r["purpose"], r["granted"], r["channel"]) for r in history["records"]] == [
        ("marketing", True, "web"), ("id_number", True, "paper"), ("marketing", False, "phone")]
    latest = history["records"][-1]
    assert abs(latest["at_ms"] - now) < 60_000, "left out: now"
    assert (latest["recorded_by"], latest["site"], latest["customer_id"]) == ("operator", "hq", customer)
    assert history["current"] == [
        {"purpose": "id_number", "granted": True, "at_ms": history["records"][1]["at_ms"],
         "record": history["records"][1]["row_id"]},
        {"purpose": "marketing", "granted": False, "at_ms": latest["at_ms"], "record": latest["row_id"]}]
    assert REFUSED_MARKETING in history["suppression"]
    (event,) = [e for e in d.events("hq", after_id=last) if e.action == "consent"]
    assert (event.actor, event.row_id, event.purpose, event.reference, event.fields, event.outcome) == (
        "operator", customer, "marketing", latest["row_id"], ("suppression",), "ok")

    last = d.last_event_id("hq")
    read = d.clients["hq"].get(f"/customers/{customer}/consents", headers=ADMIN)
    assert read.status_code == 200 and read.json() == history
    (event,) = d.events("hq", after_id=last)
    assert (event.action, event.row_id, event.outcome) == ("read_consents", customer, "ok")
    assert len(consents(d, "hq", customer)) == 3, "one row per event, none edited"


def test_a_back_dated_record_joins_the_history_without_changing_what_is_in_force(
        deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False)
    now = int(time.time() * 1000)
    assert record(d, "hq", customer, {"purpose": "marketing", "granted": True, "channel": "app"}).status_code == 201
    old = record(d, "hq", customer, {"purpose": "marketing", "granted": False, "channel": "paper",
                                     "at_ms": now - 30 * DAY_MS})
    assert old.status_code == 201, old.text
    history = old.json()
    assert [r["granted"] for r in history["records"] if r["purpose"] == "marketing"] == [False, True]
    assert {s["purpose"]: s["granted"] for s in history["current"]}["marketing"] is True
    assert REFUSED_MARKETING not in history["suppression"], "the grant in force stands"


def test_withdrawing_marketing_suppresses_and_granting_again_lifts_only_that(deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False, suppression_add=["do_not_call", "blacklist"])
    withdrawn = record(d, "hq", customer, {"purpose": "marketing", "granted": False, "channel": "sms"})
    assert sorted(withdrawn.json()["suppression"]) == ["blacklist", "do_not_call", REFUSED_MARKETING]
    again = record(d, "hq", customer, {"purpose": "marketing", "granted": True, "channel": "in_person"})
    assert again.status_code == 201, again.text
    assert sorted(again.json()["suppression"]) == ["blacklist", "do_not_call"]
    card = d.clients["hq"].get(f"/customers/{customer}", headers=ADMIN).json()
    assert sorted(card["suppression"]) == ["blacklist", "do_not_call"]


def test_a_grant_lifts_a_refusal_recorded_as_suppression_and_other_purposes_touch_nothing(
        deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False, suppression_add=[REFUSED_MARKETING])
    for purpose in ("id_number", "data_processing"):
        response = record(d, "hq", customer, {"purpose": purpose, "granted": False, "channel": "paper"})
        assert response.status_code == 201 and response.json()["suppression"] == [REFUSED_MARKETING]
    assert record(d, "hq", customer, {"purpose": "marketing", "granted": True,
                                      "channel": "phone"}).json()["suppression"] == []


def test_the_suppression_change_is_in_the_same_write_as_the_record(deployment: AccessDeployment) -> None:
    """One stamp: the consent row and the customer's suppression change carry the
    same HLC, so they are one transaction and replicate together."""
    d = deployment
    customer = new_customer(d, settle=False)
    response = record(d, "hq", customer, {"purpose": "marketing", "granted": False, "channel": "web"})
    consent = response.json()["current"][-1]["record"]
    written = set(stamps(d, "hq", "consents", consent).values())
    assert written == {stamps(d, "hq", "customers", customer)["suppression"]}


def test_a_consent_dated_in_the_future_is_refused_and_nothing_changes(deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False)
    before, rows = d.high_seq("hq"), len(consents(d, "hq", customer))
    response = record(d, "hq", customer, {"purpose": "marketing", "granted": False, "channel": "web",
                                          "at_ms": int(time.time() * 1000) + DAY_MS})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "consent_in_future" and body["at"] == "$.at_ms"
    assert d.high_seq("hq") == before and len(consents(d, "hq", customer)) == rows


def test_no_consent_is_recorded_for_a_deleted_customer(deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False)
    assert d.clients["hq"].patch(f"/customers/{customer}", json={"deleted": True}, headers=ADMIN).status_code == 200
    quiet(d)  # a deletion shreds keys
    before = d.high_seq("hq")
    response = record(d, "hq", customer, {"purpose": "marketing", "granted": False, "channel": "web"})
    assert response.status_code == 409 and response.json()["code"] == "customer_deleted"
    assert d.high_seq("hq") == before
    history = d.clients["hq"].get(f"/customers/{customer}/consents", headers=ADMIN)
    assert history.status_code == 200 and len(history.json()["records"]) == 1, "its history is kept"
    row = customer_row(d, "hq", customer)
    assert row is not None and row["deleted"]


def test_a_customer_that_does_not_exist_has_no_consents(deployment: AccessDeployment) -> None:
    d = deployment
    ghost = "01JD0QK2M6X3Z1V9A8B7C6D5ZY"
    before = d.high_seq("hq")
    for response in (record(d, "hq", ghost, {"purpose": "marketing", "granted": True, "channel": "web"}),
                     d.clients["hq"].get(f"/customers/{ghost}/consents", headers=ADMIN)):
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert d.high_seq("hq") == before and consents(d, "hq", ghost) == []
