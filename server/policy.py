"""The access policy: who may see and change which field of which row.

The policy is data, ``sites/policy.toml`` (its comments explain the format);
this module is the one place that reads and evaluates it, for the API (what a
user sees and may change) and for sync (what a node receives and may write):

    policy = load_policy("sites/policy.toml")
    policy.access("agent", "customers", "phone")            # 'masked'
    policy.admits_row(principal, "customers", row)          # a user's row scope
    scope = policy.node_scope(registry_entry)               # what sync sends a node
    scope.admits("customers", row), scope.fields["customers"], scope.key_classes

Deny by default, everywhere: a role the file does not list, a field a role does
not list, a collection the policy does not govern (it governs ``customers``,
``tasks``, ``results`` and ``consents``; keys travel by `sync.scope.PeerScope`),
a site kind without a ``[node_rows]`` rule: all of them get ``none`` /
``False``, never an exception.

Node scope is derived, not written twice: a node receives the rows its site
kind's ``[node_rows]`` rule admits; of those, every field some role present at
that kind of site may see (``masked`` included: the node needs the value to
mask it) plus the row's tombstone (a node that holds a row must learn that it
was deleted or erased); the key classes of those fields, and ``index`` if some
role there may look up by phone or ID number; and it may write the union of its
roles' ``write`` fields, and (a node that is a home group, not a partner) the
sealed fields it holds, which it re-seals when it rotates a customer's keys.

Row scope rules read only the row they decide on (a task by its own ``site``,
``campaign_id`` or ``assignee``, not by its customer's), so a predicate runs on
one materialized row dict. A user never sees more rows than their own site
holds: `Policy.admits_row` applies the site's rule and the role's rule both.
The one exception is a child collection (`sync.schema.PARENTS`: ``consents``):
its rows have no rule of their own, they are in scope exactly when their
customer is, for nodes (the store looks the customer up) and for users (ask
about the customer row); `admits_row` and `NodeScope.admits` refuse to decide
one (`TypeError`), so no caller can mistake it for a row with a rule.

`load_policy` validates the whole file and raises a `PolicyError` subclass
naming the file, the line when it can find it, and the place in msgspec's style
(``$.roles.agent.customers.read[3]``). `Policy.reload` returns a new `Policy`;
swapping it in is the caller's job, and a bad file raises before anything
changes, so the policy in force stays in force. No web framework, no global
state: a `Policy` is immutable.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from server.config import NodeEntry, SiteConfig
from server.masking import has_mask, mask_field
from sync.schema import COLLECTIONS, PARENTS, ROW_KEY_FIELDS, Role
from sync.scope import PeerScope

AccessLevel = Literal["none", "masked", "read", "write"]
#: the access levels, weakest first; each includes the ones before it
ACCESS_LEVELS: tuple[AccessLevel, ...] = typing.get_args(AccessLevel)
#: which rows a role's users see
RowScope = Literal["all", "site", "team", "assigned", "campaigns"]
ROW_SCOPES: tuple[str, ...] = typing.get_args(RowScope)
#: which rows a node of a site kind holds
NodeRows = Literal["all", "home", "campaigns", "assigned"]
NODE_ROWS: tuple[str, ...] = typing.get_args(NodeRows)
SiteKind = Literal["hq", "branch", "partner", "mobile"]
SITE_KINDS: tuple[str, ...] = typing.get_args(SiteKind)
ROLES: tuple[str, ...] = typing.get_args(Role)
#: the collections the policy governs
GOVERNED: tuple[str, ...] = ("customers", "tasks", "results", "consents")
#: the key class of the blind-index key (as in server.keyring)
INDEX_CLASS = "index"
POLICY_VERSION = 1

_RANK = {level: i for i, level in enumerate(ACCESS_LEVELS)}
_ROLE_KEYS = ("sites", "rows", *GOVERNED)
_GRANT_KEYS = (*ACCESS_LEVELS, "reveal")

#: blind-index field -> the field it indexes: the secret, indexed ``X_index``
#: fields of customers next to a PII field ``X``
_CUSTOMER_PII = {f.name for f in COLLECTIONS["customers"].pii_fields}
BLIND_INDEXES: Mapping[str, str] = {
    f.name: f.name.removesuffix("_index")
    for f in COLLECTIONS["customers"].fields.values()
    if f.secret and f.index and f.pii is None and f.name.removesuffix("_index") in _CUSTOMER_PII
}

#: the fields a row rule reads, per collection
_HOME = {"customers": ("home_branch",), "tasks": ("site",), "results": ("site",)}
_CAMPAIGNS = {"customers": ("partners",), "tasks": ("campaign_id",), "results": ("site",)}
_OWNERS = {"customers": ("assigned_agent", "account_manager"), "tasks": ("assignee", "first_responder"),
           "results": ("agent",)}
#: an unassigned row (the team's queue) has no value here
_QUEUE = {"customers": "assigned_agent", "tasks": "assignee", "results": "agent"}
_RULE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "all": {},
    "site": {},  # the site's own [node_rows] rule
    "home": _HOME,
    "campaigns": _CAMPAIGNS,
    "assigned": _OWNERS,
    "team": _OWNERS,
}
#: per collection, every field a row rule may read: a row read with only these
#: (and what its reader needs) is admitted exactly as the whole row would be
ADMISSION_FIELDS: dict[str, tuple[str, ...]] = {
    c: tuple(sorted({f for table in _RULE_FIELDS.values() for f in table.get(c, ())} | {_QUEUE[c]}))
    for c in _QUEUE
}


# ---------------------------------------------------------------- errors


class PolicyError(Exception):
    """A policy file that cannot be used; nothing in it takes effect.

    ``path`` is the file, ``at`` the place in it (``$.roles.agent.customers``),
    ``line`` its line when it could be found; ``role``, ``collection`` and
    ``field`` name what is wrong where that applies. Messages hold names from
    the file and the schema, never data.
    """

    code = "policy_invalid"

    def __init__(self, reason: str, *, path: str = "", at: str = "$", line: int | None = None,
                 role: str | None = None, collection: str | None = None, field: str | None = None) -> None:
        self.reason = reason
        self.path = path
        self.at = at
        self.line = line
        self.role = role
        self.collection = collection
        self.field = field
        where = f"{path}:{line}" if path and line else path or (f"line {line}" if line else "")
        self.message = f"{where + ': ' if where else ''}{reason} - at `{at}`"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "at": self.at}
        for name in ("line", "role", "collection", "field"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


class PolicyFormatError(PolicyError):
    """Not TOML, or not shaped like a policy: a wrong type, an unknown key, a wrong version."""


class UnknownRoleError(PolicyError):
    """A role the schema does not define (`sync.schema.Role`)."""


class UnknownCollectionError(PolicyError):
    """A collection the policy does not govern."""


class UnknownFieldError(PolicyError):
    """A field the collection does not have (`sync.schema.COLLECTIONS`)."""


class UnknownAccessLevelError(PolicyError):
    """An access level other than none, masked, read, write (or the reveal list)."""


class UnknownScopeError(PolicyError):
    """A site kind, row scope or node rule that does not exist."""


class ConflictingAccessError(PolicyError):
    """One field listed twice for one role: under two levels, or twice under one."""


class NoMaskingRuleError(PolicyError):
    """``masked`` on a field that `server.masking` has no rule for."""


class PolicyRuleError(PolicyError):
    """A policy whose parts contradict each other (reveal, lookups, row scopes)."""


class NodeScopeError(Exception):
    """A node's scope needs something its config does not give (a mobile node's user)."""

    code = "node_scope"

    def __init__(self, node_id: str, reason: str) -> None:
        self.node_id = node_id
        self.message = f"node `{node_id}`: {reason}"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"node": self.node_id}


# ---------------------------------------------------------------- values


class RoleGrant(msgspec.Struct, frozen=True, kw_only=True):
    """One role as the file grants it: where it exists, its row scope, and the
    level of every field it lists (unlisted fields are ``none``)."""

    role: str
    sites: frozenset[str]
    rows: str | None
    #: collection -> field -> level, for the fields the file lists
    levels: dict[str, dict[str, str]]
    #: collection -> the masked fields this role may reveal
    reveal: dict[str, frozenset[str]]

    def level(self, collection: str, field: str) -> AccessLevel:
        return self.levels.get(collection, {}).get(field, "none")  # type: ignore[return-value]

    def at_least(self, collection: str, level: AccessLevel) -> frozenset[str]:
        rank = _RANK[level]
        return frozenset(f for f, lv in self.levels.get(collection, {}).items() if _RANK[lv] >= rank)

    def sees_in_full(self, collection: str, field: str) -> bool:
        level = self.level(collection, field)
        return level in ("read", "write") or (level == "masked" and field in self.reveal.get(collection, ()))


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A signed-in user, as row admission needs them.

    ``site`` is the node id of the user's site and ``site_kind`` its kind (for an
    account manager on their phone: the phone's node id and ``mobile``).
    ``team_members``: the user ids of the user's team, resolved by the caller
    from ``users``; ``campaigns``: at a partner site, the contracted campaign ids.
    """

    user_id: str
    role: str
    site: str
    site_kind: str
    team: str | None = None
    team_members: frozenset[str] = frozenset()
    campaigns: frozenset[str] = frozenset()


