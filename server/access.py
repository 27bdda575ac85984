"""Who is asking, and what the access policy lets them see and change of a customer.

Every call to the customers API is made by an `Actor` of one of two kinds:

* **The operator**: ``Authorization: Bearer <OUTPOST_ADMIN_TOKEN>``, the
  deployment's machine credential (the CLI, the demo, scripts). It is no person
  and has no role: every row, every field in full, every write; erasure, key
  rotation and policy reloads are its alone. Its accesses are recorded as
  ``operator`` like anyone's (server/access_events.py).
* **A signed-in user**: an access token from ``POST /auth/sign-in``. The policy in
  force at this node (`server.policy`, sites/policy.toml) decides, per request:

  - rows (ASVS 5.0 8.2.2): `Policy.admits_row`, with the user as a
    `policy.Principal`: the kind of the user's site (this node's role for a user
    who works here; at HQ, their site's registry entry, so a branch agent signed
    in at HQ sees what they see at their branch, not all of HQ), the users of
    their team at their site, and at a partner its contracted campaigns. A row
    outside answers exactly as a row that does not exist (`OutOfScopeError`
    makes the same 404 body as `server.errors.NotFoundError`), so ids cannot be
    probed.
  - fields (8.2.3): `project_customer`: a field at ``none`` is absent, a
    ``masked`` one masked (server/masking.py), ``read`` and ``write`` in full.
  - writes: every field a body changes must be ``write`` for the role, and the row
    after the change must still be in the user's scope (`check_write`,
    `check_create`); otherwise 403 naming the fields, never values, and nothing
    changes. A role that may write no customer field creates none.
  - lookups by phone or ID number need `Policy.may_look_up`; matches outside the
    user's scope are left out.
  - reveals need `Policy.may_reveal` (a masked field the role may reveal) and a
    purpose code (`RevealPurpose`), within ``auth.reveals_per_day``.

No web framework and no database driver here: server/auth.py resolves the actor
of a request, server/routes/customers.py applies these rules.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from crypto.plaintext import Plaintext
from server.config import SiteConfig
from server.policy import Policy, Principal
from server.views import CustomerView, apply_write, blank_row, fields_written
from sync.schema import COLLECTIONS

if TYPE_CHECKING:
    from server import sessions

OPERATOR = "operator"
#: the actor of a request that presented no valid credential
ANONYMOUS = "anonymous"
CUSTOMERS = "customers"

#: why a masked field is revealed: a fixed list of codes, so no free text (and no
#: personal information) can reach the audit log
RevealPurpose = Literal["outbound_call", "inbound_call", "complaint", "visit", "identity_check"]
#: why a customer card is read, when the caller says (recorded in the audit entry)
ReadPurpose = Literal[
    "outbound_call", "inbound_call", "complaint", "visit", "identity_check", "follow_up", "quality_review",
    "subject_request",
]
REVEAL_PURPOSES: tuple[str, ...] = typing.get_args(RevealPurpose)
#: the customer fields a masked view exists for (`server.masking.MASKS`), and so
#: the fields one can reveal
MaskedField = Literal["name", "phone", "second_contact", "email", "id_number", "birthday", "address"]

_PII = frozenset(f.name for f in COLLECTIONS[CUSTOMERS].pii_fields)
_VIEW_FIELDS = frozenset(CustomerView.__struct_fields__) - {"row_id", "unavailable"}


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who makes a request: the operator (``user`` is None), or a signed-in user
    as row admission sees them."""

    user: Principal | None = None

    @property
    def is_operator(self) -> bool:
        return self.user is None

    @property
    def id(self) -> str:
        """What the audit entries record: the user id, or ``operator``."""
        return OPERATOR if self.user is None else self.user.user_id

    @property
    def role(self) -> str | None:
        return None if self.user is None else self.user.role


OPERATOR_ACTOR = Actor()


# ---------------------------------------------------------------- errors


class OutOfScopeError(Exception):
    """A row outside the caller's scope: answered exactly as a row that does not
    exist (`server.errors.NotFoundError`: same status, code, message, details)."""

    code = "not_found"
    reason = "out_of_scope"

    def __init__(self, collection: str, row_id: str) -> None:
        self.collection = collection
        self.row_id = row_id
        self.message = f"No `{collection}` row `{row_id}` here"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"collection": self.collection, "row_id": self.row_id}


class AccessDeniedError(Exception):
    """The caller may not do this (403). ``reason`` is the code the audit entry records."""

    code = "access_denied"
    reason = "access_denied"

    def __init__(self, message: str, *, role: str | None, fields: Iterable[str] = ()) -> None:
        self.role = role
        self.fields = tuple(fields)
        self.message = message
        super().__init__(message)

    def details(self) -> dict[str, object]:
        return {"role": self.role, **({"fields": list(self.fields)} if self.fields else {})}


def _names(fields: Iterable[str]) -> str:
    return ", ".join(f"`{f}`" for f in fields)


