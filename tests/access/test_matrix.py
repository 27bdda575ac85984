"""The authorisation matrix of the customers API, generated from sites/policy.toml.

Every role the policy grants x every customer endpoint (get, patch, lookup,
reveal, create) x a customer inside and one outside the caller's row scope x
every field: the response holds exactly what the policy says (absent, masked,
in full), writes succeed exactly for ``write`` fields, refusals are the right
problem and an access event, and a refused call changes nothing.

The expected level of each field is read from the TOML file here, without
server.policy (as tests/policy does), so a role or field added to the file or
the schema is covered without new test code. Which fixture customer is inside or
outside a user's scope is decided with `Policy.admits_row` (tested on its own in
tests/policy/test_row_admission.py); the hand-written cases at the end pin it
down for the roles of today's file.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from server.masking import mask_field
from server.policy import Policy
from server.views import WRITE_TARGETS, CustomerView, CustomerWrite
from tests.access.conftest import (
    ADMIN,
    NODES,
    STRANGER,
    AccessDeployment,
    Customer,
    new_id,
    person,
    role_username,
)
from tests.conftest import POLICY_FILE

RAW: dict[str, Any] = tomllib.loads(POLICY_FILE.read_text())
LEVELS = ("none", "masked", "read", "write")
VIEW_FIELDS = [f for f in CustomerView.__struct_fields__ if f not in ("row_id", "unavailable")]
#: the members of a customer write body that write a customer field (`id_number_consent` records a
#: consent, which writing an ID number needs: tests/consent)
MEMBERS = [m for m in CustomerWrite.__struct_fields__ if m in WRITE_TARGETS]
#: the consent an ID number needs, given with the write (PIPL Art. 29)
ID_CONSENT = {"id_number_consent": {"channel": "in_person"}}
MASKABLE = ["name", "phone", "second_contact", "email", "id_number", "birthday", "address"]


def level(role: str, field: str) -> str:
    grants: dict[str, list[str]] = RAW["roles"].get(role, {}).get("customers", {})
    found = [lv for lv in LEVELS if field in grants.get(lv, [])]
    assert len(found) <= 1
    return found[0] if found else "none"


def revealable(role: str, field: str) -> bool:
    return field in RAW["roles"].get(role, {}).get("customers", {}).get("reveal", [])


def looks_up(role: str, field: str) -> bool:
    return level(role, f"{field}_index") in ("read", "write")


def _placed(role: str) -> bool:
    kinds = RAW["roles"][role].get("sites", [])
    return any(k in kinds for k in NODES.values())


ROLES = [r for r in RAW["roles"] if _placed(r)]


def expected_view(role: str, full: dict[str, Any]) -> dict[str, Any]:
    """What ``role`` should get of a customer the operator reads as ``full``."""
    out: dict[str, Any] = {"row_id": full["row_id"], "unavailable": []}
    for field in VIEW_FIELDS:
        lv = level(role, field)
        if lv == "masked":
            out[field] = None if full[field] is None else mask_field("customers", field, full[field])
        elif lv in ("read", "write"):
            out[field] = full[field]
    return out


class Caller:
    """A role's user, signed in at their node."""

    def __init__(self, d: AccessDeployment, policy: Policy, role: str) -> None:
        self.d = d
        self.role = role
        self.username = role_username(role)
        self.node = d.site_of(self.username)
        self.client = d.clients[self.node]
        self.headers = d.sign_in(self.username)
        self.user_id = d.user_id(self.username)
        principal = d.principal(self.username, policy)
        self.inside = [c for c in d.customers.values() if c.key in FIXED and policy.admits_row(principal, "customers", c.full)]
        self.outside = [c for c in d.customers.values() if c.key in FIXED and c not in self.inside]

    def customer(self, where: str) -> Customer | None:
        chosen = self.inside if where == "inside" else self.outside
        return chosen[0] if chosen else None


#: the fixture's customers (tests add more; those are not chosen as inside or outside)
FIXED = ("a_team", "a_other", "b", "b_partner")
_callers: dict[str, Caller] = {}


@pytest.fixture
def caller(deployment: AccessDeployment, policy: Policy, request: pytest.FixtureRequest) -> Caller:
    role = request.param
    if role not in _callers or _callers[role].d is not deployment:
        _callers[role] = Caller(deployment, policy, role)
    return _callers[role]


