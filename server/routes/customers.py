"""Customers: create, change, read, look up by phone or ID number, reveal a
masked field, erase, rotate keys.

Two kinds of caller (server/access.py): the **operator** (``Authorization:
Bearer <OUTPOST_ADMIN_TOKEN>``), the deployment's machine credential, has full
access as it always had; a **signed-in user** (an access token from
``/auth/sign-in``) gets what the access policy in force at this node gives their
role:

* a customer outside their row scope answers 404 exactly as one that does not
  exist;
* fields their role does not see are absent from the JSON (never null), masked
  ones are masked, the rest in full;
* a write or create naming a field the role may not change, or putting the row
  outside their scope, is a 403 naming the fields; nothing changes;
* lookups need a role that may look up by that number; matches outside the
  scope are left out;
* ``/reveal`` shows one masked field in full, for a purpose code, if the role
  may reveal it, within ``auth.reveals_per_day``;
* setting an ``id_number`` needs the person's separate consent for it
  (server/consents.py): 422 ``consent_required`` without one, nothing changed.

Erasure and key rotation are the operator's alone (a user gets 403): erasure is
a deployment-wide, irreversible operation done at HQ on a data subject's
request, not a field edit, and rotation is key maintenance.

PII arrives as plaintext JSON, is sealed at this node before anything is stored,
and is opened for the response; a visible field this node cannot open is null
and listed in ``unavailable``. Every response showing PII, every write, lookup,
reveal, erasure and rotation, and every refusal leaves one audit entry
(server/audit_log.py): ids and field names, never values. A write's entry names
the fields it changed and those its answer shows, and is committed with it.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import FromQuery, JSONBody, Parameter
from msgspec import Meta

from server.access import (
    CUSTOMERS,
    Actor,
    MaskedField,
    OutOfScopeError,
    ReadPurpose,
    RevealPurpose,
    admits,
    check_create,
    check_look_up,
    check_reveal,
    check_write,
    project_customer,
)
from server.auth import note_access, require_actor, require_operator
from server.consents import (
    check_id_number,
    consent_records,
    id_number_needs_consent,
    inline_id_number_consent,
    record_edits,
)
from server.deps import ActorDep, NodeDep
from server.errors import NotFoundError, WrongNodeError, problems
from crypto.plaintext import Plaintext
from server.key_authority import ErasureReport, rotate_customer_keys
from server import subject_export
from server.node import Node
from server.subject_export import CustomerExport
from server.keyring import OpenedRow
from server.views import CustomerView, CustomerWrite, apply_write, blank_row, edits_from, fields_written, pii_from
from sync.edits import Edit
from sync.ids import ROW_ID_PATTERN, RowId, new_ulid

RowIdParam = Annotated[str, Parameter(pattern=ROW_ID_PATTERN, description="customer id (ULID or UUID)")]
#: the customers API takes a user's access token or the operator's token
ACCESS_SECURITY = [{"AccessToken": []}, {"OperatorToken": []}]
OPERATOR_SECURITY = [{"OperatorToken": []}]


class LookupRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A phone or an ID number to look up; in the body, so it never reaches an access log."""

    field: Literal["phone", "id_number"]
    value: Annotated[str, Meta(min_length=1, max_length=32)]


class LookupResult(msgspec.Struct, kw_only=True):
    #: the matching customers the caller may see, each as `GetCustomer` shows it
    matches: list[CustomerView]  # type: ignore[valid-type]
    #: false when this node holds no blind-index key (it cannot look up)
    indexed: bool = True


class RevealRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One masked field to see in full, and why: a purpose code from a fixed list
    and, optionally, the id of the task or ticket it is for. No free text, so no
    personal information reaches the access events."""

    field: MaskedField
    purpose: RevealPurpose
    reference: RowId | None = None


class RevealedField(msgspec.Struct, kw_only=True):
    row_id: str
    field: str
    #: the field in full; null when empty, or when this node cannot open it (``unavailable``)
    value: str | None
    unavailable: bool = False
    purpose: str


class EraseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who asked for the erasure and on what ground, as codes, and the ticket it
    was asked in: kept in the audit entry of the erasure. No free text, so no
    personal information reaches the audit log."""

    requested_by: Requester
    basis: ErasureBasis
    reference: RowId | None = None


#: who asked: the person, their guardian, an authority, or the operation itself
Requester = Literal["data_subject", "guardian", "authority", "controller"]
#: PIPL Art. 47's grounds for deletion
ErasureBasis = Literal[
    "subject_request", "consent_withdrawn", "purpose_fulfilled", "retention_expired", "unlawful_processing",
    "service_ended",
]


class ExportRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who asked for the copy, and the ticket it was asked in (PIPL Art. 45)."""

    requested_by: Requester
    reference: RowId | None = None


class RotationDone(msgspec.Struct, kw_only=True):
    row_id: str
    rotated: bool


class CustomerController(Controller):
    path = "/customers"
    tags = ["customers"]
    guards = [require_actor]

    @post("/", operation_id="CreateCustomer",
          responses=problems(400, 401, 403, 409, 413, 422), name="customers:create", status_code=201,
          security=ACCESS_SECURITY, opt={"access": "create"})
    async def create(self, data: JSONBody[CustomerWrite], node: NodeDep, actor: ActorDep,  # type: ignore[valid-type]
                     request: Request) -> CustomerView:  # type: ignore[valid-type,type-arg]
        """Create a customer with a new id; PII fields are sealed here under the
        customer's new data keys (one per field class). Made at a site without a
        ``home_branch``, it is that site's customer. A user's role must write every
        field given, and the new customer must be inside their row scope (403).
        An ``id_number`` needs the person's separate consent (PIPL Art. 29), given
        as ``id_number_consent`` and recorded with the customer; without it the
        create is refused (422, ``consent_required``) and nothing is stored."""
        note_access(request, fields=fields_written(data))
        now_ms = node.store.clock.now_ms()
        row_id = new_ulid(now_ms, os.urandom(10))
        implied: dict[str, Any] = {}
        if data.home_branch is msgspec.UNSET and node.authority is None:  # made at a site: that site's customer
            implied["home_branch"] = node.config.node_id
        fields = check_create(node.policy, actor, row_id, data, implied)
        consent = _inline_consent(node, actor, row_id, data, now_ms, exists=False)
        check_id_number(row_id, [consent] if consent else [], data, exists=False)
        edits = edits_from("customers", row_id, data)
        if consent is not None:
            edits += record_edits(consent)
        edits += [Edit("customers", row_id, name, "set", value) for name, value in implied.items()]
        pii = pii_from(data)
        if pii:
            home = implied.get("home_branch", data.home_branch)
            row = {
                "home_branch": None if home is msgspec.UNSET else home,
                "partners": [] if data.partners_add is msgspec.UNSET else data.partners_add,
            }
            edits += await node.keyring.seal_edits(row_id, row, pii)
        blank = {**blank_row(CUSTOMERS, row_id), **implied}
        seen = project_customer(node.policy, actor, apply_write(blank, data),
                                _with_written(await node.keyring.open_customer(blank), pii))
        await node.store.write_local(edits, audit=node.audit.draft(
            actor, "create", row_id=row_id, fields=fields, shown=seen.shown, masked=seen.masked,
            reference=None if consent is None else consent["row_id"]))  # the ID-number consent written with it
        node.steward.trigger()  # wraps for its groups, its blind indexes
        return seen.view

    @patch("/{row_id:str}", operation_id="UpdateCustomer",
           responses=problems(400, 401, 403, 404, 409, 413, 422), name="customers:update", security=ACCESS_SECURITY,
           opt={"access": "write"})
    async def update(self, row_id: RowIdParam, data: JSONBody[CustomerWrite], node: NodeDep,  # type: ignore[valid-type]
                     actor: ActorDep, request: Request) -> CustomerView:  # type: ignore[valid-type,type-arg]
        """Change some fields of a customer: one stamp for the whole write. A user's
        role must write every field given, and the customer must stay inside their
        row scope (403, nothing changed). Setting ``id_number`` needs the person's
        consent for it in force (PIPL Art. 29): recorded before, or given with the
        write as ``id_number_consent``; otherwise 422 ``consent_required``, nothing
        changed."""
        note_access(request, fields=fields_written(data))
        row = await _row_in_scope(node, actor, row_id)
        fields = check_write(node.policy, actor, row, data)
        consent = _inline_consent(node, actor, row_id, data, node.store.clock.now_ms(), exists=True)
        if id_number_needs_consent(data):
            held = await consent_records(node.store, row_id)
            check_id_number(row_id, [*held, *([consent] if consent else [])], data, exists=True)
        edits = edits_from("customers", row_id, data)
        if consent is not None:
            edits += record_edits(consent)
        pii = pii_from(data) if not row["deleted"] else {}  # a deleted row holds no PII
        if pii:
            edits += await node.keyring.seal_edits(row_id, row, pii)
        seen = project_customer(node.policy, actor, apply_write(row, data),
                                _with_written(await node.keyring.open_customer(row), pii))
        await node.store.write_local(edits, audit=node.audit.draft(
            actor, "write", row_id=row_id, fields=fields, shown=seen.shown, masked=seen.masked,
            reference=None if consent is None else consent["row_id"]))  # the ID-number consent written with it
        node.steward.trigger()  # a new home or partner needs its wraps of the keys
        return seen.view

    @get("/{row_id:str}", operation_id="GetCustomer",
         responses=problems(400, 401, 403, 404), name="customers:get", security=ACCESS_SECURITY,
         opt={"access": "read"})
    async def get(self, row_id: RowIdParam, node: NodeDep, actor: ActorDep,  # type: ignore[valid-type]
                  purpose: FromQuery[ReadPurpose | None] = None) -> CustomerView:  # type: ignore[valid-type]
        """A customer as this node holds it and the caller may see it: fields the
        caller's role does not see are absent, masked ones masked, PII opened where
        this node has the keys. ``purpose``, a code, goes into the audit entry."""
        return await _card(node, actor, row_id, purpose)

    @post("/lookup", operation_id="LookupCustomer",
          responses=problems(400, 401, 403, 413, 422), name="customers:lookup", status_code=200,
          security=ACCESS_SECURITY, opt={"access": "lookup"})
    async def lookup(self, data: JSONBody[LookupRequest], node: NodeDep, actor: ActorDep,  # type: ignore[valid-type]
                     request: Request) -> LookupResult:  # type: ignore[type-arg]
        """Find customers by phone or ID number through the blind index (inbound
        screen pop, duplicate and do-not-call checks), if the caller's role may look
        up by that number; candidates that share the truncated index are opened and
        compared, so only true matches return, and only those the caller may see."""
        note_access(request, fields=(data.field,))
        check_look_up(node.policy, actor, data.field)
        found = node.keyring.lookup_index(data.field, data.value)
        if found is None:
            await node.audit.record(actor, "lookup", fields=(data.field,))
            return LookupResult(matches=[], indexed=False)
        index_field, index_value = found
        wanted = node.keyring.normalised(data.field, data.value)
        matches, shown, masked = [], set[str](), set[str]()
        for row in await node.store.find_rows("customers", limit=1_000, **{index_field: index_value}):
            if row["deleted"] or not admits(node.policy, actor, row):
                continue
            opened = await node.keyring.open_customer(row)
            value = opened.values.get(data.field)
            if value is not None and node.keyring.normalised(data.field, value.reveal()) == wanted:
                seen = project_customer(node.policy, actor, row, opened)
                shown.update(seen.shown)
                masked.update(seen.masked)
                matches.append(seen.view)
        await node.audit.record(actor, "lookup", rows=[m.row_id for m in matches], fields=(data.field,),
                                shown=sorted(shown), masked=sorted(masked))
        return LookupResult(matches=matches)

    @post("/{row_id:str}/reveal", operation_id="RevealCustomerField",
          responses=problems(400, 401, 403, 404, 409, 413, 422, 429), name="customers:reveal", status_code=200,
          security=ACCESS_SECURITY, opt={"access": "reveal"})
    async def reveal(self, row_id: RowIdParam, data: JSONBody[RevealRequest], node: NodeDep,  # type: ignore[valid-type]
                     actor: ActorDep, request: Request) -> RevealedField:  # type: ignore[type-arg]
        """Show one field the caller sees masked in full, for a stated purpose: only
        fields the policy lets the caller's role reveal, of customers in their
        scope, at most ``auth.reveals_per_day`` in any 24 hours (then 429 with
        ``Retry-After``). Every reveal and every refused one is recorded."""
        note_access(request, fields=(data.field,), purpose=data.purpose, reference=data.reference)
        row = await _row_in_scope(node, actor, row_id)
        check_reveal(node.policy, actor, data.field)
        await node.audit.reserve_reveal(actor, row_id, data.field, data.purpose, data.reference)
        opened = await node.keyring.open_customer(row)
        value = opened.values.get(data.field)
        return RevealedField(row_id=row_id, field=data.field, value=None if value is None else value.reveal(),
                             unavailable=data.field in opened.unavailable, purpose=data.purpose)

    @post("/{row_id:str}/erase", operation_id="EraseCustomer",
          responses=problems(400, 401, 403, 404, 409, 413), name="customers:erase", status_code=200,
          guards=[require_operator], security=OPERATOR_SECURITY, opt={"access": "erase"})
    async def erase(self, row_id: RowIdParam, data: JSONBody[EraseRequest], node: NodeDep,  # type: ignore[valid-type]
                    actor: ActorDep) -> ErasureReport:
        """Erase a customer (PIPL Art. 47), at HQ, with the operator's token: the row
        is tombstoned and its sealed fields shredded, its data keys are deleted at
        every node by sync, and the scope keys that wrapped them are rotated, so no
        copy of any node's files opens the old ciphertext."""
        if node.authority is None:
            raise WrongNodeError("erase", node.config.node_id, node.hq)
        return await node.authority.erase_customer(row_id, audit=node.audit.draft(
            actor, "erase", row_id=row_id, purpose=data.basis, reason=data.requested_by, reference=data.reference))

    @post("/{row_id:str}/export", operation_id="ExportCustomer",
          responses=problems(400, 401, 403, 404, 409, 413), name="customers:export", status_code=200,
          guards=[require_operator], security=OPERATOR_SECURITY, opt={"access": "export"})
    async def export(self, row_id: RowIdParam, data: JSONBody[ExportRequest], node: NodeDep,  # type: ignore[valid-type]
                     actor: ActorDep) -> CustomerExport:
        """Everything held about one customer, as JSON, for the person's right to
        know and to a copy (PIPL Art. 44-45), at HQ with the operator's token: the
        fields in full, tasks, results, consent records, and every audit entry
        naming them (who accessed their data, which fields, why) from every node's
        chain. The export itself is recorded."""
        if node.authority is None:
            raise WrongNodeError("export", node.config.node_id, node.hq)
        row = await _row_in_scope(node, actor, row_id)
        if row["deleted"]:
            raise NotFoundError(CUSTOMERS, row_id)
        exported, seen = await subject_export.export(node, actor, row, node.audit.now_ms())
        await node.audit.record(actor, "export", row_id=row_id, shown=seen.shown, masked=seen.masked,
                                purpose="subject_request", reason=data.requested_by, reference=data.reference,
                                counts={"tasks": len(exported.tasks), "results": len(exported.results),
                                        "consents": len(exported.consents), "accesses": len(exported.accesses)})
        return exported

    @post("/{row_id:str}/rotate-keys", operation_id="RotateCustomerKeys",
          responses=problems(400, 401, 403, 404, 409), name="customers:rotate-keys",
          status_code=200, guards=[require_operator], security=OPERATOR_SECURITY, opt={"access": "rotate_keys"})
    async def rotate_keys(self, row_id: RowIdParam, node: NodeDep, actor: ActorDep) -> RotationDone:  # type: ignore[valid-type]
        """Give the customer new data keys and re-seal its fields under them (the
        operator's token); the old keys are shredded at every node by sync."""
        await _row_in_scope(node, actor, row_id)
        entry = node.audit.draft(actor, "rotate_keys", row_id=row_id)
        rotated = await rotate_customer_keys(node.keyring, row_id, audit=entry)
        if not rotated:  # nothing written: the request is still recorded
            await node.audit.record(actor, "rotate_keys", row_id=row_id, counts={"rotated": 0})
        return RotationDone(row_id=row_id, rotated=rotated)


