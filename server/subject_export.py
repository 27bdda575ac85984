"""Everything held about one customer, for the person's right to know and to a
copy (PIPL Art. 44-45): the customer's fields opened in full, their tasks,
results and consent records, and every audit entry that names them (who
accessed their data, when, which fields, and why) from every chain held here.

Done at HQ, which holds every row and every node's audit chain. No web
framework here: the route in server/routes/customers.py calls `export`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from server.access import Actor, project_customer
from server.node import Node
from server.audit_views import EntryView, entry_view
from server.views import CustomerView
from sync.schema import COLLECTIONS

#: rows of one kind exported for one customer, at most
_MAX_ROWS = 100_000


class CustomerExport(msgspec.Struct, kw_only=True):
    customer_id: str
    exported_at_ms: int
    #: the node that made the export
    node: str
    customer: CustomerView  # type: ignore[valid-type]
    #: every field but the sealed and secret ones (a result's notes are sealed)
    tasks: list[dict[str, Any]]
    results: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    #: the audit entries naming the customer, oldest first, from every chain held here
    accesses: list[EntryView]


def _plain(row: dict[str, Any], collection: str) -> dict[str, Any]:
    spec = COLLECTIONS[collection]
    return {k: v for k, v in row.items() if k == "row_id" or (k in spec.fields and not spec.fields[k].secret)}


async def export(node: Node, actor: Actor, row: dict[str, Any], now_ms: int) -> tuple[CustomerExport, Any]:
    """The export of ``row`` (the caller has checked it may be exported), and the
    projection that says which fields it shows (for the audit entry)."""
    customer_id = row["row_id"]
    seen = project_customer(node.policy, actor, row, await node.keyring.open_customer(row))
    related: dict[str, list[dict[str, Any]]] = {}
    for collection in ("tasks", "results", "consents"):
        if collection not in COLLECTIONS:
            related[collection] = []
            continue
        rows = await node.store.find_rows(collection, customer_id=customer_id, limit=_MAX_ROWS)
        related[collection] = [_plain(r, collection) for r in rows if not r.get("deleted")]
    accesses: list[EntryView] = []
    after = (0, 0)
    while True:
        page = await node.store.audit_entries(row_id=customer_id, after=after, limit=1_000)
        accesses += [entry_view(e) for _, e in page]
        if len(page) < 1_000 or len(accesses) >= _MAX_ROWS:
            break
        after = (page[-1][1].at_ms, page[-1][0])
    return CustomerExport(customer_id=customer_id, exported_at_ms=now_ms, node=node.config.node_id,
                          customer=seen.view, tasks=related["tasks"], results=related["results"],
                          consents=related["consents"], accesses=accesses), seen
