"""A bad policy file is refused whole, with a typed error naming the role, the
field, the place (msgspec-style path) and the line; the policy in force stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.policy import (
    ConflictingAccessError,
    NoMaskingRuleError,
    PolicyError,
    PolicyFormatError,
    PolicyRuleError,
    UnknownAccessLevelError,
    UnknownCollectionError,
    UnknownFieldError,
    UnknownRoleError,
    UnknownScopeError,
    load_policy,
    parse_policy,
)

from .conftest import POLICY_FILE

BASE = """\
version = 1

[node_rows]
hq = "all"
branch = "home"

[roles.agent]
sites = ["branch"]
rows = "site"

[roles.agent.customers]
read = ["home_branch", "star_level", "phone_index"]
masked = ["name", "phone"]
reveal = ["phone"]

[roles.agent.tasks]
read = ["site"]

[roles.agent.results]
read = ["site"]
"""


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_base_is_valid() -> None:
    policy = parse_policy(BASE, "base.toml")
    assert policy.access("agent", "customers", "phone") == "masked"


@pytest.mark.parametrize(("change", "error", "at", "names", "line_at"), [
    pytest.param(('[roles.agent]', '[roles.janitor]'), UnknownRoleError, "$.roles.janitor",
                 {"role": "janitor"}, "[roles.janitor]", id="unknown-role"),
    pytest.param(('read = ["home_branch", ', 'read = ["home_brunch", '), UnknownFieldError,
                 "$.roles.agent.customers.read[0]", {"role": "agent", "collection": "customers", "field": "home_brunch"},
                 "home_brunch", id="unknown-field"),
    pytest.param(('reveal = ["phone"]', 'hidden = ["phone"]'), UnknownAccessLevelError,
                 "$.roles.agent.customers.hidden", {"role": "agent", "collection": "customers"}, "hidden =",
                 id="unknown-level"),
    pytest.param(('masked = ["name", "phone"]', 'masked = ["name", "phone", "employer"]'), NoMaskingRuleError,
                 "$.roles.agent.customers.masked[2]", {"role": "agent", "collection": "customers", "field": "employer"},
                 "masked =", id="masked-without-a-rule"),
    pytest.param(('masked = ["name", "phone"]', 'masked = ["name", "phone", "star_level"]'), ConflictingAccessError,
                 "$.roles.agent.customers.masked[2]", {"field": "star_level"}, "masked =", id="listed-twice"),
    pytest.param(('[roles.agent.tasks]', '[roles.agent.campaigns]\nread = ["name"]\n\n[roles.agent.tasks]'),
                 UnknownCollectionError, "$.roles.agent.campaigns", {"collection": "campaigns"},
                 "[roles.agent.campaigns]", id="ungoverned-collection"),
    pytest.param(('rows = "site"', 'rows = "everything"'), UnknownScopeError, "$.roles.agent.rows", {"role": "agent"},
                 'rows = "everything"', id="unknown-row-scope"),
    pytest.param(('sites = ["branch"]', 'sites = ["branch", "moon"]'), UnknownScopeError, "$.roles.agent.sites[1]",
                 {"role": "agent"}, "sites =", id="unknown-site-kind"),
    pytest.param(('branch = "home"', 'branch = "region"'), UnknownScopeError, "$.node_rows.branch", {},
                 'branch = "region"', id="unknown-node-rule"),
    pytest.param(('reveal = ["phone"]', 'reveal = ["star_level"]'), PolicyRuleError,
                 "$.roles.agent.customers.reveal[0]", {"field": "star_level"}, "reveal =", id="reveal-not-masked"),
    pytest.param(('reveal = ["phone"]', 'reveal = []'), PolicyRuleError, "$.roles.agent.customers",
                 {"field": "phone_index"}, "phone_index", id="lookup-without-full-sight"),
    pytest.param(('masked = ["name", "phone"]\nreveal = ["phone"]', 'masked = ["name"]\nwrite = ["phone"]'),
                 PolicyRuleError, "$.roles.agent.customers", {"field": "phone_index"}, "phone_index",
                 id="writes-number-not-index"),
    pytest.param(('read = ["home_branch", ', 'read = ['), PolicyRuleError, "$.roles.agent.customers",
                 {"collection": "customers", "field": "home_branch"}, "[roles.agent.customers]",
                 id="scope-decided-by-unreadable-field"),
    pytest.param(('rows = "site"', 'rows = "all"'), PolicyRuleError, "$.roles.agent.rows", {"role": "agent"},
                 'rows = "all"', id="all-rows-outside-hq"),
    pytest.param(('rows = "site"', 'rows = "campaigns"'), PolicyRuleError, "$.roles.agent.rows", {},
                 'rows = "campaigns"', id="campaigns-outside-partners"),
    pytest.param(('sites = ["branch"]', 'sites = ["branch", "mobile"]'), PolicyRuleError, "$.roles.agent.sites", {},
                 "sites =", id="site-kind-without-node-rows"),
    pytest.param(('rows = "site"\n', ''), PolicyFormatError, "$.roles.agent", {"role": "agent"}, "[roles.agent]",
                 id="no-row-scope"),
    pytest.param(('read = ["site"]', 'read = "site"'), PolicyFormatError, "$.roles.agent.tasks.read", {},
                 'read = "site"', id="not-a-list"),
    pytest.param(('version = 1', 'version = 2'), PolicyFormatError, "$.version", {}, "version = 2",
                 id="wrong-version"),
    pytest.param(('version = 1', 'version = 1\nroles_extra = 1'), PolicyFormatError, "$", {}, "roles_extra",
                 id="unknown-top-key"),
])
def test_bad_policy(change: tuple[str, str], error: type[PolicyError], at: str, names: dict[str, str],
                    line_at: str) -> None:
    old, new = change
    assert old in BASE
    text = BASE.replace(old, new, 1)
    with pytest.raises(error) as info:
        parse_policy(text, "sites/policy.toml")
    exc = info.value
    assert exc.at == at
    for name, value in names.items():
        assert getattr(exc, name) == value
    assert exc.line == line_of(text, line_at), str(exc)
    assert str(exc).startswith(f"sites/policy.toml:{exc.line}: ") and str(exc).endswith(f" - at `{at}`")
    assert exc.details()["at"] == at


def test_not_toml() -> None:
    with pytest.raises(PolicyFormatError, match=r"not valid TOML.*line 2"):
        parse_policy("version = 1\n[roles.agent\n", "p.toml")


def test_not_utf8() -> None:
    with pytest.raises(PolicyFormatError, match="not UTF-8"):
        parse_policy(b"version = 1\n# \xff\n", "p.toml")


def test_a_missing_file() -> None:
    with pytest.raises(PolicyFormatError, match="cannot read"):
        load_policy("/nonexistent/policy.toml")


def test_an_error_in_the_real_file_names_its_line() -> None:
    text = POLICY_FILE.read_text()
    needle = 'write = ["tags", "suppression", "notes"]'
    assert text.count(needle) == 1
    bad = text.replace(needle, 'write = ["tags", "supression", "notes"]')
    with pytest.raises(UnknownFieldError) as info:
        parse_policy(bad, "sites/policy.toml")
    assert info.value.line == line_of(bad, '"supression"')
    assert info.value.at == "$.roles.agent.customers.write[1]"
    assert "Unknown field `supression`" in str(info.value) and "suppression" in str(info.value)


def test_reload_returns_a_new_policy_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(BASE)
    first = load_policy(path)
    path.write_text(BASE.replace('masked = ["name", "phone"]', 'masked = ["name", "phone", "notes"]'))
    with pytest.raises(NoMaskingRuleError):
        first.reload()
    assert first.access("agent", "customers", "name") == "masked"
    path.write_text(BASE.replace('read = ["home_branch", "star_level", "phone_index"]',
                                 'read = ["home_branch", "star_level", "phone_index", "name"]')
                    .replace('masked = ["name", "phone"]', 'masked = ["phone"]'))
    second = first.reload()
    assert second is not first
    assert second.access("agent", "customers", "name") == "read"
    assert first.access("agent", "customers", "name") == "masked"
    other = tmp_path / "other.toml"
    other.write_text(BASE.replace('"star_level", ', ""))
    assert first.reload(other).access("agent", "customers", "star_level") == "none"


def test_a_policy_from_text_reloads_only_from_a_named_file() -> None:
    with pytest.raises(PolicyFormatError, match="name the file"):
        parse_policy(BASE).reload()


def test_a_role_may_be_left_out_and_then_gets_nothing() -> None:
    policy = parse_policy(BASE)
    assert policy.access("hq_admin", "customers", "name") == "none"
    assert policy.roles_at("hq") == frozenset()