class FieldsNotWritableError(AccessDeniedError):
    """A write names fields the caller's role may not change; nothing was changed."""

    code = "fields_not_writable"
    reason = "fields_not_writable"

    def __init__(self, role: str, fields: Iterable[str], row_id: str | None) -> None:
        fields = tuple(fields)
        self.row_id = row_id
        super().__init__(f"The role `{role}` may not change {_names(fields)} of a customer; nothing was changed",
                         role=role, fields=fields)

    def details(self) -> dict[str, object]:
        return {**super().details(), "collection": CUSTOMERS, "row_id": self.row_id}


class LeavesScopeError(AccessDeniedError):
    """A write or create whose row would be outside the caller's row scope."""

    code = "outside_scope"
    reason = "would_leave_scope"

    def __init__(self, role: str, fields: Iterable[str], row_id: str | None) -> None:
        self.row_id = row_id
        what = "This change would put the customer" if row_id else "The new customer would be"
        super().__init__(f"{what} outside the rows the role `{role}` sees here (its row scope); nothing was changed",
                         role=role, fields=fields)

    def details(self) -> dict[str, object]:
        return {**super().details(), "collection": CUSTOMERS, "row_id": self.row_id}


class NotPermittedError(AccessDeniedError):
    """An operation the caller's role may not do at all (create, look up, reveal a
    field), or one that is the operator's alone."""

    code = "not_permitted"
    reason = "not_permitted"

    def __init__(self, operation: str, role: str | None, *, field: str | None = None, why: str = "") -> None:
        self.operation = operation
        who = "operator" if role is None else f"role `{role}`"
        text = f"The {who} may not {operation}" + (f" `{field}`" if field else "")
        super().__init__(text + (f": {why}" if why else ""), role=role, fields=(field,) if field else ())

    def details(self) -> dict[str, object]:
        return {**super().details(), "operation": self.operation}


class OperatorOnlyError(AccessDeniedError):
    """An operation only the operator (``OUTPOST_ADMIN_TOKEN``) may call."""

    code = "operator_only"
    reason = "operator_only"

    def __init__(self, operation: str, role: str | None) -> None:
        self.operation = operation
        super().__init__(f"`{operation}` is an operator operation: call it with the node's operator token, "
                         f"not a user's access token", role=role)

    def details(self) -> dict[str, object]:
        return {**super().details(), "operation": self.operation}


class TooManyRevealsError(Exception):
    """The user revealed ``limit`` fields in the last 24 hours: a 429."""

    code = "too_many_reveals"
    reason = "too_many_reveals"

    def __init__(self, limit: int, retry_after_s: int, field: str) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.fields = (field,)
        self.message = ("This node allows no reveals (auth.reveals_per_day = 0)" if limit == 0 else
                        f"You revealed {limit} fields at this node in the last 24 hours, the most allowed; "
                        f"try again in {retry_after_s} s")
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"limit": self.limit, "retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


# ---------------------------------------------------------------- who is asking


class UserSource(typing.Protocol):
    """What resolving a user needs of the store (`sync.store.ReplicaStore`)."""

    async def find_rows(self, collection: str, *, limit: int = 10_000, after: str = "", **equals: Any) -> list[dict[str, Any]]: ...


def site_kind(config: SiteConfig, site: str) -> str | None:
    """The kind of the site ``site`` as this node knows it: its own role, or the
    role of its entry in this node's registry (HQ's); None when unknown here."""
    if site == config.node_id:
        return config.role
    return next((e.role for e in config.nodes if e.node_id == site), None)


def site_campaigns(config: SiteConfig, site: str) -> frozenset[str]:
    """A partner site's contracted campaigns, from its own config or HQ's registry."""
    if site == config.node_id:
        return frozenset(config.campaigns)
    return frozenset(next((e.campaigns for e in config.nodes if e.node_id == site), ()))


async def team_of(users: UserSource, user: sessions.Principal) -> frozenset[str]:
    """The user ids of ``user``'s team: the users of this node with the same team
    at the same site, deleted ones left out (a disabled member's customers stay
    the team's until someone moves them). Empty for a user without a team."""
    if user.team is None:
        return frozenset()
    rows = await users.find_rows("users", team=user.team, site=user.site, deleted=False)
    return frozenset(r["row_id"] for r in rows) | {user.user_id}


async def contracted(users: UserSource, site: str) -> frozenset[str]:
    """The live campaigns whose ``partners`` name ``site`` (HQ assigns them)."""
    rows = await users.find_rows("campaigns", deleted=False)
    return frozenset(r["row_id"] for r in rows if site in r["partners"])


async def user_actor(config: SiteConfig, users: UserSource, user: sessions.Principal) -> Actor:
    """The actor of a signed-in user at the node of ``config``. A user whose site
    this node does not know gets an empty site kind: no row admits them. A
    partner's campaigns are those its config lists and those HQ assigned to it."""
    kind = site_kind(config, user.site) or ""
    campaigns = site_campaigns(config, user.site)
    if kind == "partner":
        campaigns |= await contracted(users, user.site)
    return Actor(user=Principal(
        user_id=user.user_id, role=user.role, site=user.site, site_kind=kind,
        team=user.team, team_members=await team_of(users, user), campaigns=campaigns,
    ))