class NodeScope(msgspec.Struct, frozen=True, kw_only=True):
    """What sync sends one node and accepts from it, derived from the policy.

    ``rows``: its site kind's ``[node_rows]`` rule (None: it holds no row);
    ``fields``: per governed collection, the fields present at the node (the
    others are absent there, never null); ``writable``: the fields it may
    change; ``key_classes``: the PII field classes (and ``index``) whose keys it
    needs; ``reads``: per collection, the fields ``rows`` decides on (what a
    caller must put in a row dict for `admits`).
    """

    node: str
    kind: str
    rows: str | None
    roles: frozenset[str]
    campaigns: frozenset[str]
    user: str | None
    fields: dict[str, frozenset[str]]
    writable: dict[str, frozenset[str]]
    key_classes: frozenset[str]
    reads: dict[str, tuple[str, ...]]

    def admits(self, collection: str, row: Mapping[str, Any]) -> bool:
        """Whether the node may hold ``row`` (a materialized row dict)."""
        if self.rows is None or collection not in GOVERNED:
            return False
        test = _node_rule_test(self.rows, collection, self.node, self.user, self.campaigns)
        return test is None or test(row)

    def may_write(self, collection: str, row: Mapping[str, Any], field: str) -> bool:
        """Whether a change to ``field`` of ``row`` from this node may be merged
        (the caller also checks the row after the change, so a write cannot move a
        row into the node's scope)."""
        return field in self.writable.get(collection, ()) and self.admits(collection, row)

    def project(self, collection: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` without the fields that are absent at this node."""
        present = self.fields.get(collection, frozenset())
        return {name: value for name, value in row.items() if name in present}

    def peer_scope(self) -> PeerScope:
        """The node's key distribution, as `sync.scope.PeerScope` serves it."""
        groups = None if self.kind == "hq" else frozenset({self.node})
        return PeerScope(node=self.node, groups=groups, classes=self.key_classes)


# ---------------------------------------------------------------- row rules


def _members(value: Any) -> tuple[Any, ...]:
    if value is None or isinstance(value, str | bytes):
        return ()
    try:
        return tuple(value)
    except TypeError:
        return ()


RowTest = Callable[[Mapping[str, Any]], bool]


@functools.lru_cache(maxsize=1024)
def _node_rule_test(rule: str, collection: str, node: str, user: str | None,
                    campaigns: frozenset[str]) -> RowTest | None:
    """`_rule_test` for a node's scope, remembered: sync asks it of every row."""
    users = frozenset() if user is None else frozenset({user})
    return _rule_test(rule, collection, node=node, users=users, campaigns=campaigns)


def _rule_test(rule: str, collection: str, *, node: str, users: frozenset[str],
               campaigns: frozenset[str]) -> RowTest | None:
    """Whether a row of ``collection`` is in ``rule``'s rows, as a test built
    once for many rows; None for ``all``, which needs no test."""
    if collection in PARENTS:
        raise TypeError(f"a `{collection}` row is in scope exactly when its {PARENTS[collection][0]} row is: "
                        f"ask about that row")
    if rule == "all":
        return None
    if rule == "home":
        (home,) = _HOME[collection]
        return lambda row: bool(row.get(home) == node)
    if rule == "campaigns":
        if collection == "customers":
            return lambda row: node in _members(row.get("partners"))
        if collection == "tasks":
            return lambda row: isinstance(campaign := row.get("campaign_id"), str) and campaign in campaigns
        return lambda row: bool(row.get("site") == node)
    if rule in ("assigned", "team"):
        owners, queue, team = _OWNERS[collection], _QUEUE[collection], rule == "team"

        def owned(row: Mapping[str, Any]) -> bool:
            for name in owners:
                owner = row.get(name)
                if isinstance(owner, str) and owner in users:
                    return True
            return team and queue in row and row[queue] is None  # unassigned: the field is there, and empty

        return owned
    return _refuse


#: how many (principal, collection) row filters a policy keeps
_FILTERS_KEPT = 4096


def _refuse(row: Mapping[str, Any]) -> bool:  # noqa: ARG001 - a row filter that admits nothing
    return False


def admit_every_row(row: Mapping[str, Any]) -> bool:  # noqa: ARG001 - a row filter that admits every row
    return True


# ---------------------------------------------------------------- the policy


class Policy:
    """An access policy, validated. Immutable; see the module docstring."""

    __slots__ = ("path", "node_rows", "_grants", "_visible", "_masked", "_writable", "_filters")

    def __init__(self, grants: Mapping[str, RoleGrant], node_rows: Mapping[str, str], path: str = "") -> None:
        self.path = path
        #: site kind -> the rule for the rows its nodes hold
        self.node_rows: dict[str, str] = dict(node_rows)
        self._grants = dict(grants)
        self._visible = {(r, c): g.at_least(c, "masked") for r, g in self._grants.items() for c in GOVERNED}
        self._masked = {(r, c): seen - self._grants[r].at_least(c, "read") for (r, c), seen in self._visible.items()}
        self._writable = {(r, c): g.at_least(c, "write") for r, g in self._grants.items() for c in GOVERNED}
        #: (principal, collection) -> its `row_filter`, for the principals seen lately
        self._filters: dict[tuple[Principal, str], RowTest] = {}

    def __repr__(self) -> str:
        return f"Policy({self.path or '<text>'}, roles={sorted(self._grants)})"

    # ------------------------------------------------------------ loading

    def reload(self, path: str | Path | None = None) -> Policy:
        """The policy in ``path`` (by default the file this one came from), as a new
        `Policy`. Raises `PolicyError` on a bad file; this policy is unchanged
        either way, so the caller swaps the new one in only when it loaded."""
        target = path if path is not None else self.path
        if not target:
            raise PolicyFormatError("this policy was not read from a file; name the file to reload")
        return load_policy(target)

    # ------------------------------------------------------------ roles and fields

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the file grants anything, in file order."""
        return tuple(self._grants)

    def grant(self, role: str) -> RoleGrant | None:
        return self._grants.get(role)

    def access(self, role: str, collection: str, field: str) -> AccessLevel:
        """``role``'s level on ``collection.field``: ``none`` unless the file grants more."""
        grant = self._grants.get(role)
        return "none" if grant is None else grant.level(collection, field)

    def visible_fields(self, role: str, collection: str) -> frozenset[str]:
        """The fields ``role`` sees at all (masked, read or write)."""
        return self._visible.get((role, collection), frozenset())

    def masked_fields(self, role: str, collection: str) -> frozenset[str]:
        """The fields ``role`` sees only masked."""
        return self._masked.get((role, collection), frozenset())

    def writable_fields(self, role: str, collection: str) -> frozenset[str]:
        return self._writable.get((role, collection), frozenset())

    def may_reveal(self, role: str, collection: str, field: str) -> bool:
        """Whether ``role`` may reveal a field it sees masked (an audited action with a purpose)."""
        grant = self._grants.get(role)
        return grant is not None and field in grant.reveal.get(collection, ())

    def may_look_up(self, role: str, field: str) -> bool:
        """Whether ``role`` may find customers by ``field`` (``phone``, ``id_number``)
        through the blind index."""
        index = next((i for i, f in BLIND_INDEXES.items() if f == field), None)
        return index is not None and _RANK[self.access(role, "customers", index)] >= _RANK["read"]

    def site_kinds(self, role: str) -> frozenset[str]:
        grant = self._grants.get(role)
        return frozenset() if grant is None else grant.sites

    def roles_at(self, site_kind: str) -> frozenset[str]:
        """The roles that may exist at a site of this kind."""
        return frozenset(r for r, g in self._grants.items() if site_kind in g.sites)

    def row_scope(self, role: str) -> str | None:
        grant = self._grants.get(role)
        return None if grant is None else grant.rows

    def view(self, role: str, collection: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """What ``role`` sees of ``row``: fields it may not see left out, masked
        fields masked (PII values as opened text or `crypto.Plaintext`; None stays
        None), the rest as given."""
        grant = self._grants.get(role)
        if grant is None:
            return {}
        out: dict[str, Any] = {}
        for name, value in row.items():
            level = grant.level(collection, name)
            if level == "masked":
                out[name] = None if value is None else mask_field(collection, name, value)
            elif level != "none":
                out[name] = value
        return out

    # ------------------------------------------------------------ rows

    def admits_row(self, principal: Principal, collection: str, row: Mapping[str, Any]) -> bool:
        """Whether ``principal`` may see ``row`` (a materialized row dict): its role
        exists at its kind of site, its site holds the row, and its role's row scope
        admits it."""
        return self.row_filter(principal, collection)(row)

    def row_filter(self, principal: Principal, collection: str) -> RowTest:
        """`admits_row` for one principal and collection, worked out once (and
        remembered for the principals seen lately): for asking it of many rows."""
        key = (principal, collection)
        found = self._filters.get(key)
        if found is None:
            if len(self._filters) >= _FILTERS_KEPT:
                self._filters.clear()
            found = self._filters[key] = self._row_filter(principal, collection)
        return found

    def _row_filter(self, principal: Principal, collection: str) -> RowTest:
        grant = self._grants.get(principal.role)
        if grant is None or principal.site_kind not in grant.sites or collection not in GOVERNED:
            return _refuse
        site_rule = self.node_rows.get(principal.site_kind)
        if site_rule is None or grant.rows is None:
            return _refuse
        me = frozenset({principal.user_id})
        node, campaigns = principal.site, principal.campaigns
        site_test = _rule_test(site_rule, collection, node=node, users=me, campaigns=campaigns)
        own_test = None if grant.rows in ("all", "site") else _rule_test(
            grant.rows, collection, node=node, users=me | principal.team_members if grant.rows == "team" else me,
            campaigns=campaigns)
        if site_test is None or own_test is None:
            return site_test or own_test or admit_every_row
        return lambda row: site_test(row) and own_test(row)

    def may_write(self, principal: Principal, collection: str, row: Mapping[str, Any], field: str) -> bool:
        """Whether ``principal`` may change ``field`` of ``row``."""
        return field in self.writable_fields(principal.role, collection) and self.admits_row(principal, collection, row)

    # ------------------------------------------------------------ nodes

    def node_scope(self, node: SiteConfig | NodeEntry, *, campaigns: Iterable[str] | None = None,
                   user: str | None = None) -> NodeScope:
        """What sync sends ``node`` and accepts from it: a site's own config, or
        the entry in its upstream's registry. ``campaigns`` and ``user`` override
        the config's (for campaigns read from the ``campaigns`` collection).
        Raises `NodeScopeError` for a node whose rule needs a user it lacks."""
        kind = node.role
        rule = self.node_rows.get(kind)
        contracted = frozenset(campaigns if campaigns is not None else getattr(node, "campaigns", ()))
        owner = user if user is not None else getattr(node, "user", None)
        if rule == "assigned" and not owner:
            raise NodeScopeError(node.node_id, f"a {kind} node holds its user's rows; give its registry entry a `user`")
        roles = self.roles_at(kind) if rule is not None else frozenset()
        fields: dict[str, frozenset[str]] = {}
        writable: dict[str, frozenset[str]] = {}
        for collection in GOVERNED:
            seen = frozenset().union(*(self.visible_fields(r, collection) for r in roles))
            if seen:
                seen |= {f.name for f in COLLECTIONS[collection].fields.values() if f.merge == "tombstone"}
            fields[collection] = seen
            writable[collection] = frozenset().union(*(self.writable_fields(r, collection) for r in roles))
        classes = {
            spec.pii for c, names in fields.items() for name in names
            if (spec := COLLECTIONS[c].fields[name]).pii is not None
        }
        if any(name in BLIND_INDEXES for name in fields["customers"]):
            classes.add(INDEX_CLASS)
        # a customer arrives with the data keys (wrapped for its home group) of the
        # classes the node reads, and a node writing a class's fields may make its
        # key; a partner is no home group: its wraps are `keys` records
        if rule != "campaigns":  # a home node keeps its customers' keys: it re-seals what it holds
            writable["customers"] |= fields["customers"] & _CUSTOMER_PII
            writable["customers"] |= {i for i, base in BLIND_INDEXES.items() if base in writable["customers"]}
        for held in (fields, writable) if rule != "campaigns" else ():
            used = {COLLECTIONS["customers"].fields[name].pii for name in held["customers"]}
            held["customers"] |= {name for name, cls in ROW_KEY_FIELDS.items() if cls in used}
        return NodeScope(
            node=node.node_id, kind=kind, rows=rule, roles=roles, campaigns=contracted, user=owner,
            fields=fields, writable=writable, key_classes=frozenset(classes),  # type: ignore[arg-type]
            reads={c: _RULE_FIELDS.get(rule or "all", {}).get(c, ()) for c in GOVERNED},
        )


# ---------------------------------------------------------------- reading the file


class _Reader:
    """Walks the decoded file, raising errors that name the place and, when it can
    be found, the line."""

    def __init__(self, text: str, path: str) -> None:
        self.lines = text.splitlines()
        self.path = path

    def line(self, table: str | None, key: str | None = None, item: str | None = None) -> int | None:
        """Best effort: the line of ``[table]``'s ``key``, or of ``item`` in its list."""
        start = 0
        if table is not None:
            header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table.split("."))) + r"\s*\]\s*(#.*)?$")
            start = next((i for i, text in enumerate(self.lines) if header.match(text)), -1)
            if start < 0:
                return None
            if key is None:
                return start + 1
            start += 1
        assignment = re.compile(r"^\s*" + re.escape(key or "") + r"\s*=")
        for i in range(start, len(self.lines)):
            text = self.lines[i]
            if text.lstrip().startswith("["):
                return None
            if assignment.match(text):
                if item is None:
                    return i + 1
                quoted = re.compile(r"[\"']" + re.escape(item) + r"[\"']")
                for j in range(i, min(len(self.lines), i + 100)):
                    if j > i and (self.lines[j].lstrip().startswith("[") or "=" in self.lines[j].split("#")[0]):
                        break
                    if quoted.search(self.lines[j]):
                        return j + 1
                return i + 1
        return None

    def fail(self, cls: type[PolicyError], reason: str, at: str, line: int | None = None, **names: str | None) -> PolicyError:
        return cls(reason, path=self.path, at=at, line=line, **names)

    def table(self, value: Any, at: str, line: int | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(PolicyFormatError, f"Expected a table, got `{type(value).__name__}`", at, line)
        return value

    def strings(self, value: Any, at: str, line: int | None) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(PolicyFormatError, "Expected an array of strings", at, line)
        return value


def _choices(names: Iterable[str]) -> str:
    return ", ".join(names)


def parse_policy(text: str | bytes, path: str = "") -> Policy:
    """Validate a policy's TOML text into a `Policy`; raises a `PolicyError` subclass."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyFormatError("not UTF-8 text", path=path) from None
    try:
        doc = msgspec.toml.decode(text.encode())
    except msgspec.DecodeError as exc:
        raise PolicyFormatError(f"not valid TOML: {exc}", path=path) from None
    r = _Reader(text, path)
    doc = r.table(doc, "$", None)
    for key in doc:
        if key not in ("version", "node_rows", "roles"):
            raise r.fail(PolicyFormatError, f"Unknown key `{key}`; a policy has version, node_rows and roles",
                         "$", r.line(None, key))
    if doc.get("version") != POLICY_VERSION:
        raise r.fail(PolicyFormatError, f"Expected `version = {POLICY_VERSION}`", "$.version", r.line(None, "version"))

    node_rows: dict[str, str] = {}
    for kind, rule in r.table(doc.get("node_rows", {}), "$.node_rows", r.line("node_rows")).items():
        at, line = f"$.node_rows.{kind}", r.line("node_rows", kind)
        if kind not in SITE_KINDS:
            raise r.fail(UnknownScopeError, f"Unknown site kind `{kind}`; site kinds are {_choices(SITE_KINDS)}", at, line)
        if rule not in NODE_ROWS:
            raise r.fail(UnknownScopeError, f"Unknown node rule; node rules are {_choices(NODE_ROWS)}", at, line)
        node_rows[kind] = rule

    grants: dict[str, RoleGrant] = {}
    for role, spec in r.table(doc.get("roles", {}), "$.roles", r.line("roles")).items():
        grants[role] = _read_role(r, role, spec)
    for grant in grants.values():
        _check_role(r, grant, node_rows)
    return Policy(grants, node_rows, path)


def _read_role(r: _Reader, role: str, spec: Any) -> RoleGrant:
    at, table = f"$.roles.{role}", f"roles.{role}"
    if role not in ROLES:
        raise r.fail(UnknownRoleError, f"Unknown role `{role}`; roles are {_choices(ROLES)}", at, r.line(table), role=role)
    spec = r.table(spec, at, r.line(table))
    for key in spec:
        if key not in _ROLE_KEYS:
            kind = "a collection the policy does not govern" if key in COLLECTIONS else "not a key of a role"
            raise r.fail(UnknownCollectionError,
                         f"`{key}` is {kind}; a role has sites, rows and the collections {_choices(GOVERNED)}",
                         f"{at}.{key}", r.line(table, key) or r.line(f"{table}.{key}"), role=role, collection=key)
    sites = r.strings(spec.get("sites", []), f"{at}.sites", r.line(table, "sites"))
    for i, kind in enumerate(sites):
        if kind not in SITE_KINDS:
            raise r.fail(UnknownScopeError, f"Unknown site kind `{kind}`; site kinds are {_choices(SITE_KINDS)}",
                         f"{at}.sites[{i}]", r.line(table, "sites", kind), role=role)
    rows = spec.get("rows")
    if rows is not None and rows not in ROW_SCOPES:
        raise r.fail(UnknownScopeError, f"Unknown row scope; row scopes are {_choices(ROW_SCOPES)}",
                     f"{at}.rows", r.line(table, "rows"), role=role)
    if sites and rows is None:
        raise r.fail(PolicyFormatError, "A role that exists at some site needs `rows`", at, r.line(table), role=role)

    levels: dict[str, dict[str, str]] = {}
    reveal: dict[str, frozenset[str]] = {}
    for collection in GOVERNED:
        if collection not in spec:
            continue
        c_at, c_table = f"{at}.{collection}", f"{table}.{collection}"
        grant = r.table(spec[collection], c_at, r.line(c_table))
        known = COLLECTIONS[collection].fields
        listed: dict[str, str] = {}
        where: dict[str, str] = {}
        for level, names in grant.items():
            l_at = f"{c_at}.{level}"
            if level not in _GRANT_KEYS:
                raise r.fail(UnknownAccessLevelError,
                             f"Unknown access level `{level}`; levels are {_choices(ACCESS_LEVELS)} (and `reveal`)",
                             l_at, r.line(c_table, level), role=role, collection=collection)
            names = r.strings(names, l_at, r.line(c_table, level))
            for i, name in enumerate(names):
                f_at, line = f"{l_at}[{i}]", r.line(c_table, level, name)
                if name not in known:
                    raise r.fail(UnknownFieldError,
                                 f"Unknown field `{name}`; `{collection}` has {_choices(known)}",
                                 f"{f_at}", line, role=role, collection=collection, field=name)
                if level == "reveal":
                    continue
                if name in listed:
                    raise r.fail(ConflictingAccessError,
                                 f"`{name}` is listed twice for `{role}`, also at `{where[name]}`; list each field once",
                                 f_at, line, role=role, collection=collection, field=name)
                if level == "masked" and not has_mask(collection, name):
                    raise r.fail(NoMaskingRuleError,
                                 f"`{collection}.{name}` has no masking rule (server/masking.py MASKS); "
                                 "grant `none` or `read` instead",
                                 f_at, line, role=role, collection=collection, field=name)
                listed[name] = level
                where[name] = f_at
        for i, name in enumerate(grant.get("reveal", [])):
            if listed.get(name) != "masked":
                raise r.fail(PolicyRuleError, f"`{role}` may reveal only fields it sees masked; `{name}` is not masked",
                             f"{c_at}.reveal[{i}]", r.line(c_table, "reveal", name),
                             role=role, collection=collection, field=name)
        levels[collection] = {name: level for name, level in listed.items()}
        reveal[collection] = frozenset(grant.get("reveal", []))
    return RoleGrant(role=role, sites=frozenset(sites), rows=rows, levels=levels, reveal=reveal)


def _check_role(r: _Reader, grant: RoleGrant, node_rows: Mapping[str, str]) -> None:
    """The rules that tie a role's parts together."""
    role, at, table = grant.role, f"$.roles.{grant.role}", f"roles.{grant.role}"

    def fail(reason: str, where: str, line: int | None, **names: str) -> PolicyError:
        return r.fail(PolicyRuleError, reason, where, line, role=role, **names)

    c_at, c_table = f"{at}.customers", f"{table}.customers"
    for index, base in BLIND_INDEXES.items():
        level = grant.level("customers", index)
        line = r.line(c_table, level, index) if level != "none" else r.line(c_table)
        if level != "none" and not grant.sees_in_full("customers", base):
            raise fail(f"`{role}` may look up by `{base}` only if it sees `{base}` in full (read, write or reveal): "
                       f"the mask and the index together give the number", c_at, line, collection="customers", field=index)
        if (level == "write") != (grant.level("customers", base) == "write"):
            raise fail(f"a role that writes `{base}` writes `{index}` too, and only then", c_at, line,
                       collection="customers", field=index)

    if grant.rows == "all" and not grant.sites <= {"hq"}:
        raise fail("row scope `all` is for roles at HQ only; use `site` elsewhere", f"{at}.rows", r.line(table, "rows"))
    if grant.rows == "campaigns" and not grant.sites <= {"partner"}:
        raise fail("row scope `campaigns` is for roles at partner sites only", f"{at}.rows", r.line(table, "rows"))
    for kind in sorted(grant.sites):
        if kind not in node_rows:
            raise fail(f"`{role}` exists at {kind} sites, but [node_rows] gives {kind} nodes no rows",
                       f"{at}.sites", r.line(table, "sites"))
        rules = ((f"which rows `{role}` sees (`{grant.rows}`)", grant.rows or "all"),
                 (f"which rows {kind} nodes hold (`{node_rows[kind]}`)", node_rows[kind]))
        for what, rule in rules:
            for collection, names in _RULE_FIELDS[rule].items():
                for name in names:
                    if _RANK[grant.level(collection, name)] < _RANK["read"]:
                        raise fail(
                            f"{what} is decided by `{collection}.{name}`, which `{role}` may not read at "
                            f"{kind} sites; grant it `read`",
                            f"{at}.{collection}", r.line(f"{table}.{collection}"),
                            collection=collection, field=name)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raises a `PolicyError` subclass naming what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyFormatError(f"cannot read: {exc.strerror}", path=str(path)) from None
    return parse_policy(data, str(path.resolve()))
