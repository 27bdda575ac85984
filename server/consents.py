"""Consent records (PIPL Art. 14-15; Art. 28-29 for the ID number): what the
person agreed to, recorded as the history of events it is, and what a consent
changes elsewhere.

* **History.** A consent is a ``consents`` row (sync/schema.py): a customer, a
  purpose, given or withdrawn, a channel, when the person said so (``at_ms``),
  who recorded it and where. Rows are never edited; a change of mind is a new
  row. The **current** state of a (customer, purpose) is its latest live record
  by (``at_ms``, row id): the same answer at every node holding the same rows,
  whatever order they arrived in.
* **Marketing and suppression.** A record that becomes the current marketing
  state puts ``refused_marketing`` in the customer's ``suppression`` set
  (withdrawn) or takes it out (given), in the same write, so it replicates to
  every node as a field of the customer. A grant never touches ``do_not_call``
  or ``blacklist``. A withdrawal always adds (a new add beats a concurrent
  remove elsewhere: the set is add-wins), a grant removes only what it sees; so
  when a grant and a withdrawal are recorded concurrently at two nodes the
  customer stays suppressed, the safe side, until someone records again.
* **The ID number is sensitive information** (Art. 28-29): a write that sets a
  customer's ``id_number`` needs the person's separate, current consent for the
  purpose ``id_number`` (`ConsentRequiredError`, a 422). A write may carry that
  consent itself (``id_number_consent``, recorded in the same transaction), as
  a create must: a customer that does not exist has no consent yet. Clearing
  the number needs no consent.

Who may record or read consents is the access policy's (sites/policy.toml,
``consents``): a role records them only if it writes every field of a record,
and a marketing consent only if it also writes the customer's ``suppression``.
A user sees the consents of exactly the customers they see.

Plain functions and typed errors, no web framework (server/routes/consents.py
and server/routes/customers.py are the edge; server/errors.py maps the errors).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec

from server.access import Actor, FieldsNotWritableError, NotPermittedError
from server.policy import Policy
from sync.edits import Edit
from sync.schema import ConsentPurpose

CONSENTS = "consents"
PURPOSES: tuple[str, ...] = typing.get_args(ConsentPurpose)
MARKETING = "marketing"
ID_NUMBER = "id_number"
#: what a withdrawn marketing consent puts on the customer's suppression set
REFUSED_MARKETING = "refused_marketing"
#: the fields a record sets: a role records consents only if it writes them all
RECORD_FIELDS: tuple[str, ...] = ("customer_id", "purpose", "granted", "channel", "at_ms", "recorded_by", "site")
#: the fields a role must see to read a customer's consents at all
READ_FIELDS: frozenset[str] = frozenset({"customer_id", "purpose", "granted", "at_ms"})


# ---------------------------------------------------------------- errors


class ConsentRequiredError(Exception):
    """A write needs the person's consent for ``purpose``, and its current state
    is not given (never recorded, or withdrawn): nothing was changed."""

    code = "consent_required"
    reason = "consent_required"

    def __init__(self, field: str, purpose: str, row_id: str | None) -> None:
        self.field = field
        self.purpose = purpose
        self.row_id = row_id
        self.fields = (field,)
        how = (f"record it first (POST /customers/{row_id}/consents with purpose `{purpose}`, granted true) "
               f"or give it with the write as `{field}_consent`" if row_id is not None else
               f"give it with the create as `{field}_consent` (channel, and at_ms when not now)")
        self.message = (f"`{field}` is sensitive personal information (PIPL Art. 28-29): writing it needs the "
                        f"person's separate consent for purpose `{purpose}`, and this customer has none in force; "
                        f"{how}")
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        out: dict[str, object] = {"field": self.field, "purpose": self.purpose}
        if self.row_id is not None:
            out["row_id"] = self.row_id
        return out


class ConsentTimeError(Exception):
    """A consent dated in the future: the latest record decides the state, so a
    future one would outvote every later change of mind."""

    code = "consent_in_future"
    reason = "consent_in_future"

    def __init__(self, at_ms: int, now_ms: int, max_ahead_ms: int, path: str = "$.at_ms") -> None:
        self.at_ms = at_ms
        self.now_ms = now_ms
        self.max_ahead_ms = max_ahead_ms
        self.path = path
        self.message = (f"A consent is recorded when the person gave or withdrew it: `{path}` is "
                        f"{at_ms - now_ms} ms in this node's future (at most {max_ahead_ms} ms allowed); "
                        f"leave it out for now")
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"at": self.path, "now_ms": self.now_ms, "max_ahead_ms": self.max_ahead_ms}


class CustomerDeletedError(Exception):
    """The customer was deleted or erased: no consent can be recorded for it."""

    code = "customer_deleted"
    reason = "customer_deleted"

    def __init__(self, row_id: str) -> None:
        self.row_id = row_id
        self.message = f"Customer `{row_id}` was deleted; its consents are kept, and no new one can be recorded"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"collection": "customers", "row_id": self.row_id}


# ---------------------------------------------------------------- state


def live(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records not deleted, oldest first (by ``at_ms``, then row id)."""
    return sorted((r for r in records if not r.get("deleted")), key=_order)


def _order(record: Mapping[str, Any]) -> tuple[int, str]:
    return (record.get("at_ms") or 0, str(record["row_id"]))