# ---------------------------------------------------------------- rows and fields


def admits(policy: Policy, actor: Actor, row: Mapping[str, Any]) -> bool:
    """Whether ``actor`` may see the customer ``row`` at all."""
    return actor.user is None or policy.admits_row(actor.user, CUSTOMERS, row)


class Projection(msgspec.Struct, frozen=True):
    """What a caller gets of one customer: the view, and the names of the PII
    fields it shows in full and masked (for the audit entry)."""

    view: Any
    shown: tuple[str, ...]
    masked: tuple[str, ...]


def project_customer(policy: Policy, actor: Actor, row: Mapping[str, Any], opened: Any) -> Projection:
    """``row`` (materialised) with its PII as ``opened`` (a `server.keyring.OpenedRow`),
    as ``actor`` may see it. A visible PII field that does not open here is null
    and listed in ``unavailable``; fields the role does not see are neither."""
    full: dict[str, Any] = {name: row[name] for name in _VIEW_FIELDS - _PII if name in row}
    full.update({name: value for name, value in opened.values.items() if name in _PII})
    if actor.user is None:
        seen: dict[str, Any] = full
        visible: Iterable[str] = _VIEW_FIELDS
        masked_names: frozenset[str] = frozenset()
    else:
        role = actor.user.role
        seen = policy.view(role, CUSTOMERS, full)
        visible = policy.visible_fields(role, CUSTOMERS) & _VIEW_FIELDS
        masked_names = policy.masked_fields(role, CUSTOMERS)
    unavailable = sorted(name for name in opened.unavailable if name in visible)
    values = {name: value.reveal() if isinstance(value, Plaintext) else value
              for name, value in seen.items() if name in _VIEW_FIELDS}
    values.update(dict.fromkeys(unavailable))
    shown = tuple(sorted(n for n in _PII if values.get(n) is not None and n not in masked_names))
    masked = tuple(sorted(n for n in _PII if values.get(n) is not None and n in masked_names))
    view = CustomerView(row_id=row["row_id"], unavailable=unavailable, **values)
    return Projection(view=view, shown=shown, masked=masked)


def check_write(policy: Policy, actor: Actor, row: Mapping[str, Any], body: msgspec.Struct) -> list[str]:
    """The fields ``body`` changes of ``row``, if ``actor`` may change them all and
    the row stays in its scope; raises `FieldsNotWritableError` or `LeavesScopeError`."""
    fields = fields_written(body)
    if actor.user is None:
        return fields
    role = actor.user.role
    denied = [f for f in fields if f not in policy.writable_fields(role, CUSTOMERS)]
    if denied:
        raise FieldsNotWritableError(role, denied, row["row_id"])
    if not policy.admits_row(actor.user, CUSTOMERS, apply_write(dict(row), body)):
        raise LeavesScopeError(role, fields, row["row_id"])
    return fields


def check_create(policy: Policy, actor: Actor, row_id: str, body: msgspec.Struct,
                 implied: Mapping[str, Any]) -> list[str]:
    """The fields a new customer gets from ``body`` (plus ``implied``, what the node
    sets itself, such as a site's own ``home_branch``), if ``actor`` may create it:
    its role writes some customer field and every field given, and the new row is
    in its scope. Raises `NotPermittedError`, `FieldsNotWritableError` or `LeavesScopeError`."""
    fields = fields_written(body)
    if actor.user is None:
        return fields
    role = actor.user.role
    if not policy.writable_fields(role, CUSTOMERS):
        raise NotPermittedError("create customers", role, why="it may change no customer field")
    denied = [f for f in fields if f not in policy.writable_fields(role, CUSTOMERS)]
    if denied:
        raise FieldsNotWritableError(role, denied, None)
    row = apply_write({**blank_row(CUSTOMERS, row_id), **implied}, body)
    if not policy.admits_row(actor.user, CUSTOMERS, row):
        raise LeavesScopeError(role, fields, None)
    return fields


def check_look_up(policy: Policy, actor: Actor, field: str) -> None:
    """Raises `NotPermittedError` unless ``actor`` may find customers by ``field``."""
    if actor.user is not None and not policy.may_look_up(actor.user.role, field):
        raise NotPermittedError("look up customers by", actor.user.role, field=field)


def check_reveal(policy: Policy, actor: Actor, field: str) -> None:
    """Raises `NotPermittedError` unless ``actor`` may reveal ``field`` (one it sees
    masked and the policy lists under ``reveal``)."""
    if actor.user is None or policy.may_reveal(actor.user.role, CUSTOMERS, field):
        return
    level = policy.access(actor.user.role, CUSTOMERS, field)
    why = {"none": "it does not see this field", "masked": "the policy does not let it reveal this field"}.get(
        level, "it sees this field in full already")
    raise NotPermittedError("reveal", actor.user.role, field=field, why=why)
