"""Which rows a user sees: one principal per row-scope kind, the site bound that
applies to every user, and a property tying users to their node's scope."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from server.config import NodeEntry
from server.policy import GOVERNED, Policy, Principal, parse_policy
from sync.schema import PARENTS

C1, C2 = "01JD0QK2M6X3Z1V9A8B7C6D5E4", "01JD0QK2M6X3Z1V9A8B7C6D5E5"

hq_admin = Principal(user_id="root", role="hq_admin", site="hq", site_kind="hq")
auditor = Principal(user_id="dpo", role="auditor", site="hq", site_kind="hq")
branch_supervisor = Principal(user_id="s1", role="supervisor", site="branch-a", site_kind="branch", team="t1")
hq_supervisor = Principal(user_id="s0", role="supervisor", site="hq", site_kind="hq")
agent = Principal(user_id="a1", role="agent", site="branch-a", site_kind="branch", team="t1",
                  team_members=frozenset({"a1", "a2"}))
manager = Principal(user_id="am1", role="account_manager", site="branch-a", site_kind="branch")
manager_on_phone = Principal(user_id="am1", role="account_manager", site="branch-a.m1", site_kind="mobile")
partner_agent = Principal(user_id="p1", role="partner_agent", site="partner-x", site_kind="partner",
                          campaigns=frozenset({C1}))


@pytest.mark.parametrize("who", [hq_admin, auditor, hq_supervisor], ids=lambda p: p.role)
def test_all_and_hq_site_see_every_row(policy: Policy, who: Principal) -> None:
    for collection, row in [("customers", {"home_branch": "branch-b"}), ("customers", {}),
                            ("tasks", {"site": "partner-x"}), ("results", {})]:
        assert policy.admits_row(who, collection, row)


def test_site_sees_what_the_branch_holds(policy: Policy) -> None:
    who = branch_supervisor
    assert policy.admits_row(who, "customers", {"home_branch": "branch-a", "assigned_agent": "zz"})
    assert not policy.admits_row(who, "customers", {"home_branch": "branch-b"})
    assert policy.admits_row(who, "tasks", {"site": "branch-a"}) and not policy.admits_row(who, "tasks", {"site": "hq"})
    assert policy.admits_row(who, "results", {"site": "branch-a"})
    assert not policy.admits_row(who, "results", {"site": "branch-b"})


def test_team_sees_its_members_rows_and_the_unassigned_queue(policy: Policy) -> None:
    home = {"home_branch": "branch-a"}
    assert policy.admits_row(agent, "customers", {**home, "assigned_agent": "a2"})
    assert policy.admits_row(agent, "customers", {**home, "assigned_agent": "a9", "account_manager": "a1"})
    assert policy.admits_row(agent, "customers", {**home, "assigned_agent": None})
    assert not policy.admits_row(agent, "customers", {**home, "assigned_agent": "a9"})
    assert not policy.admits_row(agent, "customers", {"home_branch": "branch-b", "assigned_agent": "a1"})
    assert policy.admits_row(agent, "tasks", {"site": "branch-a", "assignee": "a2"})
    assert policy.admits_row(agent, "tasks", {"site": "branch-a", "assignee": None})
    assert policy.admits_row(agent, "tasks", {"site": "branch-a", "assignee": "a9", "first_responder": "a1"})
    assert not policy.admits_row(agent, "tasks", {"site": "branch-a", "assignee": "a9"})
    assert policy.admits_row(agent, "results", {"site": "branch-a", "agent": "a2"})
    assert not policy.admits_row(agent, "results", {"site": "branch-a", "agent": "a9"})


def test_assigned_sees_only_its_own(policy: Policy) -> None:
    home = {"home_branch": "branch-a"}
    for who in (manager, manager_on_phone):
        assert policy.admits_row(who, "customers", {**home, "account_manager": "am1"})
        assert policy.admits_row(who, "customers", {**home, "assigned_agent": "am1"})
        assert not policy.admits_row(who, "customers", {**home, "account_manager": "am2"})
        assert not policy.admits_row(who, "customers", {**home})  # unassigned is not theirs
        assert policy.admits_row(who, "tasks", {"site": "branch-a", "assignee": "am1"})
        assert not policy.admits_row(who, "tasks", {"site": "branch-a", "assignee": None})
        assert policy.admits_row(who, "results", {"site": "branch-a", "agent": "am1"})
        assert not policy.admits_row(who, "results", {"site": "branch-a", "agent": "a1"})
    # at the branch the branch's bound applies too; on the phone, the phone's
    assert not policy.admits_row(manager, "customers", {"home_branch": "branch-b", "account_manager": "am1"})
    assert policy.admits_row(manager_on_phone, "customers", {"home_branch": "branch-b", "account_manager": "am1"})


def test_campaigns_sees_the_partners_contracted_rows(policy: Policy) -> None:
    who = partner_agent
    assert policy.admits_row(who, "customers", {"partners": ["partner-x"]})
    assert not policy.admits_row(who, "customers", {"partners": ["partner-y"], "home_branch": "partner-x"})
    assert policy.admits_row(who, "tasks", {"campaign_id": C1})
    assert not policy.admits_row(who, "tasks", {"campaign_id": C2})
    assert policy.admits_row(who, "results", {"site": "partner-x"})
    assert not policy.admits_row(who, "results", {"site": "hq"})


def test_a_role_outside_its_kind_of_site_or_unknown_sees_nothing(policy: Policy) -> None:
    misplaced = Principal(user_id="a1", role="agent", site="partner-x", site_kind="partner", campaigns=frozenset({C1}))
    unknown = Principal(user_id="x", role="janitor", site="hq", site_kind="hq")
    for who in (misplaced, unknown):
        assert not policy.admits_row(who, "customers", {"partners": ["partner-x"]})
        assert not policy.admits_row(who, "tasks", {"campaign_id": C1})
    assert not policy.admits_row(hq_admin, "users", {})


def test_may_write_needs_the_field_and_the_row(policy: Policy) -> None:
    mine = {"home_branch": "branch-a", "account_manager": "am1"}
    assert policy.may_write(manager, "customers", mine, "phone")
    assert not policy.may_write(manager, "customers", mine, "star_level")
    assert not policy.may_write(manager, "customers", {**mine, "account_manager": "am2"}, "phone")
    assert policy.may_write(branch_supervisor, "customers", {"home_branch": "branch-a"}, "star_level")
    assert not policy.may_write(partner_agent, "customers", {"partners": ["partner-x"]}, "star_level")


def test_team_and_assigned_without_a_team() -> None:
    policy = parse_policy("""
