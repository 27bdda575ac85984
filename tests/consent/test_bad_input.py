"""Bad consent input is refused with a 4xx problem that does not echo the value,
and changes nothing: no consent row, no suppression, no customer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.access.conftest import ADMIN, AccessDeployment, person
from tests.consent.conftest import consents, customer_row, new_customer, quiet

#: a value that must not come back in any answer (it could have been PII)
SECRET = "王小明-13812345678"
GOOD = {"purpose": "marketing", "granted": False, "channel": "phone"}

BAD_BODIES: dict[str, Any] = {
    "unknown purpose": {**GOOD, "purpose": SECRET},
    "purpose of another list": {**GOOD, "purpose": "outbound_call"},
    "bad channel": {**GOOD, "channel": SECRET},
    "unknown field": {**GOOD, "note": SECRET},
    "free text where a flag goes": {**GOOD, "granted": SECRET},
    "no purpose": {"granted": False, "channel": "phone"},
    "no granted": {"purpose": "marketing", "channel": "phone"},
    "no channel": {"purpose": "marketing", "granted": False},
    "negative time": {**GOOD, "at_ms": -1},
    "time as text": {**GOOD, "at_ms": SECRET},
    "time beyond the schema": {**GOOD, "at_ms": 1 << 60},
    "null purpose": {**GOOD, "purpose": None},
    "a list": [GOOD],
    "empty": {},
}


@pytest.fixture(scope="module")
def customer(deployment: AccessDeployment) -> str:
    return new_customer(deployment, settle=False)


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_bad_consent_is_refused_and_changes_nothing(deployment: AccessDeployment, customer: str, case: str) -> None:
    d = deployment
    quiet(d)
    before, held, row = d.high_seq("hq"), consents(d, "hq", customer), customer_row(d, "hq", customer)
    response = d.clients["hq"].post(f"/customers/{customer}/consents", json=BAD_BODIES[case], headers=ADMIN)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert SECRET not in response.text and "13812345678" not in response.text
    assert d.high_seq("hq") == before
    assert consents(d, "hq", customer) == held and customer_row(d, "hq", customer) == row


def test_a_body_that_is_not_json_is_refused(deployment: AccessDeployment, customer: str) -> None:
    d = deployment
    before = d.high_seq("hq")
    response = d.clients["hq"].post(f"/customers/{customer}/consents", content=b"{purpose: marketing",
                                    headers={**ADMIN, "content-type": "application/json"})
    assert response.status_code == 400 and d.high_seq("hq") == before


@pytest.mark.parametrize("path", ["/customers/not-an-id/consents", "/customers/%27%20OR%201=1/consents"])
def test_a_bad_customer_id_is_refused(deployment: AccessDeployment, path: str) -> None:
    d = deployment
    before = d.high_seq("hq")
    for response in (d.clients["hq"].post(path, json=GOOD, headers=ADMIN), d.clients["hq"].get(path, headers=ADMIN)):
        assert response.status_code in (400, 404), response.text
    assert d.high_seq("hq") == before


BAD_INLINE: dict[str, Any] = {
    "bad channel": {"channel": SECRET},
    "unknown field": {"channel": "paper", "granted": False},
    "no channel": {},
    "future": {"channel": "paper", "at_ms": (1 << 48) - 1},
    "not an object": SECRET,
}


@pytest.mark.parametrize("case", sorted(BAD_INLINE))
def test_a_create_with_a_bad_id_number_consent_stores_nothing(deployment: AccessDeployment, case: str) -> None:
    d = deployment
    quiet(d)
    hq = d.node("hq").store
    before = d.high_seq("hq")
    counts = (len(d.on("hq", hq.row_ids("customers"))), len(d.on("hq", hq.row_ids("consents"))))
    response = d.clients["hq"].post("/customers", headers=ADMIN, json={
        **person(601), "home_branch": "branch-a", "id_number_consent": BAD_INLINE[case]})
    assert 400 <= response.status_code < 500, response.text
    assert SECRET not in response.text and person(601)["id_number"] not in response.text
    assert d.high_seq("hq") == before
    assert (len(d.on("hq", hq.row_ids("customers"))), len(d.on("hq", hq.row_ids("consents")))) == counts
