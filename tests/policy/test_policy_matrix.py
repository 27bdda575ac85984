"""Every role x every field of every collection, generated from sites/policy.toml.

The expected level of each cell is read straight from the TOML (deny by default:
a field a role does not list is ``none``), independently of server.policy, so a
role or field added to the file or the schema is covered without new test code.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.policy import ACCESS_LEVELS, GOVERNED, ROLES, Policy
from sync.schema import COLLECTIONS, ROW_KEY_FIELDS

from .conftest import RAW

ALL_ROLES = sorted(set(ROLES) | set(RAW["roles"]))


def expected_level(role: str, collection: str, field: str) -> str:
    grants: dict[str, Any] = RAW["roles"].get(role, {}).get(collection, {})
    levels = [level for level in ACCESS_LEVELS if field in grants.get(level, [])]
    assert len(levels) <= 1, f"{role}.{collection}.{field} listed under {levels}"
    return levels[0] if levels else "none"


CELLS = [(r, c, f) for r in ALL_ROLES for c in COLLECTIONS for f in COLLECTIONS[c].fields]


@pytest.mark.parametrize(("role", "collection", "field"), CELLS, ids=[f"{r}-{c}.{f}" for r, c, f in CELLS])
def test_access_is_what_the_file_says(policy: Policy, role: str, collection: str, field: str) -> None:
    want = expected_level(role, collection, field) if collection in GOVERNED else "none"
    assert policy.access(role, collection, field) == want
    assert (field in policy.visible_fields(role, collection)) == (want != "none")
    assert (field in policy.masked_fields(role, collection)) == (want == "masked")
    assert (field in policy.writable_fields(role, collection)) == (want == "write")
    revealable = field in RAW["roles"].get(role, {}).get(collection, {}).get("reveal", [])
    assert policy.may_reveal(role, collection, field) == revealable


@pytest.mark.parametrize("role", ALL_ROLES)
def test_site_kinds_and_row_scope_are_what_the_file_says(policy: Policy, role: str) -> None:
    spec = RAW["roles"].get(role, {})
    assert policy.site_kinds(role) == frozenset(spec.get("sites", []))
    assert policy.row_scope(role) == spec.get("rows")


def test_a_role_or_field_nobody_listed_gets_nothing(policy: Policy) -> None:
    assert policy.access("janitor", "customers", "name") == "none"
    assert policy.access("hq_admin", "customers", "no_such_field") == "none"
    assert policy.access("hq_admin", "no_such_collection", "name") == "none"
    assert policy.visible_fields("janitor", "customers") == frozenset()
    assert policy.site_kinds("janitor") == frozenset() and policy.row_scope("janitor") is None


# ---------------------------------------------------------------- the choices the file makes

PII = {c: {f.name: f.pii for f in spec.pii_fields} for c, spec in COLLECTIONS.items() if c in GOVERNED}


def test_every_role_of_the_schema_is_granted_somewhere(policy: Policy) -> None:
    assert set(policy.roles) == set(ROLES)
    assert all(policy.site_kinds(r) for r in ROLES)


def test_hq_admin_writes_every_field(policy: Policy) -> None:
    """Every field but the wrapped data keys in customer rows: key material no role
    reads or writes; nodes carry it with the classes they hold (`node_scope`)."""
    for collection in GOVERNED:
        assert policy.writable_fields("hq_admin", collection) == set(COLLECTIONS[collection].fields) - set(ROW_KEY_FIELDS)


@pytest.mark.parametrize("role", ["partner_agent", "partner_supervisor"])
def test_partners_see_name_and_phone_masked_and_nothing_else_personal(policy: Policy, role: str) -> None:
    assert policy.masked_fields(role, "customers") == {"name", "phone"}
    for field in ("id_number", "address", "birthday", "employer", "second_contact", "email", "notes"):
        assert policy.access(role, "customers", field) == "none"
    assert not any(policy.may_reveal(role, "customers", f) for f in COLLECTIONS["customers"].fields)
    assert not policy.may_look_up(role, "phone") and not policy.may_look_up(role, "id_number")
    assert policy.writable_fields(role, "customers") == frozenset()
    assert policy.site_kinds(role) == {"partner"} and policy.row_scope(role) == "campaigns"


def test_agents_see_phone_masked_and_may_reveal_it(policy: Policy) -> None:
    assert policy.access("agent", "customers", "phone") == "masked"
    assert policy.may_reveal("agent", "customers", "phone")
    assert policy.may_look_up("agent", "phone")
    assert not policy.may_reveal("agent", "customers", "id_number")


def test_auditor_reads_metadata_and_pii_only_masked(policy: Policy) -> None:
    for collection in GOVERNED:
        for field in PII[collection]:
            assert policy.access("auditor", collection, field) in ("none", "masked")
            assert not policy.may_reveal("auditor", collection, field)
        assert policy.writable_fields("auditor", collection) == frozenset()
        non_pii = set(COLLECTIONS[collection].fields) - set(PII[collection]) - {"phone_index", "id_number_index"} - set(ROW_KEY_FIELDS)
        assert all(policy.access("auditor", collection, f) == "read" for f in non_pii)


def test_star_level_is_written_only_by_hq_admin_and_supervisors(policy: Policy) -> None:
    writers = {r for r in policy.roles if "star_level" in policy.writable_fields(r, "customers")}
    assert writers == {"hq_admin", "supervisor"}


def test_account_managers_write_their_customers_contact_and_profile_fields(policy: Policy) -> None:
    contact_and_profile = {f for f, cls in PII["customers"].items() if cls in ("contact", "profile")}
    assert contact_and_profile <= policy.writable_fields("account_manager", "customers")
    assert policy.row_scope("account_manager") == "assigned"
    assert policy.access("account_manager", "customers", "id_number") == "masked"


def test_only_roles_that_see_a_number_in_full_may_look_up_by_it(policy: Policy) -> None:
    for role in policy.roles:
        for field in ("phone", "id_number"):
            if policy.may_look_up(role, field):
                grant = policy.grant(role)
                assert grant is not None and grant.sees_in_full("customers", field), (role, field)


def test_every_role_sees_the_tombstone_of_what_it_sees(policy: Policy) -> None:
    for role in policy.roles:
        for collection in GOVERNED:
            if policy.visible_fields(role, collection):
                assert "deleted" in policy.visible_fields(role, collection), (role, collection)


def test_view_leaves_out_hidden_fields_and_masks_masked_ones(policy: Policy) -> None:
    row = {"star_level": 5, "partners": ["partner-x"], "name": "张三", "phone": "+86 138 1234 5678",
           "id_number": "11010519491231002X", "address": "北京市朝阳区建国路88号", "email": None}
    assert policy.view("partner_agent", "customers", row) == {
        "star_level": 5, "partners": ["partner-x"], "name": "张*", "phone": "138****5678"}
    assert policy.view("agent", "customers", row) == {
        "star_level": 5, "name": "张*", "phone": "138****5678", "id_number": "1****************X",
        "address": "北京市朝阳区***", "email": None}
    assert policy.view("hq_admin", "customers", row) == row
    assert policy.view("janitor", "customers", row) == {}
