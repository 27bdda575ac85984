"""What sync sends a node and accepts from it, derived from the policy, for the
real site configs in sites/ (hq, branch-a, partner-x) and a mobile device."""

from __future__ import annotations

import pytest

from server.config import NodeEntry, SiteConfig, load_site
from server.policy import GOVERNED, INDEX_CLASS, NodeScope, NodeScopeError, Policy, SITE_KINDS, parse_policy
from sync.schema import COLLECTIONS, PARENTS

from .conftest import RAW, SITES

HQ = load_site(SITES / "hq.toml")
REGISTRY = {entry.node_id: entry for entry in HQ.nodes}
CAMPAIGN = "01JD0QK2M6X3Z1V9A8B7C6D5E4"
OTHER_CAMPAIGN = "01JD0QK2M6X3Z1V9A8B7C6D5E5"


def site(name: str) -> SiteConfig:
    return load_site(SITES / f"{name}.toml")


# ---------------------------------------------------------------- derivation, from the file


@pytest.mark.parametrize("kind", SITE_KINDS)
def test_fields_keys_and_writes_are_the_union_over_the_roles_at_that_kind_of_site(policy: Policy, kind: str) -> None:
    """Recomputed from the raw TOML: every field some role there sees (masked
    included), plus the tombstone and the in-row data keys of the classes it
    reads; the union of their writes; the classes of the PII fields, and
    `index` if a blind index is among the fields."""
    scope = policy.node_scope(NodeEntry(node_id=f"{kind}-1", role=kind, user="u1"))  # type: ignore[arg-type]
    roles = [spec for spec in RAW["roles"].values() if kind in spec.get("sites", [])]
    classes: set[str] = set()
    for collection in GOVERNED:
        seen = {f for spec in roles for level in ("masked", "read", "write") for f in spec.get(collection, {}).get(level, [])}
        written = {f for spec in roles for f in spec.get(collection, {}).get("write", [])}
        seen_classes = {COLLECTIONS[collection].fields[f].pii for f in seen} - {None}
        home = collection == "customers" and RAW["node_rows"].get(kind) != "campaigns"  # partners are no home group
        keys = {f"{cls}_key" for cls in seen_classes} if home else set()
        assert keys <= set(COLLECTIONS[collection].fields)
        assert scope.fields[collection] == (seen | {"deleted"} | keys if seen else set())
        if home:  # a home node re-seals the sealed fields it holds, and indexes what it re-seals
            written |= {f for f in seen if COLLECTIONS[collection].fields[f].pii is not None}
            written |= {f"{f}_index" for f in written if f"{f}_index" in COLLECTIONS[collection].fields}
        written_classes = {COLLECTIONS[collection].fields[f].pii for f in written} - {None}
        assert scope.writable[collection] == written | {f"{cls}_key" for cls in written_classes if home}
        classes |= seen_classes  # type: ignore[arg-type]
        if collection == "customers" and seen & {"phone_index", "id_number_index"}:
            classes.add(INDEX_CLASS)
    assert scope.key_classes == classes
    assert scope.rows == RAW["node_rows"].get(kind)


# ---------------------------------------------------------------- hq


def test_hq_holds_everything(policy: Policy) -> None:
    scope = policy.node_scope(HQ)
    assert scope.rows == "all" and scope.kind == "hq"
    for collection in GOVERNED:
        assert scope.fields[collection] == set(COLLECTIONS[collection].fields)
        assert scope.writable[collection] == set(COLLECTIONS[collection].fields)
        if collection in PARENTS:  # in scope when its customer is: no rule of its own to ask
            with pytest.raises(TypeError):
                scope.admits(collection, {})
        else:
            assert scope.admits(collection, {})
    assert scope.key_classes == {"contact", "identity", "address", "profile", "index"}
    assert scope.peer_scope().groups is None


# ---------------------------------------------------------------- branch-a


@pytest.fixture(scope="module")
def branch(policy: Policy) -> NodeScope:
    return policy.node_scope(site("branch-a"))


def test_branch_scope_is_the_same_from_its_config_and_from_hqs_registry(policy: Policy, branch: NodeScope) -> None:
    assert policy.node_scope(REGISTRY["branch-a"]) == branch