version = 1
[node_rows]
branch = "home"
[roles.agent]
sites = ["branch"]
rows = "team"
[roles.agent.customers]
read = ["home_branch", "assigned_agent", "account_manager"]
[roles.agent.tasks]
read = ["site", "assignee", "first_responder"]
[roles.agent.results]
read = ["site", "agent"]
""")
    loner = Principal(user_id="a1", role="agent", site="branch-a", site_kind="branch")
    assert policy.admits_row(loner, "customers", {"home_branch": "branch-a", "assigned_agent": "a1"})
    assert not policy.admits_row(loner, "customers", {"home_branch": "branch-a", "assigned_agent": "a2"})


# ---------------------------------------------------------------- users within their node

USERS = st.sampled_from(["a1", "a2", "am1", "p1", "zz"])
NODES = st.sampled_from(["hq", "branch-a", "branch-b", "partner-x", "branch-a.m1"])
MAYBE = lambda s: st.none() | s  # noqa: E731
ROWS = {
    "customers": st.fixed_dictionaries({
        "home_branch": MAYBE(NODES), "assigned_agent": MAYBE(USERS), "account_manager": MAYBE(USERS),
        "partners": st.lists(NODES, max_size=2)}),
    "tasks": st.fixed_dictionaries({
        "site": MAYBE(NODES), "assignee": MAYBE(USERS), "first_responder": MAYBE(USERS),
        "campaign_id": MAYBE(st.sampled_from([C1, C2]))}),
    "results": st.fixed_dictionaries({"site": MAYBE(NODES), "agent": MAYBE(USERS)}),
}
SITES_OF = {"hq": "hq", "branch-a": "branch", "branch-b": "branch", "partner-x": "partner", "branch-a.m1": "mobile"}


@st.composite
def principals(draw: Any, policy: Policy) -> Principal:
    node = draw(NODES)
    kind = SITES_OF[node]
    return Principal(
        user_id=draw(USERS), role=draw(st.sampled_from(sorted(policy.roles_at(kind)))), site=node, site_kind=kind,
        team_members=frozenset(draw(st.lists(USERS, max_size=3))), campaigns=frozenset(draw(st.lists(st.sampled_from([C1, C2])))),
    )


def test_a_user_never_sees_a_row_their_node_does_not_hold(policy: Policy) -> None:
    """Row admission for users and node scope for sync come from one policy: a
    user at a node is admitted only rows that node's scope admits."""

    @given(principals(policy), st.sampled_from([c for c in GOVERNED if c not in PARENTS]), st.data())
    def check(who: Principal, collection: str, data: Any) -> None:
        row = data.draw(ROWS[collection])
        entry = NodeEntry(node_id=who.site, role=who.site_kind, campaigns=sorted(who.campaigns),  # type: ignore[arg-type]
                          user=who.user_id if who.site_kind == "mobile" else None)
        if policy.admits_row(who, collection, row):
            assert policy.node_scope(entry).admits(collection, row)
            # and every field the user sees is present at that node
            assert policy.visible_fields(who.role, collection) <= policy.node_scope(entry).fields[collection]

    check()