def current(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """purpose -> the record in force: the latest live one by (``at_ms``, row id)."""
    out: dict[str, Mapping[str, Any]] = {}
    for record in live(records):
        if record.get("purpose") is not None:
            out[record["purpose"]] = record  # later ones overwrite earlier ones
    return out


def granted(records: Iterable[Mapping[str, Any]], purpose: str) -> bool:
    """Whether the person's consent for ``purpose`` is in force."""
    record = current(records).get(purpose)
    return record is not None and bool(record.get("granted"))


def record_row(row_id: str, customer_id: str, *, purpose: str, granted: bool, channel: str, at_ms: int,
               recorded_by: str, site: str) -> dict[str, Any]:
    """A new consent record, as a materialised row."""
    return {"row_id": row_id, "customer_id": customer_id, "purpose": purpose, "granted": granted,
            "channel": channel, "at_ms": at_ms, "recorded_by": recorded_by, "site": site, "deleted": False}


def record_edits(record: Mapping[str, Any]) -> list[Edit]:
    """The edits that write a new consent record (every field of `RECORD_FIELDS`)."""
    return [Edit(CONSENTS, record["row_id"], name, "set", record[name]) for name in RECORD_FIELDS]


def suppression_edits(customer: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
                      new: Mapping[str, Any]) -> list[Edit]:
    """What recording ``new`` changes in ``customer``'s suppression set, given the
    records held before: nothing unless it is a marketing consent that becomes the
    current one; then a withdrawal adds ``refused_marketing`` and a grant removes it
    (if there). Other reasons are never touched."""
    if new["purpose"] != MARKETING or current([*records, new]).get(MARKETING) is not new:
        return []
    row_id = customer["row_id"]
    if not new["granted"]:
        return [Edit("customers", row_id, "suppression", "add", REFUSED_MARKETING)]
    if REFUSED_MARKETING in (customer.get("suppression") or ()):
        return [Edit("customers", row_id, "suppression", "remove", REFUSED_MARKETING)]
    return []


def consent_time(at_ms: int | Any, *, now_ms: int, max_ahead_ms: int, path: str = "$.at_ms") -> int:
    """``at_ms`` as given (``msgspec.UNSET``: now); raises `ConsentTimeError` when
    it lies more than ``max_ahead_ms`` ahead of this node's clock."""
    if at_ms is msgspec.UNSET:
        return now_ms
    if at_ms > now_ms + max_ahead_ms:
        raise ConsentTimeError(at_ms, now_ms, max_ahead_ms, path)
    return int(at_ms)


class RowSource(Protocol):
    """What reading consents needs of the store (`sync.store.ReplicaStore`)."""

    async def find_rows(self, collection: str, *, limit: int = 10_000, after: str = "", **equals: Any) -> list[dict[str, Any]]: ...


async def consent_records(store: RowSource, customer_id: str) -> list[dict[str, Any]]:
    """Every consent record of the customer held here (deleted ones too), by row id."""
    out: list[dict[str, Any]] = []
    after = ""
    while rows := await store.find_rows(CONSENTS, customer_id=customer_id, limit=1_000, after=after):
        out += rows
        after = rows[-1]["row_id"]
    return out


# ---------------------------------------------------------------- who may


def check_record(policy: Policy, actor: Actor, purpose: str, row_id: str | None) -> None:
    """Raises `NotPermittedError` unless ``actor`` may record consents (its role
    writes every field of a record), and `FieldsNotWritableError` for a marketing
    consent when it may not change the customer's ``suppression`` that follows."""
    if actor.user is None:
        return
    role = actor.user.role
    if not set(RECORD_FIELDS) <= policy.writable_fields(role, CONSENTS):
        raise NotPermittedError("record consents", role, why="the policy does not let it write consent records")
    if purpose == MARKETING and "suppression" not in policy.writable_fields(role, "customers"):
        raise FieldsNotWritableError(role, ["suppression"], row_id)


def check_read(policy: Policy, actor: Actor) -> frozenset[str] | None:
    """The consent fields ``actor`` sees (None: all, the operator); raises
    `NotPermittedError` for a role that does not see what a consent is."""
    if actor.user is None:
        return None
    seen = policy.visible_fields(actor.user.role, CONSENTS)
    if not READ_FIELDS <= seen:
        raise NotPermittedError("read consents", actor.user.role, why="the policy does not let it see them")
    return seen


def id_number_needs_consent(body: Any) -> bool:
    """Whether a customer write body sets an ID number (clearing one needs no consent)."""
    return getattr(body, ID_NUMBER, msgspec.UNSET) not in (msgspec.UNSET, None)


def check_id_number(customer_id: str, records: Iterable[Mapping[str, Any]], body: Any, *, exists: bool) -> None:
    """Raises `ConsentRequiredError` when ``body`` sets an ID number and the
    customer's ID-number consent, with ``records`` (those held, and any the write
    itself records), is not in force."""
    if id_number_needs_consent(body) and not granted(records, ID_NUMBER):
        raise ConsentRequiredError(ID_NUMBER, ID_NUMBER, customer_id if exists else None)


def inline_id_number_consent(policy: Policy, actor: Actor, customer_id: str, body: Any, *, consent_id: str,
                             now_ms: int, max_ahead_ms: int, site: str, exists: bool) -> dict[str, Any] | None:
    """The consent record a customer write body gives for its ID number
    (``id_number_consent``), if any and if ``actor`` may record it; raises
    `NotPermittedError` or `ConsentTimeError`."""
    given = getattr(body, "id_number_consent", msgspec.UNSET)
    if given is msgspec.UNSET:
        return None
    check_record(policy, actor, ID_NUMBER, customer_id if exists else None)
    at_ms = consent_time(given.at_ms, now_ms=now_ms, max_ahead_ms=max_ahead_ms, path="$.id_number_consent.at_ms")
    return record_row(consent_id, customer_id, purpose=ID_NUMBER, granted=True, channel=given.channel, at_ms=at_ms,
                      recorded_by=actor.id, site=site)