def test_branch_holds_its_home_customers_and_the_tasks_and_results_of_its_site(branch: NodeScope) -> None:
    assert branch.rows == "home" and branch.roles == {"supervisor", "agent", "account_manager"}
    assert branch.admits("customers", {"home_branch": "branch-a"})
    assert not branch.admits("customers", {"home_branch": "branch-b"})
    assert not branch.admits("customers", {"home_branch": None, "partners": ["branch-a"]})
    assert branch.admits("tasks", {"site": "branch-a"}) and not branch.admits("tasks", {"site": "hq"})
    assert branch.admits("results", {"site": "branch-a"}) and not branch.admits("results", {"site": "partner-x"})
    assert branch.reads == {"customers": ("home_branch",), "tasks": ("site",), "results": ("site",),
                            "consents": ()}  # a consent is decided by its customer


def test_branch_fields_keys_and_writes(branch: NodeScope) -> None:
    assert branch.fields["customers"] == set(COLLECTIONS["customers"].fields) - {"id_number_index"}
    assert branch.key_classes == {"contact", "identity", "address", "profile", "index"}
    writable = branch.writable["customers"]
    assert {"star_level", "assigned_agent", "phone", "phone_index", "tags", "suppression"} <= writable
    # the branch's users never write an ID number, but the branch re-seals the one it holds
    assert {"id_number", "birthday", "identity_key"} <= writable
    assert not writable & {"home_branch", "partners", "segment", "arpu_fen", "status", "deleted"}
    assert "campaign_id" not in branch.writable["tasks"] and "deleted" not in branch.writable["results"]


def test_branch_may_not_write_outside_its_rows_or_its_fields(branch: NodeScope) -> None:
    mine, theirs = {"home_branch": "branch-a"}, {"home_branch": "branch-b"}
    assert branch.may_write("customers", mine, "star_level")
    assert not branch.may_write("customers", theirs, "star_level")
    assert not branch.may_write("customers", mine, "home_branch")


# ---------------------------------------------------------------- partner-x


@pytest.fixture(scope="module")
def partner(policy: Policy) -> NodeScope:
    return policy.node_scope(site("partner-x"), campaigns=[CAMPAIGN])


def test_partner_holds_the_customers_and_tasks_of_its_campaigns(partner: NodeScope) -> None:
    assert partner.rows == "campaigns" and partner.roles == {"partner_agent", "partner_supervisor"}
    assert partner.admits("customers", {"partners": ["partner-x", "partner-y"], "home_branch": "branch-a"})
    assert partner.admits("customers", {"partners": frozenset({"partner-x"})})
    assert not partner.admits("customers", {"partners": ["partner-y"], "home_branch": "partner-x"})
    assert not partner.admits("customers", {"partners": []}) and not partner.admits("customers", {})
    assert not partner.admits("customers", {"partners": "partner-x"})  # a set, not a string
    assert partner.admits("tasks", {"campaign_id": CAMPAIGN, "site": "hq"})
    assert not partner.admits("tasks", {"campaign_id": OTHER_CAMPAIGN, "site": "partner-x"})
    assert not partner.admits("tasks", {"campaign_id": None})
    assert partner.admits("results", {"site": "partner-x"}) and not partner.admits("results", {"site": "hq"})


def test_partner_campaigns_come_from_its_config_unless_given(policy: Policy) -> None:
    assert policy.node_scope(site("partner-x")).campaigns == frozenset(site("partner-x").campaigns)
    assert policy.node_scope(REGISTRY["partner-x"]).campaigns == frozenset(REGISTRY["partner-x"].campaigns)
    entry = NodeEntry(node_id="partner-x", role="partner", campaigns=[CAMPAIGN])
    assert policy.node_scope(entry).admits("tasks", {"campaign_id": CAMPAIGN})


def test_partner_gets_name_and_phone_and_never_identity_address_or_lookups(partner: NodeScope) -> None:
    assert partner.fields["customers"] == {"name", "phone", "star_level", "status", "suppression", "partners", "tz", "deleted"}
    absent = {"id_number", "address", "birthday", "employer", "second_contact", "email", "notes", "home_branch",
              "phone_index", "id_number_index", "assigned_agent", "account_manager", "arpu_fen"}
    assert not partner.fields["customers"] & absent
    assert partner.key_classes == {"contact", "profile"}  # profile: the notes of the results it records
    assert partner.peer_scope().classes == {"contact", "profile"} and partner.peer_scope().groups == {"partner-x"}


