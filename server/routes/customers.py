"""Customers: create, change, read, look up by phone or ID number, erase.

PII arrives as plaintext JSON, is sealed at this node before anything is stored,
and is opened for the response; a field this node cannot open is listed in
``unavailable``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, get, patch, post
from litestar.params import JSONBody, Parameter
from msgspec import Meta

from server.deps import NodeDep
from server.errors import NotFoundError, WrongNodeError
from server.key_authority import ErasureReport, rotate_customer_keys
from server.node import Node
from server.views import CustomerView, CustomerWrite, edits_from, pii_from, to_view
from sync.edits import Edit
from sync.ids import ROW_ID_PATTERN, new_ulid

RowIdParam = Annotated[str, Parameter(pattern=ROW_ID_PATTERN, description="customer id (ULID or UUID)")]


class LookupRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A phone or an ID number to look up; in the body, so it never reaches an access log."""

    field: Literal["phone", "id_number"]
    value: Annotated[str, Meta(min_length=1, max_length=32)]


class LookupResult(msgspec.Struct, kw_only=True):
    matches: list[CustomerView]  # type: ignore[valid-type]
    #: false when this node holds no blind-index key (it cannot look up)
    indexed: bool = True


class EraseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Why the customer's data is erased (kept in the log with the request)."""

    reason: Annotated[str, Meta(min_length=1, max_length=200)]


class RotationDone(msgspec.Struct, kw_only=True):
    row_id: str
    rotated: bool


class CustomerController(Controller):
    path = "/customers"
    tags = ["customers"]

    @post("/", operation_id="CreateCustomer", name="customers:create", status_code=201)
    async def create(self, data: JSONBody[CustomerWrite], node: NodeDep) -> CustomerView:  # type: ignore[valid-type]
        """Create a customer with a new id; PII fields are sealed here under the
        customer's new data keys (one per field class)."""
        row_id = new_ulid(node.store.clock.now_ms(), os.urandom(10))
        edits = edits_from("customers", row_id, data)
        home = data.home_branch
        if home is msgspec.UNSET and node.authority is None:  # made at a site: that site's customer
            home = node.config.node_id
            edits.append(Edit("customers", row_id, "home_branch", "set", home))
        pii = pii_from(data)
        if pii:
            row = {
                "home_branch": None if home is msgspec.UNSET else home,
                "partners": [] if data.partners_add is msgspec.UNSET else data.partners_add,
            }
            edits += await node.keyring.seal_edits(row_id, row, pii)
        await node.store.write_local(edits)
        return await _card(node, row_id)

    @patch("/{row_id:str}", operation_id="UpdateCustomer", name="customers:update")
    async def update(self, row_id: RowIdParam, data: JSONBody[CustomerWrite], node: NodeDep) -> CustomerView:  # type: ignore[valid-type]
        """Change some fields of a customer: one stamp for the whole write."""
        row = await _row(node, row_id)
        edits = edits_from("customers", row_id, data)
        pii = pii_from(data)
        if pii and not row["deleted"]:  # a deleted row holds no PII
            edits += await node.keyring.seal_edits(row_id, row, pii)
        await node.store.write_local(edits)
        return await _card(node, row_id)

    @get("/{row_id:str}", operation_id="GetCustomer", name="customers:get")
    async def get(self, row_id: RowIdParam, node: NodeDep) -> CustomerView:  # type: ignore[valid-type]
        """A customer as this node holds it, PII opened where this node has the keys."""
        return await _card(node, row_id)

    @post("/lookup", operation_id="LookupCustomer", name="customers:lookup", status_code=200)
    async def lookup(self, data: JSONBody[LookupRequest], node: NodeDep) -> LookupResult:  # type: ignore[valid-type]
        """Find customers by phone or ID number through the blind index (inbound
        screen pop, duplicate and do-not-call checks); candidates that share the
        truncated index are opened and compared, so only true matches return."""
        found = node.keyring.lookup_index(data.field, data.value)
        if found is None:
            return LookupResult(matches=[], indexed=False)
        index_field, index_value = found
        wanted = node.keyring.normalised(data.field, data.value)
        matches = []
        for row in await node.store.find_rows("customers", limit=1_000, **{index_field: index_value}):
            if row["deleted"]:
                continue
            opened = await node.keyring.open_customer(row)
            value = opened.values.get(data.field)
            if value is not None and node.keyring.normalised(data.field, value.reveal()) == wanted:
                matches.append(to_view(CustomerView, row, opened))
        return LookupResult(matches=matches)

    @post("/{row_id:str}/erase", operation_id="EraseCustomer", name="customers:erase", status_code=200)
    async def erase(self, row_id: RowIdParam, data: JSONBody[EraseRequest], node: NodeDep) -> ErasureReport:  # type: ignore[valid-type]
        """Erase a customer (PIPL Art. 47), at HQ: the row is tombstoned and its
        sealed fields shredded, its data keys are deleted at every node by sync, and
        the scope keys that wrapped them are rotated, so no copy of any node's files
        opens the old ciphertext."""
        if node.authority is None:
            raise WrongNodeError("erase", node.config.node_id, node.hq)
        return await node.authority.erase_customer(row_id)

    @post("/{row_id:str}/rotate-keys", operation_id="RotateCustomerKeys", name="customers:rotate-keys",
          status_code=200)
    async def rotate_keys(self, row_id: RowIdParam, node: NodeDep) -> RotationDone:
        """Give the customer new data keys and re-seal its fields under them; the old
        keys are shredded at every node by sync."""
        await _row(node, row_id)
        return RotationDone(row_id=row_id, rotated=await rotate_customer_keys(node.keyring, row_id))


async def _row(node: Node, row_id: str) -> dict[str, Any]:
    row = await node.store.read_row("customers", row_id)
    if row is None:
        raise NotFoundError("customers", row_id)
    return row


async def _card(node: Node, row_id: str) -> CustomerView:  # type: ignore[valid-type]
    row = await node.store.read_row("customers", row_id)
    if row is None:
        raise NotFoundError("customers", row_id)
    return to_view(CustomerView, row, await node.keyring.open_customer(row))