def missing_body(d: AccessDeployment, c: Caller, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """The 404 body for a customer id that exists nowhere, with ``{id}`` in ``path``."""
    ghost = new_id()
    response = c.client.request(method, path.format(id=ghost), headers=c.headers, **kwargs)
    assert response.status_code == 404, response.text
    return {k: (v.replace(ghost, "<id>") if isinstance(v, str) else v) for k, v in response.json().items()}


def assert_like_missing(d: AccessDeployment, c: Caller, customer: Customer, method: str, path: str,
                        **kwargs: Any) -> None:
    """The call on ``customer`` (outside the caller's scope) is refused exactly as
    one on a customer that does not exist, changes nothing, and is recorded."""
    before, last = d.high_seq(c.node), d.last_event_id(c.node)
    response = c.client.request(method, path.format(id=customer.row_id), headers=c.headers, **kwargs)
    assert response.status_code == 404, response.text
    body = {k: (v.replace(customer.row_id, "<id>") if isinstance(v, str) else v) for k, v in response.json().items()}
    assert body == missing_body(d, c, method, path, **kwargs)
    assert d.high_seq(c.node) == before
    (event, _) = d.events(c.node, after_id=last, row_id=customer.row_id)[:1] + [None]
    # held here but outside the user's rows, or not even replicated to this node
    reason = "out_of_scope" if d.holds(c.node, customer.row_id) else "not_found"
    assert event is not None and (event.actor, event.outcome, event.status, event.reason) == (
        c.user_id, "refused", 404, reason)


def assert_refused(d: AccessDeployment, c: Caller, response: Any, status: int, code: str, *, before_seq: int,
                   last_event: int, fields: list[str] | None = None) -> dict[str, Any]:
    """A refusal: a problem body with ``code``, nothing written, an access event."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == status and body["detail"]
    if fields is not None:
        assert body["fields"] == fields
    assert d.high_seq(c.node) == before_seq, "a refused call wrote something"
    events = [e for e in d.events(c.node, after_id=last_event) if e.outcome == "refused"]
    assert len(events) == 1 and events[0].actor == c.user_id and events[0].status == status, events
    if fields is not None:
        assert list(events[0].fields) == fields
    return body


# ---------------------------------------------------------------- sanity of the set-up


@pytest.mark.parametrize("caller", ROLES, indirect=True)
def test_every_role_has_a_customer_inside_and_sees_it_opened(caller: Caller) -> None:
    assert caller.inside, f"no fixture customer is inside {caller.role}'s scope"
    assert NODES[caller.node] == home_kind_of(caller.role)
    for customer in caller.inside:
        assert customer.full["unavailable"] == []


def home_kind_of(role: str) -> str:
    kinds = RAW["roles"][role]["sites"]
    return next(k for k in ("partner", "branch", "hq") if k in kinds)


# ---------------------------------------------------------------- get


@pytest.mark.parametrize("caller", ROLES, indirect=True)
def test_get_inside_holds_exactly_what_the_policy_says(deployment: AccessDeployment, caller: Caller) -> None:
    for customer in caller.inside:
        response = caller.client.get(f"/customers/{customer.row_id}", headers=caller.headers)
        assert response.status_code == 200, response.text
        got = response.json()
        want = expected_view(caller.role, customer.full)
        assert sorted(got) == sorted(want), f"{caller.role}: fields present differ"
        for field in want:
            assert got[field] == want[field], f"{caller.role}: {field} is {level(caller.role, field)}"


@pytest.mark.parametrize("caller", ROLES, indirect=True)
def test_get_outside_is_a_404_like_a_missing_customer(deployment: AccessDeployment, caller: Caller) -> None:
    if not caller.outside:  # a role that sees every row: it sees every fixture customer
        assert RAW["roles"][caller.role]["rows"] == "all"
        for key in FIXED:
            row_id = deployment.customers[key].row_id
            assert caller.client.get(f"/customers/{row_id}", headers=caller.headers).status_code == 200
        return
    for customer in caller.outside:
        assert_like_missing(deployment, caller, customer, "GET", "/customers/{id}")


# ---------------------------------------------------------------- patch


_NEW_MEMBER = {"tags": "matrix-new", "suppression": "do_not_call", "partners": "partner-z"}
_ABSENT_MEMBER = {"tags": "matrix-absent", "suppression": "blacklist", "partners": "partner-z"}


def changed_value(field: str, current: Any) -> Any:
    """A valid value for ``field`` other than ``current``."""
    values: dict[str, Any] = {
        "home_branch": lambda: "branch-b" if current != "branch-b" else "branch-a",
        "star_level": lambda: (current + 1) % 8, "segment": lambda: "platinum", "arpu_fen": lambda: current + 1,
        "status": lambda: "suspended" if current != "suspended" else "active",
        "assigned_agent": lambda: STRANGER if current != STRANGER else new_id(), "account_manager": new_id,
        "sales_rep": lambda: "rep-changed",
        "tz": lambda: "Asia/Urumqi" if current != "Asia/Urumqi" else "Asia/Shanghai",
        "star_seen": lambda: ((current or 0) + 1) % 8, "promoted_at_ms": lambda: (current or 0) + 1,
    }
    return values[field]() if field in values else person(77)[field]


def patch_body(member: str, customer: Customer, *, change: bool) -> dict[str, Any]:
    """One member of a write body: one that changes the customer (``change``), or
    one that writes what is there already."""
    field = WRITE_TARGETS[member]
    current = customer.full[field]
    if member.endswith("_add"):
        return {member: [_NEW_MEMBER[field]] if change else current[:1]}
    if member.endswith("_remove"):
        assert current, f"fixture customer {customer.key} needs a member in {field}"
        return {member: current[:1] if change else [_ABSENT_MEMBER[field]]}
    if member == "deleted":
        return {member: True}
    return {member: changed_value(field, current) if change else current}


PATCH_CELLS = [(r, m) for r in ROLES for m in MEMBERS]


@pytest.mark.parametrize(("caller", "member"), PATCH_CELLS, indirect=["caller"],
                         ids=[f"{r}-{m}" for r, m in PATCH_CELLS])
def test_patch_is_allowed_exactly_for_write_fields(deployment: AccessDeployment, caller: Caller, member: str) -> None:
    d, field = deployment, WRITE_TARGETS[member]
    allowed = level(caller.role, field) == "write"
    customer = caller.inside[0]
    if allowed and member == "deleted":  # deleting would spoil the shared customer: delete a copy made for this
        keep = {k: customer.body[k] for k in ("home_branch", "assigned_agent", "account_manager", "partners_add")
                if k in customer.body}
        customer = d.create_customer(f"copy-{caller.role}", keep, node=caller.node)
    body = patch_body(member, customer, change=not allowed)
    operator_view = d.clients[caller.node].get(f"/customers/{customer.row_id}", headers=ADMIN).json()
    before, last = d.high_seq(caller.node), d.last_event_id(caller.node)
    response = caller.client.patch(f"/customers/{customer.row_id}", json=body, headers=caller.headers)
    if allowed:
        assert response.status_code == 200, response.text
        got = response.json()
        if member == "deleted":
            assert got.get("deleted", True) is True
        else:
            assert got == expected_view(caller.role, customer.full)
        (event,) = [e for e in d.events(caller.node, after_id=last) if e.action == "write"]
        assert (event.actor, event.row_id, event.fields) == (caller.user_id, customer.row_id, (field,))
    else:
        problem = assert_refused(d, caller, response, 403, "fields_not_writable", before_seq=before,
                                 last_event=last, fields=[field])
        assert caller.role in problem["detail"] and field in problem["detail"]
        after = d.clients[caller.node].get(f"/customers/{customer.row_id}", headers=ADMIN).json()
        assert after == operator_view, "a refused write changed the customer"


@pytest.mark.parametrize("caller", ROLES, indirect=True)
def test_patch_outside_is_a_404_like_a_missing_customer(deployment: AccessDeployment, caller: Caller) -> None:
    if not caller.outside:
        assert RAW["roles"][caller.role]["rows"] == "all"
        return
    writable = [m for m in MEMBERS if level(caller.role, WRITE_TARGETS[m]) == "write" and m != "deleted"]
    member = writable[0] if writable else "star_level"
    for customer in caller.outside:
        assert_like_missing(deployment, caller, customer, "PATCH", "/customers/{id}",
                            json=patch_body(member, customer, change=True))


# ---------------------------------------------------------------- lookup


LOOKUP_CELLS = [(r, f, w) for r in ROLES for f in ("phone", "id_number") for w in ("inside", "outside")]


@pytest.mark.parametrize(("caller", "field", "where"), LOOKUP_CELLS, indirect=["caller"],
                         ids=[f"{r}-{f}-{w}" for r, f, w in LOOKUP_CELLS])
def test_lookup_needs_the_role_and_returns_only_what_get_would(deployment: AccessDeployment, caller: Caller,
                                                               field: str, where: str) -> None:
    d = deployment
    customer = caller.customer(where) or caller.customer("inside")
    assert customer is not None
    before, last = d.high_seq(caller.node), d.last_event_id(caller.node)
    response = caller.client.post("/customers/lookup", json={"field": field, "value": customer.body[field]},
                                  headers=caller.headers)
    if not looks_up(caller.role, field):
        problem = assert_refused(d, caller, response, 403, "not_permitted", before_seq=before, last_event=last,
                                 fields=[field])
        assert customer.body[field] not in response.text
        assert problem["operation"].startswith("look up")
        return
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["indexed"] is True
    inside = customer in caller.inside
    assert result["matches"] == ([expected_view(caller.role, customer.full)] if inside else [])
    lookups = [e for e in d.events(caller.node, after_id=last) if e.action == "lookup"]
    assert len(lookups) == 1 and lookups[0].fields == (field,)
    assert lookups[0].rows == ((customer.row_id,) if inside else ())


# ---------------------------------------------------------------- reveal


REVEAL_CELLS = [(r, f, w) for r in ROLES for f in MASKABLE for w in ("inside", "outside")]


@pytest.mark.parametrize(("caller", "field", "where"), REVEAL_CELLS, indirect=["caller"],
                         ids=[f"{r}-{f}-{w}" for r, f, w in REVEAL_CELLS])
def test_reveal_is_allowed_exactly_for_revealable_fields_in_scope(deployment: AccessDeployment, caller: Caller,
                                                                 field: str, where: str) -> None:
    d = deployment
    customer = caller.customer(where)
    body = {"field": field, "purpose": "outbound_call"}
    if customer is None:  # a role that sees every row
        assert RAW["roles"][caller.role]["rows"] == "all"
        return
    if where == "outside":
        assert_like_missing(d, caller, customer, "POST", "/customers/{id}/reveal", json=body)
        return
    before, last = d.high_seq(caller.node), d.last_event_id(caller.node)
    response = caller.client.post(f"/customers/{customer.row_id}/reveal", json=body, headers=caller.headers)
    if revealable(caller.role, field):
        assert level(caller.role, field) == "masked"
        assert response.status_code == 200, response.text
        assert response.json() == {"row_id": customer.row_id, "field": field, "value": customer.full[field],
                                   "unavailable": False, "purpose": "outbound_call"}
        (event,) = [e for e in d.events(caller.node, after_id=last) if e.action == "reveal"]
        assert (event.actor, event.fields, event.purpose, event.outcome) == (
            caller.user_id, (field,), "outbound_call", "ok")
    else:
        problem = assert_refused(d, caller, response, 403, "not_permitted", before_seq=before, last_event=last,
                                 fields=[field])
        assert str(customer.full[field]) not in response.text
        assert problem["operation"] == "reveal"
        (event,) = d.events(caller.node, after_id=last)
        assert event.purpose == "outbound_call" and event.action == "reveal"


# ---------------------------------------------------------------- create


def create_body(d: AccessDeployment, caller: Caller, index: int) -> dict[str, Any]:
    """A body with every member the role may write (no removals, no deletion),
    placed in the caller's scope where the role may place it."""
    site = caller.node
    own = {
        "home_branch": site if NODES[site] == "branch" else "branch-a",
        "assigned_agent": caller.user_id, "account_manager": caller.user_id, "sales_rep": "rep-new",
        "partners_add": [site] if NODES[site] == "partner" else ["partner-x"],
        "star_level": 4, "segment": "bronze", "arpu_fen": 100, "status": "active",
        "tags_add": ["created"], "suppression_add": ["do_not_call"],
        "tz": "Asia/Shanghai", "star_seen": 4, "promoted_at_ms": 1,
    }
    values = {**person(200 + index), **own}
    body = {m: values[m] for m in MEMBERS
            if level(caller.role, WRITE_TARGETS[m]) == "write" and m != "deleted" and not m.endswith("_remove")}
    return {**body, **ID_CONSENT} if "id_number" in body else body


@pytest.mark.parametrize("caller", ROLES, indirect=True)
def test_create_names_a_field_the_role_may_not_write(deployment: AccessDeployment, caller: Caller) -> None:
    d = deployment
    refusable = [m for m in MEMBERS if level(caller.role, WRITE_TARGETS[m]) != "write"]
    if not refusable:
        assert all(level(caller.role, WRITE_TARGETS[m]) == "write" for m in MEMBERS)
        return
    member = refusable[0]
    body = patch_body(member, caller.inside[0], change=True)
    before, last = d.high_seq(caller.node), d.last_event_id(caller.node)
    response = caller.client.post("/customers", json=body, headers=caller.headers)
    if any(level(caller.role, WRITE_TARGETS[m]) == "write" for m in MEMBERS):
        assert_refused(d, caller, response, 403, "fields_not_writable", before_seq=before, last_event=last,
                       fields=[WRITE_TARGETS[member]])
    else:
        assert_refused(d, caller, response, 403, "not_permitted", before_seq=before, last_event=last)


@pytest.mark.parametrize("caller", ROLES, indirect=True)
def test_create_only_inside_the_callers_scope(deployment: AccessDeployment, caller: Caller, policy: Policy) -> None:
    d = deployment
    body = create_body(d, caller, ROLES.index(caller.role))
    writes = [m for m in MEMBERS if level(caller.role, WRITE_TARGETS[m]) == "write"]
    new_row = {
        "home_branch": body.get("home_branch", caller.node if NODES[caller.node] != "hq" else None),
        "partners": body.get("partners_add", []),
        "assigned_agent": body.get("assigned_agent"), "account_manager": body.get("account_manager"),
    }
    inside = bool(writes) and policy.admits_row(d.principal(caller.username, policy), "customers", new_row)
    before, last = d.high_seq(caller.node), d.last_event_id(caller.node)
    response = caller.client.post("/customers", json=body, headers=caller.headers)
    if not writes:
        assert_refused(d, caller, response, 403, "not_permitted", before_seq=before, last_event=last)
    elif not inside:
        assert_refused(d, caller, response, 403, "outside_scope", before_seq=before, last_event=last)
    else:
        assert response.status_code == 201, response.text
        got = response.json()
        full = d.clients[caller.node].get(f"/customers/{got['row_id']}", headers=ADMIN).json()
        assert got == expected_view(caller.role, full)
        written = [m for m in body if m in WRITE_TARGETS]
        for member in written:
            value, field = body[member], WRITE_TARGETS[member]
            assert full[field] == (sorted(value) if isinstance(value, list) else value), member
        (event,) = [e for e in d.events(caller.node, after_id=last) if e.action == "create"]
        assert event.actor == caller.user_id and set(event.fields) == {WRITE_TARGETS[m] for m in written}


# ---------------------------------------------------------------- today's file, by hand


def test_the_scopes_of_todays_roles(deployment: AccessDeployment, policy: Policy) -> None:
    """Who sees which fixture customer, written out for the roles of today's file."""
    want = {
        "hq_admin": {"a_team", "a_other", "b", "b_partner"},
        "auditor": {"a_team", "a_other", "b", "b_partner"},
        "supervisor": {"a_team", "a_other"},
        "agent": {"a_team"},  # assigned to a team mate
        "account_manager": {"a_team"},
        "partner_agent": {"a_team", "b_partner"},
        "partner_supervisor": {"a_team", "b_partner"},
    }
    for role, keys in want.items():
        c = Caller(deployment, policy, role)
        seen = {k for k in FIXED
                if c.client.get(f"/customers/{deployment.customers[k].row_id}", headers=c.headers).status_code == 200}
        assert seen == keys, role