def _inline_consent(node: Node, actor: Actor, row_id: str, body: Any, now_ms: int, *,
                    exists: bool) -> dict[str, Any] | None:
    """The ID-number consent record a write body gives, if any (server/consents.py)."""
    return inline_id_number_consent(
        node.policy, actor, row_id, body, consent_id=new_ulid(now_ms, os.urandom(10)), now_ms=now_ms,
        max_ahead_ms=node.config.sync.max_drift_ms, site=node.config.node_id, exists=exists)


async def _row_in_scope(node: Node, actor: Actor, row_id: str) -> dict[str, Any]:
    """The customer row, if it exists here and ``actor`` may see it; both refusals
    give the same 404 body."""
    row = await node.store.read_row(CUSTOMERS, row_id)
    if row is None:
        raise NotFoundError(CUSTOMERS, row_id)
    if not admits(node.policy, actor, row):
        raise OutOfScopeError(CUSTOMERS, row_id)
    return row


async def _card(node: Node, actor: Actor, row_id: str,  # type: ignore[valid-type]
                purpose: str | None = None) -> CustomerView:
    """The customer as ``actor`` may see it; a response that shows PII is recorded."""
    row = await _row_in_scope(node, actor, row_id)
    seen = project_customer(node.policy, actor, row, await node.keyring.open_customer(row))
    if seen.shown or seen.masked:
        await node.audit.record(actor, "read", row_id=row_id, shown=seen.shown, masked=seen.masked, purpose=purpose)
    return seen.view


def _with_written(opened: OpenedRow, pii: dict[str, str | None]) -> OpenedRow:
    """``opened`` as it will be once the PII ``pii`` is written: what the answer
    to a write shows, known before the write commits with its audit entry."""
    for name, value in pii.items():
        opened.values[name] = None if value is None else Plaintext(value)
        opened.unavailable.pop(name, None)
    return opened
