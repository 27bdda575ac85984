"""The auditor's questions (PIPL Art. 51, 54): who accessed this person's data
and why; what did this user do in a period; are the chains whole; which breaks
were found. For the ``auditor`` role and the operator.

At HQ the answers cover every node's chain (collected by sync); at another node,
its own chain and those of the nodes below it. Asking is itself recorded.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Parameter

from server.access import NotPermittedError
from server.audit_verify import ChainReport, verify_chain
from server.audit_views import AlertView, EntryPage, entry_view
from server.auth import actor_of, require_actor
from server.deps import ActorDep, NodeDep
from server.errors import problems
from sync.audit import AuditEntry
from sync.ids import ROW_ID_PATTERN
from sync.store.sqlite import SqliteStore

AUDIT_SECURITY = [{"AccessToken": []}, {"OperatorToken": []}]
#: who may ask: the data-protection officer's role (and the operator)
AUDITOR_ROLES = frozenset({"auditor"})

RowIdParam = Annotated[str, Parameter(pattern=ROW_ID_PATTERN, description="customer id (ULID or UUID)")]
ActorParam = Annotated[str, Parameter(pattern=r"^[0-9A-Za-z_-]{1,64}$",
                                      description="a user id, `operator`, `system`, `anonymous` or a node id")]
# Litestar 2.25 does not enforce msgspec `Meta` constraints nested in a query
# parameter's annotation (it documents them, then passes any value on), so the
# constraints go in `Parameter`, which it does enforce
TimeParam = Annotated[int | None, Parameter(ge=0, le=(1 << 48) - 1)]
LimitParam = Annotated[int, Parameter(ge=1, le=1_000)]
#: where the next page starts: ``<at_ms>.<n>`` from the last page's ``next``
CursorParam = Annotated[str | None, Parameter(pattern=r"^[0-9]{1,15}\.[0-9]{1,18}$")]


class VerifyView(msgspec.Struct, kw_only=True):
    ok: bool
    chains: list[ChainReport]
    #: the first break of any chain, as `outpost audit verify` names it
    first_break: str | None = None


def _page(found: list[tuple[int, AuditEntry]], limit: int) -> EntryPage:
    nxt = f"{found[-1][1].at_ms}.{found[-1][0]}" if len(found) == limit else None
    return EntryPage(entries=[entry_view(e) for _, e in found], next=nxt)


def _after(cursor: str | None) -> tuple[int, int]:
    if cursor is None:
        return (0, 0)
    at, rowid = cursor.split(".")
    return int(at), int(rowid)


async def require_auditor(connection: ASGIConnection, handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: the operator, or a signed-in user whose role audits."""
    actor = await actor_of(connection)
    if not actor.is_operator and actor.role not in AUDITOR_ROLES:
        raise NotPermittedError(handler.opt.get("access") or "audit_query", actor.role,
                                why="only the auditor reads the audit log")


def first_break_line(reports: list[ChainReport]) -> str | None:
    """``<node>: entry <seq> <kind> (<detail>)`` of the earliest break, or None."""
    for report in reports:
        if report.breaks:
            b = report.breaks[0]
            return f"{b.node}: entry {b.seq} {b.kind} ({b.detail})"
    return None


async def verify_held(store: SqliteStore, node: str | None) -> list[ChainReport]:
    """Check one chain held here, or all of them."""
    nodes = [node] if node is not None else sorted(set(await store.audit_nodes()) | {store.node_id})
    return [await verify_chain(store, n) for n in nodes]


class AuditController(Controller):
    path = "/audit"
    tags = ["audit"]
    guards = [require_actor, require_auditor]

    @get("/customers/{row_id:str}", operation_id="AuditCustomer",
         responses=problems(400, 401, 403, 404), name="audit:customer", security=AUDIT_SECURITY,
         opt={"access": "audit_query"})
    async def customer(self, row_id: RowIdParam, node: NodeDep, actor: ActorDep, since_ms: TimeParam = None,  # type: ignore[valid-type]
                       until_ms: TimeParam = None, after: CursorParam = None, limit: LimitParam = 200) -> EntryPage:
        """Who accessed this customer's data, when, which fields, and why: every
        entry naming the customer, from every chain held here, oldest first."""
        found = await node.store.audit_entries(row_id=row_id, since_ms=since_ms, until_ms=until_ms,
                                               after=_after(after), limit=limit)
        await node.audit.record(actor, "audit_query", row_id=row_id, collection="audit", counts={"entries": len(found)})
        return _page(found, limit)

    @get("/actors/{actor_id:str}", operation_id="AuditActor",
         responses=problems(400, 401, 403, 404), name="audit:actor", security=AUDIT_SECURITY,
         opt={"access": "audit_query"})
    async def actor(self, actor_id: ActorParam, node: NodeDep, actor: ActorDep, since_ms: TimeParam = None,  # type: ignore[valid-type]
                    until_ms: TimeParam = None, after: CursorParam = None, limit: LimitParam = 200) -> EntryPage:
        """What this user (or the operator, or a node) did in [``since_ms``,
        ``until_ms``), at every node whose chain is held here, oldest first."""
        found = await node.store.audit_entries(actor=actor_id, since_ms=since_ms, until_ms=until_ms,
                                               after=_after(after), limit=limit)
        await node.audit.record(actor, "audit_query", collection="audit", reference=actor_id,
                                counts={"entries": len(found)})
        return _page(found, limit)

    @get("/verify", operation_id="AuditVerify",
         responses=problems(400, 401, 403), name="audit:verify", security=AUDIT_SECURITY,
         opt={"access": "audit_verify"})
    async def verify(self, node: NodeDep, actor: ActorDep,  # type: ignore[valid-type]
                     chain: Annotated[str | None, Parameter(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")] = None,
                     ) -> VerifyView:
        """Check one node's chain (``chain``) or every chain held here, whole:
        hashes, links, and signed checkpoints against the registry's keys."""
        reports = await verify_held(node.store, chain)
        line = first_break_line(reports)
        await node.audit.record(actor, "audit_verify", collection="audit", peer=chain,
                                counts={"chains": len(reports), "breaks": sum(len(r.breaks) for r in reports)})
        return VerifyView(ok=line is None, chains=reports, first_break=line)

    @get("/alerts", operation_id="AuditAlerts",
         responses=problems(401, 403), name="audit:alerts", security=AUDIT_SECURITY,
         opt={"access": "audit_query"})
    async def alerts(self, node: NodeDep, actor: ActorDep) -> list[AlertView]:  # type: ignore[valid-type]
        """Breaks found in the chains collected here (a gap, an edited, removed or
        reordered entry, a bad signature, a node's own report), newest first."""
        found = await node.store.audit_alerts()
        await node.audit.record(actor, "audit_query", collection="audit", counts={"alerts": len(found)})
        return [AlertView(**a) for a in found]