def test_partner_changes_no_customer_and_records_results_of_its_own(partner: NodeScope) -> None:
    in_scope = {"partners": ["partner-x"], "star_level": 3}
    assert partner.writable["customers"] == frozenset()
    assert not partner.may_write("customers", in_scope, "star_level")
    assert partner.may_write("results", {"site": "partner-x"}, "outcome")
    assert not partner.may_write("results", {"site": "branch-a"}, "outcome")
    assert partner.may_write("tasks", {"campaign_id": CAMPAIGN}, "status")
    assert not partner.may_write("tasks", {"campaign_id": CAMPAIGN}, "campaign_id")


def test_project_leaves_out_what_the_node_may_not_hold(partner: NodeScope) -> None:
    row = {"name": b"sealed", "id_number": b"sealed", "partners": ["partner-x"], "home_branch": "branch-a"}
    assert partner.project("customers", row) == {"name": b"sealed", "partners": ["partner-x"]}
    assert partner.project("campaigns", {"name": "x"}) == {}


def test_the_registry_grants_the_pii_classes_the_policy_derives(policy: Policy) -> None:
    """HQ's key authority still grants keys from the registry (`classes`,
    `lookups`); until it takes them from `node_scope`, the two must agree."""
    for entry in HQ.nodes:
        assert set(entry.classes) == policy.node_scope(entry).key_classes - {INDEX_CLASS}, entry.node_id


def test_the_index_key_follows_the_policy_everywhere_but_partner_x_until_key_grants_use_it(policy: Policy) -> None:
    """The registry's `lookups` defaults to true, so partner-x still receives the
    blind-index key (tests/system/test_pii_sealed.py expects it) although no role
    there may look up, and crypto/blind_index.py says the key must stay with nodes
    that see numbers in full. The wiring of node scope into key grants removes
    this difference, and then this test's set becomes empty."""
    differ = {e.node_id for e in HQ.nodes if e.lookups != (INDEX_CLASS in policy.node_scope(e).key_classes)}
    assert differ == {"partner-x"}


# ---------------------------------------------------------------- mobile


def test_a_phone_holds_its_users_rows(policy: Policy) -> None:
    scope = policy.node_scope(NodeEntry(node_id="branch-a.m1", role="mobile", parent="branch-a", user="am1"))
    assert scope.rows == "assigned" and scope.roles == {"account_manager"}
    assert scope.admits("customers", {"account_manager": "am1", "home_branch": "branch-a"})
    assert scope.admits("customers", {"assigned_agent": "am1"})
    assert not scope.admits("customers", {"account_manager": "am2", "home_branch": "branch-a"})
    assert not scope.admits("customers", {})
    assert scope.admits("tasks", {"assignee": "am1"}) and not scope.admits("tasks", {"assignee": None})
    assert scope.admits("results", {"agent": "am1"}) and not scope.admits("results", {"agent": "a2"})
    assert scope.key_classes == {"contact", "identity", "address", "profile", "index"}
    assert "id_number_index" not in scope.fields["customers"] and "partners" not in scope.fields["customers"]


def test_a_phone_without_a_user_has_no_scope(policy: Policy) -> None:
    with pytest.raises(NodeScopeError, match="branch-a.m1"):
        policy.node_scope(NodeEntry(node_id="branch-a.m1", role="mobile", parent="branch-a"))


# ---------------------------------------------------------------- deny by default


def test_collections_the_policy_does_not_govern_are_not_admitted(policy: Policy) -> None:
    scope = policy.node_scope(HQ)
    for collection in set(COLLECTIONS) - set(GOVERNED):
        assert not scope.admits(collection, {}) and collection not in scope.fields


def test_a_site_kind_without_node_rows_holds_nothing() -> None:
    policy = parse_policy('version = 1\n[node_rows]\nhq = "all"\n')
    scope = policy.node_scope(NodeEntry(node_id="branch-a", role="branch"))
    assert scope.rows is None and not scope.admits("customers", {"home_branch": "branch-a"})
    assert scope.fields == {c: frozenset() for c in GOVERNED} and scope.key_classes == frozenset()


def test_blind_indexes_and_the_index_class_are_the_keyrings() -> None:
    from server import keyring
    from server.policy import BLIND_INDEXES

    assert BLIND_INDEXES == {index: field for field, (index, _) in keyring.INDEXED.items()}
    assert INDEX_CLASS == keyring.INDEX_CLASS
