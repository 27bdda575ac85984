"""A customer's consents: record one given or withdrawn, read the history and
what is in force (PIPL Art. 14-15; Art. 28-29 for the ID number).

Same callers and rules as the customers API (server/routes/customers.py): the
operator, or a signed-in user under the access policy. A customer outside the
caller's scope answers 404 as one that does not exist; a role the policy does
not let record (or see) consents gets 403, nothing changed. Withdrawing the
marketing consent puts the customer on suppression (``refused_marketing``) in
the same write, so every node that holds the customer stops marketing to them;
giving it again takes only that reason off. The rules are server/consents.py.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from msgspec import Meta

from server.access import Actor
from server.auth import note_access, require_actor
from server.access import CUSTOMERS
from server.consents import (
    CustomerDeletedError,
    check_read,
    check_record,
    consent_records,
    consent_time,
    current,
    live,
    record_edits,
    record_row,
    suppression_edits,
)
from server.deps import ActorDep, NodeDep
from server.errors import problems
from server.node import Node
from server.routes.customers import ACCESS_SECURITY, RowIdParam, _row_in_scope
from server.views import ConsentView
from sync.ids import new_ulid
from sync.schema import ConsentChannel, ConsentPurpose, Suppression, TimeMs


class ConsentWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A consent the person gave or withdrew: codes and a time, no free text."""

    purpose: ConsentPurpose
    #: true: given; false: withdrawn
    granted: bool
    #: how the person said so
    channel: ConsentChannel
    #: when the person said so (Unix ms; now when left out; never in the future). UNSET as
    #: the default keeps the annotation, and so its OpenAPI schema, as it is (server/views.py)
    at_ms: TimeMs = msgspec.UNSET  # type: ignore[assignment]


class ConsentState(msgspec.Struct, kw_only=True):
    """The consent in force for one purpose: its latest record by (at_ms, row id)."""

    purpose: ConsentPurpose
    granted: bool
    at_ms: Annotated[int, Meta(ge=0)]
    #: the row id of the record that decides it
    record: str


class ConsentHistory(msgspec.Struct, kw_only=True):
    """A customer's consent records as this node holds them, and what is in force."""

    customer_id: str
    #: per purpose with a record: the state in force; a purpose never recorded is not given
    current: list[ConsentState]
    #: every record, oldest first (by at_ms, then row id), as the caller may see it
    records: list[ConsentView]  # type: ignore[valid-type]
    #: the customer's suppression reasons (absent when the caller's role does not see them)
    suppression: list[Suppression] = msgspec.UNSET  # type: ignore[assignment]


class ConsentController(Controller):
    path = "/customers"
    tags = ["consents"]
    guards = [require_actor]

    @post("/{row_id:str}/consents", operation_id="RecordConsent",
          responses=problems(400, 401, 403, 404, 409, 413, 422), name="consents:record", status_code=201,
          security=ACCESS_SECURITY, opt={"access": "consent"})
    async def record(self, row_id: RowIdParam, data: JSONBody[ConsentWrite], node: NodeDep,  # type: ignore[valid-type]
                     actor: ActorDep, request: Request) -> ConsentHistory:  # type: ignore[type-arg]
        """Record that the customer gave or withdrew a consent, with its channel and
        time (now when left out). Nothing is edited: the record joins the history,
        and the latest one by time decides what is in force. A withdrawn marketing
        consent puts ``refused_marketing`` on the customer's suppression in the same
        write; a marketing consent given again takes it off (and only it). Answers
        the customer's consents as `GetConsents` does."""
        note_access(request, purpose=data.purpose)
        return await record_consent(node, actor, row_id, purpose=data.purpose, granted=data.granted,
                                    channel=data.channel, at_ms=None if data.at_ms is msgspec.UNSET else data.at_ms)

    @get("/{row_id:str}/consents", operation_id="GetConsents",
         responses=problems(400, 401, 403, 404), name="consents:list", security=ACCESS_SECURITY,
         opt={"access": "read_consents"})
    async def history(self, row_id: RowIdParam, node: NodeDep, actor: ActorDep) -> ConsentHistory:  # type: ignore[valid-type]
        """The customer's consent records as this node holds them, oldest first, and
        per purpose the one in force (its latest record by time). A purpose without
        a record is not given. Fields of a record the caller's role does not see are
        absent."""
        customer = await _row_in_scope(node, actor, row_id)
        check_read(node.policy, actor)
        history = _history(node, actor, customer, await consent_records(node.store, row_id))
        await node.audit.record(actor, "read_consents", row_id=row_id)
        return history


async def record_consent(node: Node, actor: Actor, row_id: str, *, purpose: str, granted: bool, channel: str,
                         at_ms: int | None, reference: str | None = None) -> ConsentHistory:
    """Record one consent event of the customer ``row_id`` (and the suppression
    it changes) in one write with its audit entry; answers the history."""
    customer = await _row_in_scope(node, actor, row_id)
    check_record(node.policy, actor, purpose, row_id)
    if customer["deleted"]:
        raise CustomerDeletedError(row_id)
    now_ms = node.store.clock.now_ms()
    at = consent_time(msgspec.UNSET if at_ms is None else at_ms, now_ms=now_ms,
                      max_ahead_ms=node.config.sync.max_drift_ms)
    held = await consent_records(node.store, row_id)
    new = record_row(new_ulid(now_ms, os.urandom(10)), row_id, purpose=purpose, granted=granted,
                     channel=channel, at_ms=at, recorded_by=actor.id, site=node.config.node_id)
    suppression = suppression_edits(customer, held, new)
    await node.store.write_local(record_edits(new) + suppression, audit=node.audit.draft(
        actor, "consent", row_id=row_id, fields=("suppression",) if suppression else (), purpose=purpose,
        reference=reference or new["row_id"], reason="granted" if granted else "withdrawn"))
    after = await node.store.read_row(CUSTOMERS, row_id)
    return _history(node, actor, after or customer, await consent_records(node.store, row_id))


def _history(node: Node, actor: Actor, customer: dict[str, Any], records: list[dict[str, Any]]) -> ConsentHistory:
    """``records`` of ``customer`` (materialised) as ``actor`` may see them."""
    seen = check_read(node.policy, actor)
    shown: list[Any] = []
    for record in live(records):
        values = {k: v for k, v in record.items() if k != "row_id" and (seen is None or k in seen)}
        shown.append(ConsentView(row_id=record["row_id"], **values))
    states = [ConsentState(purpose=r["purpose"], granted=bool(r["granted"]), at_ms=r["at_ms"] or 0,
                           record=r["row_id"]) for r in current(records).values()]
    sees_suppression = actor.user is None or "suppression" in node.policy.visible_fields(actor.user.role, "customers")
    return ConsentHistory(customer_id=customer["row_id"], current=sorted(states, key=lambda s: s.purpose), records=shown,
                          suppression=list(customer["suppression"]) if sees_suppression else msgspec.UNSET)

