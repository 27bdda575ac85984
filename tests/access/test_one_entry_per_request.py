"""Every API call that returns personal information leaves exactly one audit
entry, naming every field it returned (in full or masked); checked across the
whole API, from the generated OpenAPI document, not endpoint by endpoint.

Each operation of the spec is listed below, either with calls that return
personal information or as one that never does. The test fails on an operation
that is in neither list (a new endpoint must be classified), and it checks each
classification against the bytes of the answers: a call's returned fields are
found by searching its response for every test customer's values and masks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.masking import mask_field
from tests.access.conftest import ADMIN, AccessDeployment

SPEC = Path(__file__).resolve().parents[2] / "api_spec" / "openapi.json"
PII = ("name", "phone", "second_contact", "email", "id_number", "birthday", "address", "employer", "position",
       "interests", "notes")

#: a call: given the deployment, where it goes and how to send it (signing in,
#: which is audited on its own, happens before the request is counted)
Call = Callable[[AccessDeployment], tuple[str, Callable[[], httpx.Response]]]


def _who(d: AccessDeployment, username: str | None) -> tuple[str, dict[str, str]]:
    return ("hq", ADMIN) if username is None else (d.site_of(username), d.sign_in(username))


def _get(username: str | None, key: str) -> Call:
    def call(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
        node, headers = _who(d, username)
        return node, lambda: d.clients[node].get(f"/customers/{d.customers[key].row_id}", headers=headers)
    return call


def _lookup(username: str | None, key: str, field: str) -> Call:
    def call(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
        node, headers = _who(d, username)
        body = {"field": field, "value": d.customers[key].body[field]}
        return node, lambda: d.clients[node].post("/customers/lookup", json=body, headers=headers)
    return call


def _reveal(username: str, key: str, field: str) -> Call:
    def call(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
        node, headers = _who(d, username)
        return node, lambda: d.clients[node].post(f"/customers/{d.customers[key].row_id}/reveal",
                                                  json={"field": field, "purpose": "inbound_call"}, headers=headers)
    return call


def _card(username: str | None, key: str) -> Call:
    def call(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
        node, headers = _who(d, username)
        return node, lambda: d.clients[node].get(f"/customers/{d.customers[key].row_id}/card", headers=headers)
    return call


def _update(key: str) -> Call:
    def call(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
        body = {"star_level": d.customers[key].body["star_level"]}  # what is there already
        return "hq", lambda: d.clients["hq"].patch(f"/customers/{d.customers[key].row_id}", json=body, headers=ADMIN)
    return call


def _create(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
    body = {"name": "单请求", "phone": "13700001111", "email": "one.entry@example.cn", "home_branch": "branch-b"}

    def send() -> httpx.Response:
        response = d.clients["hq"].post("/customers", json=body, headers=ADMIN)
        made = d.customers["b"]
        d.customers["one_entry_made"] = type(made)(key="one_entry_made", row_id=response.json()["row_id"],
                                                   body=body, full=response.json())
        return response
    return "hq", send


def _export(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
    return "hq", lambda: d.clients["hq"].post(f"/customers/{d.customers['a_other'].row_id}/export",
                                              json={"requested_by": "data_subject"}, headers=ADMIN)


#: operations that return personal information, and calls that make them do so
RETURNS_PII: dict[str, list[Call]] = {
    "GetCustomer": [_get(None, "a_team"), _get("agent", "a_team"), _get("partner-agent", "b_partner"),
                    _get("auditor", "b")],
    "LookupCustomer": [_lookup(None, "b", "phone"), _lookup("supervisor", "a_other", "phone")],
    "RevealCustomerField": [_reveal("supervisor", "a_other", "phone")],
    "UpdateCustomer": [_update("a_other"), _update("b")],
    "CreateCustomer": [_create],
    "ExportCustomer": [_export],
    "GetCustomerCard": [_card(None, "a_team"), _card("agent", "a_team"), _card("supervisor", "a_other")],
}


def _plain(method: str, path: str, *, json_body: Any = None, node: str = "hq", auth: str = "admin") -> Call:
    def call(d: AccessDeployment) -> tuple[str, Callable[[], httpx.Response]]:
        headers = ADMIN if auth == "admin" else d.sign_in(auth)
        url = path.format(customer=d.customers["a_team"].row_id, user=d.user_id("agent"))
        return node, lambda: d.clients[node].request(method, url, json=json_body, headers=headers)
    return call


#: operations that never return personal information, each with a call that
#: runs (or is refused, for those that would change the shared deployment)
NO_PII: dict[str, Call] = {
    "AuditActor": _plain("GET", "/audit/actors/operator"),
    "AuditAlerts": _plain("GET", "/audit/alerts"),
    "AuditCustomer": _plain("GET", "/audit/customers/{customer}"),
    "AuditVerify": _plain("GET", "/audit/verify"),
    "GetMe": _plain("GET", "/auth/me", auth="agent", node="branch-a"),
    "RefreshTokens": _plain("POST", "/auth/refresh", json_body={"refresh_token": "not-a-token"}),
    "SignIn": _plain("POST", "/auth/sign-in", json_body={"username": "agent", "password": "wrong"}, node="branch-a"),
    "SignOut": _plain("POST", "/auth/sign-out", auth="agent", node="branch-a"),
    "EraseCustomer": _plain("POST", "/customers/{customer}/erase", json_body={"requested_by": "data_subject"}),
    "RotateCustomerKeys": _plain("POST", "/customers/{customer}/rotate-keys", node="branch-b"),
    "EnrollDevice": _plain("POST", "/devices/enroll", json_body={"label": "x"}, auth="agent", node="branch-a"),
    "DeviceSignIn": _plain("POST", "/devices/sign-in",
                           json_body={"device_id": "01JD0QK2M6X3Z1V9A8B7C6D5T1", "device_secret": "x"}),
    "GetPhoneKeys": _plain("POST", "/devices/keys", json_body={"node": "branch-a.x"}, node="branch-a"),
    "RegisterPhone": _plain("POST", "/devices/register", json_body={"bogus": 1}),
    "GetHealth": _plain("GET", "/health"),
    "RecordConsent": _plain("POST", "/customers/{customer}/consents",
                            # a_team is on refused_marketing already: this changes nothing else tests see
                            json_body={"purpose": "marketing", "granted": False, "channel": "phone", "at_ms": 1}),
    "GetConsents": _plain("GET", "/customers/{customer}/consents"),
    "RotateOwnKeys": _plain("POST", "/keys/rotate-node", json_body={"bogus": 1}),
    "RotateScopeKey": _plain("POST", "/keys/rotate-scope", json_body={"bogus": 1}),
    "EnrollNode": _plain("POST", "/nodes/enroll", json_body={"bogus": 1}),
    "RotateNodeKeys": _plain("POST", "/nodes/rotate", json_body={"bogus": 1}),
    "GetOffboarding": _plain("GET", "/partners/partner-x/offboard"),
    "OffboardPartner": _plain("POST", "/partners/branch-a/offboard"),
    "RetirePartner": _plain("POST", "/partners/branch-a/retire"),
    "GetKpiReport": _plain("GET", "/reports/kpi?by=agent&from=2026-01-01&to=2026-12-31"),
    "GetPolicy": _plain("GET", "/policy"),
    "ReloadPolicy": _plain("POST", "/policy/reload", node="branch-b"),
    "ListPurgeReceipts": _plain("GET", "/purge-receipts"),
    "RunRetention": _plain("POST", "/retention/run", node="branch-a"),
    "GetStatus": _plain("GET", "/status"),
    "GetDigest": _plain("GET", "/status/digest"),
    "SyncAudit": _plain("POST", "/sync/audit", json_body={"node": "x"}),
    "SyncNow": _plain("POST", "/sync/now", node="hq"),
    "SyncPull": _plain("POST", "/sync/pull", json_body={"node": "x"}),
    "SyncPush": _plain("POST", "/sync/push", json_body={"node": "x"}),
    "ListUsers": _plain("GET", "/users"),
    "CreateUser": _plain("POST", "/users", json_body={"bogus": 1}),
    "GetUser": _plain("GET", "/users/{user}"),
    "DisableUser": _plain("POST", "/users/unknown-user/disable"),
    "EnableUser": _plain("POST", "/users/unknown-user/enable"),
    "RevokeUserTokens": _plain("POST", "/users/unknown-user/revoke-tokens"),
    # the work API: tasks, results and tickets carry ids and codes, never personal values
    "GetInbox": _plain("GET", "/work/inbox", auth="agent", node="branch-a"),
    "GetTeamWork": _plain("GET", "/work/team", auth="supervisor", node="branch-a"),
    "CreateTask": _plain("POST", "/tasks", json_body={"bogus": 1}, node="branch-a"),
    "ChangeTask": _plain("PATCH", "/tasks/01JD0QK2M6X3Z1V9A8B7C6D5Q9", json_body={"priority": 1}, node="branch-a"),
    "RecordResult": _plain("POST", "/tasks/01JD0QK2M6X3Z1V9A8B7C6D5Q9/results", json_body={}, node="branch-a"),
    "PlaceCall": _plain("POST", "/tasks/01JD0QK2M6X3Z1V9A8B7C6D5Q9/call", node="branch-a"),
    "OpenComplaint": _plain("POST", "/complaints", json_body={"bogus": 1}, node="branch-a"),
    "HandOverComplaint": _plain("POST", "/complaints/01JD0QK2M6X3Z1V9A8B7C6D5Q9/hand-over",
                                json_body={"to": "x"}, node="branch-a"),
    "ArchiveComplaint": _plain("POST", "/complaints/01JD0QK2M6X3Z1V9A8B7C6D5Q9/archive", node="branch-a"),
    "ScheduleCallback": _plain("POST", "/customers/{customer}/callbacks", json_body={"at_ms": 1}, node="branch-a"),
    # a_team is on refused_marketing already: this changes nothing else tests see
    "RefuseMarketing": _plain("POST", "/customers/{customer}/refuse-marketing", json_body={"channel": "phone"}),
}


def spec_operations() -> set[str]:
    spec = json.loads(SPEC.read_text())
    return {op["operationId"] for ops in spec["paths"].values() for op in ops.values()}


def returned_fields(d: AccessDeployment, text: str) -> tuple[set[str], set[str]]:
    """The PII fields of any test customer found in ``text``: in full, and masked."""
    full, masked = set(), set()
    for customer in d.customers.values():
        for field in PII:
            value = customer.body.get(field)
            if not isinstance(value, str):
                continue
            if value in text:
                full.add(field)
            mask = mask_field("customers", field, value)
            if mask not in ("***", value) and mask in text:
                masked.add(field)
    return full, masked


def test_every_operation_of_the_api_is_classified() -> None:
    assert spec_operations() == set(RETURNS_PII) | set(NO_PII)
    assert not set(RETURNS_PII) & set(NO_PII)


CALLS = [(op, i) for op, calls in RETURNS_PII.items() for i in range(len(calls))]


@pytest.mark.parametrize(("operation", "index"), CALLS, ids=[f"{op}-{i}" for op, i in CALLS])
def test_a_call_returning_pii_leaves_exactly_one_entry_naming_what_it_returned(
        deployment: AccessDeployment, operation: str, index: int) -> None:
    d = deployment
    node, send = RETURNS_PII[operation][index](d)
    before = {node: d.last_event_id(node) for node in d.clients}
    response = send()
    assert response.status_code in (200, 201), response.text
    full, masked = returned_fields(d, response.text)
    assert full | masked, f"{operation} returned no personal information: classify it as NO_PII"
    for other in d.clients:
        if other != node:
            assert d.events(other, after_id=before[other]) == [], f"an entry at {other}"
    (entry,) = d.events(node, after_id=before[node])
    named = set(entry.shown) | set(entry.masked) | set(entry.fields)
    assert full | masked <= named, (operation, full, masked, entry)
    assert full <= set(entry.shown) | (set(entry.fields) if entry.action == "reveal" else set())


@pytest.mark.parametrize("operation", sorted(NO_PII))
def test_the_other_operations_return_no_personal_information(deployment: AccessDeployment, operation: str) -> None:
    d = deployment
    _, send = NO_PII[operation](d)
    response = send()
    assert response.status_code < 500, response.text
    assert returned_fields(d, response.text) == (set(), set()), operation
