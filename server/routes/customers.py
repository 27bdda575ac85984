"""Customers: create, change and read the replicated (non-PII) fields."""

from __future__ import annotations

import os
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import JSONBody, Parameter

from server.errors import NotFoundError
from server.deps import NodeDep
from server.views import CustomerView, CustomerWrite, edits_from, to_view
from sync.ids import ROW_ID_PATTERN, new_ulid

RowIdParam = Annotated[str, Parameter(pattern=ROW_ID_PATTERN, description="customer id (ULID or UUID)")]


class CustomerController(Controller):
    path = "/customers"
    tags = ["customers"]

    @post("/", operation_id="CreateCustomer", name="customers:create", status_code=201)
    async def create(self, data: JSONBody[CustomerWrite], node: NodeDep) -> CustomerView:  # type: ignore[valid-type]
        """Create a customer with a new id and the given fields."""
        row_id = new_ulid(node.store.clock.now_ms(), os.urandom(10))
        await node.store.write_local(edits_from("customers", row_id, data))
        return await _card(node, row_id)

    @patch("/{row_id:str}", operation_id="UpdateCustomer", name="customers:update")
    async def update(self, row_id: RowIdParam, data: JSONBody[CustomerWrite], node: NodeDep) -> CustomerView:  # type: ignore[valid-type]
        """Change some fields of a customer: one stamp for the whole write."""
        await _card(node, row_id)
        await node.store.write_local(edits_from("customers", row_id, data))
        return await _card(node, row_id)

    @get("/{row_id:str}", operation_id="GetCustomer", name="customers:get")
    async def get(self, row_id: RowIdParam, node: NodeDep) -> CustomerView:  # type: ignore[valid-type]
        """A customer's replicated fields as this node holds them."""
        return await _card(node, row_id)


async def _card(node: Node, row_id: str) -> CustomerView:  # type: ignore[valid-type]
    row = await node.store.read_row("customers", row_id)
    if row is None:
        raise NotFoundError("customers", row_id)
    return to_view(CustomerView, row)
