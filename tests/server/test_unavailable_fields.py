"""A sealed field that does not open is `unavailable`, never an error.

Real `outpost serve` processes (HQ, branch-a, partner-x; the two below HQ sync
only when a test asks). A customer's sealed field is damaged directly in a
node's SQLite file, the way the store keeps it: the field's column, and its entry
in the row's ``_state`` msgpack doc (``{field: [canonical value, hlc, origin,
seq, src]}``). The API must still answer 200 with the field listed in
``unavailable`` and the other fields opened; the reason code goes to the node's
log, the value to no log; sync goes on. A node that holds no key for a field's
class (partner-x and the identity class) answers the same way, reason
``no_key``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from server.demo import DEMO_ID_CONSENT, demo_person
from server.keyring import data_key_row_id
from server.node_process import NodeProcess
from tests.conftest import LoopThread, enrolled_nodes

pytestmark = pytest.mark.system

SEALED_FIELDS = ("name", "phone", "id_number", "address", "email")


@dataclass
class Nodes:
    hq: NodeProcess
    branch: NodeProcess
    partner: NodeProcess
    #: customer id -> the PII it was created with (as edited since)
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    #: every PII value any customer of the module ever had
    values: list[str] = field(default_factory=list)

    async def create(self, *, home: str = "branch-a", partners: tuple[str, ...] = ("partner-x",)) -> str:
        person = demo_person(100 + len(self.people))
        card = await self.hq.call(
            "POST", "/customers", json={"home_branch": home, "partners_add": list(partners), **person,
                                        **DEMO_ID_CONSENT}
        )
        self.people[card["row_id"]] = person
        self.values += person.values()
        return str(card["row_id"])

    async def sync(self) -> None:
        for _ in range(2):
            for node in (self.branch, self.partner):
                report = await node.sync_now()
                assert isinstance(report, dict)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Nodes]:
    async def first_sync(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        await Nodes(hq, below["branch-a"], below["partner-x"]).sync()

    with enrolled_nodes(aio, tmp_path_factory.mktemp("unavailable"), ("branch-a", "partner-x"), first_sync) as (
            hq, below):
        yield Nodes(hq, below["branch-a"], below["partner-x"])


# ---------------------------------------------------------------- helpers


def db_path(node: NodeProcess) -> str:
    return str(node.data_dir / f"{node.site}.db")


def sealed_value(node: NodeProcess, customer: str, name: str) -> bytes:
    conn = sqlite3.connect(f"file:{db_path(node)}?mode=ro", uri=True, timeout=10)
    try:
        (value,) = conn.execute(f"SELECT {name} FROM customers WHERE row_id = ?", (customer,)).fetchone()
    finally:
        conn.close()
    assert isinstance(value, bytes)
    return value


def tamper(node: NodeProcess, customer: str, name: str, change: Callable[[bytes], bytes]) -> None:
    """Replace the sealed value of one field in the node's database file, in its
    column and in the row's ``_state`` doc, as a disk fault or an attacker would."""
    conn = sqlite3.connect(db_path(node), timeout=10)
    try:
        with conn:
            sealed, state = conn.execute(
                f"SELECT {name}, _state FROM customers WHERE row_id = ?", (customer,)
            ).fetchone()
            doc = msgspec.msgpack.decode(state)
            assert msgspec.msgpack.decode(doc[name][0]) == sealed, "the column and the merge state agree"
            bad = change(sealed)
            assert bad != sealed
            doc[name][0] = msgspec.msgpack.encode(bad)
            conn.execute(
                f"UPDATE customers SET {name} = ?, _state = ? WHERE row_id = ?",
                (bad, msgspec.msgpack.encode(doc), customer),
            )
    finally:
        conn.close()


def tamper_key_record(node: NodeProcess, row_id: str) -> int:
    """Flip a byte of every blob of one ``keys`` row (wherever the table keeps them),
    and of the same bytes in its ``_state``; returns how many blobs."""
    conn = sqlite3.connect(db_path(node), timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        with conn:
            row = conn.execute("SELECT * FROM keys WHERE row_id = ?", (row_id,)).fetchone()
            assert row is not None, f"{node.site} holds no key record {row_id}"
            state: bytes = row["_state"]
            changed = {}
            for column in row.keys():
                value = row[column]
                if column == "_state" or not isinstance(value, bytes):
                    continue
                bad = bytearray(value)
                bad[len(bad) // 2] ^= 0x40
                assert state.count(value) == 1
                state = state.replace(value, bytes(bad))
                changed[column] = bytes(bad)
            sets = ", ".join(f"{c} = ?" for c in (*changed, "_state"))
            conn.execute(f"UPDATE keys SET {sets} WHERE row_id = ?", (*changed.values(), state, row_id))
    finally:
        conn.close()
    return len(changed)


def flip(index: int) -> Callable[[bytes], bytes]:
    def change(sealed: bytes) -> bytes:
        out = bytearray(sealed)
        out[index] ^= 0x01
        return bytes(out)

    return change


async def card(node: NodeProcess, customer: str) -> dict[str, Any]:
    response = await node.client.get(f"/customers/{customer}")
    assert response.status_code == 200, (response.status_code, response.text[:500])
    body = response.json()
    assert isinstance(body, dict)
    return body


def unavailable_lines(node: NodeProcess, customer: str) -> list[str]:
    text = node.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if "pii.unavailable" in line and f"row_id={customer}" in line]


def needles(values: list[str]) -> set[str]:
    """Each value, and its digits when it has six or more (phones and ID numbers)."""
    out = set(values)
    for v in values:
        digits = re.sub(r"\D", "", v)
        if len(digits) >= 6:
            out.add(digits)
    return out


def assert_logs_hold_no_value(nodes: Nodes) -> None:
    for node in (nodes.hq, nodes.branch, nodes.partner):
        text = node.log_path.read_text(errors="replace")
        leaked = [v for v in needles(nodes.values) if v in text]
        assert not leaked, f"{node.site}'s log holds {len(leaked)} PII value(s)"


# ---------------------------------------------------------------- damaged ciphertext


DAMAGE = {
    # case: (field, change to the sealed value, reason code logged)
    "tag": ("name", lambda s: flip(len(s) - 1)(s), "tag"),
    "ciphertext": ("phone", flip(20), "tag"),
    "nonce": ("email", flip(8), "tag"),
    "format-byte": ("id_number", flip(0), "format"),
    "key-version": ("address", flip(4), "no_key"),  # names data-key version 0: no such key
    "truncated": ("name", lambda s: s[:20], "format"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_field_is_unavailable_and_the_rest_opens(nodes: Nodes, aio: LoopThread, case: str) -> None:
    name, change, reason = DAMAGE[case]

    async def prepare() -> str:
        customer = await nodes.create()
        await nodes.sync()
        assert (await card(nodes.branch, customer))["unavailable"] == []
        return customer

    customer = aio.run(prepare(), timeout=60)
    tamper(nodes.branch, customer, name, change)
    body = aio.run(card(nodes.branch, customer), timeout=30)
    assert body[name] is None and body["unavailable"] == [name], body["unavailable"]
    person = nodes.people[customer]
    assert {f: body[f] for f in SEALED_FIELDS if f != name} == {f: v for f, v in person.items() if f != name}
    lines = unavailable_lines(nodes.branch, customer)
    assert lines and all(f"fields={name}" in line and f"reasons={reason}" in line for line in lines), lines
    assert_logs_hold_no_value(nodes)


def test_a_ciphertext_moved_from_another_customer_does_not_open(nodes: Nodes, aio: LoopThread) -> None:
    async def prepare() -> tuple[str, str]:
        victim, other = await nodes.create(), await nodes.create()
        await nodes.sync()
        return victim, other

    victim, other = aio.run(prepare(), timeout=60)
    theirs = sealed_value(nodes.branch, other, "name")
    tamper(nodes.branch, victim, "name", lambda _: theirs)
    body = aio.run(card(nodes.branch, victim), timeout=30)
    assert body["name"] is None and body["unavailable"] == ["name"], "another customer's name shown as this one's"
    assert body["phone"] == nodes.people[victim]["phone"]
    assert any("reasons=tag" in line for line in unavailable_lines(nodes.branch, victim))


@pytest.mark.parametrize("where", ["row", "record"])
def test_a_damaged_data_key_leaves_its_class_unavailable(nodes: Nodes, aio: LoopThread, where: str) -> None:
    """The home group's wrap travels in the customer row (branch-a), a partner's
    as a ``data_key`` record (partner-x): either one damaged closes its class only."""
    async def prepare() -> str:
        customer = await nodes.create()
        await nodes.sync()
        return customer

    customer = aio.run(prepare(), timeout=60)  # not read below HQ yet: no key of it is cached there
    if where == "row":
        node = nodes.branch
        tamper(node, customer, "contact_key", flip(-5))
    else:
        node = nodes.partner
        assert tamper_key_record(node, data_key_row_id(customer, "contact", 1, "partner-x")) >= 1
    body = aio.run(card(node, customer), timeout=30)
    person = nodes.people[customer]
    if where == "row":
        assert body["unavailable"] == ["email", "name", "phone"], body["unavailable"]  # the contact class
        assert (body["id_number"], body["address"]) == (person["id_number"], person["address"])
    else:  # partner-x holds the name and phone of the contact class, and no other PII at all
        assert body["unavailable"] == ["name", "phone"], body["unavailable"]
    assert any("reasons=no_key" in line for line in unavailable_lines(node, customer))


def test_sync_goes_on_after_damage_and_a_new_write_repairs_the_field(nodes: Nodes, aio: LoopThread) -> None:
    async def prepare() -> str:
        customer = await nodes.create()
        await nodes.sync()
        return customer

    customer = aio.run(prepare(), timeout=60)
    tamper(nodes.branch, customer, "phone", flip(25))

    async def later() -> None:
        assert (await card(nodes.branch, customer))["unavailable"] == ["phone"]
        fresh = await nodes.create()
        new_phone = "+86 139-0000-4242"
        nodes.people[customer]["phone"] = new_phone
        nodes.values.append(new_phone)
        await nodes.hq.call("PATCH", f"/customers/{customer}", json={"phone": new_phone})
        report = await nodes.branch.sync_now()
        assert report["pulled"] >= 2, report
        await nodes.sync()
        for node in (nodes.branch, nodes.hq):
            for c in (customer, fresh):
                body = await card(node, c)
                assert body["unavailable"] == [] and body["phone"] == nodes.people[c]["phone"], node.site

    aio.run(later(), timeout=60)
    assert_logs_hold_no_value(nodes)


def test_damage_at_hq_travels_as_unavailable_and_never_stops_a_sync(nodes: Nodes, aio: LoopThread) -> None:
    customer = aio.run(nodes.create(), timeout=30)  # the branch and the partner have not pulled it yet
    tamper(nodes.hq, customer, "name", flip(30))

    async def check() -> None:
        assert (await card(nodes.hq, customer))["unavailable"] == ["name"]
        for node in (nodes.branch, nodes.partner):
            report = await node.sync_now()
            assert report["pulled"] >= 1, (node.site, report)
        body = await card(nodes.branch, customer)
        assert body["unavailable"] == ["name"] and body["phone"] == nodes.people[customer]["phone"]
        body = await card(nodes.partner, customer)
        assert body["name"] is None and body["phone"] == nodes.people[customer]["phone"]
        assert body["unavailable"] == ["name"]

    aio.run(check(), timeout=60)
    for node in (nodes.hq, nodes.branch):
        assert any("fields=name" in line and "reasons=tag" in line for line in unavailable_lines(node, customer)), node.site
    assert_logs_hold_no_value(nodes)


# ---------------------------------------------------------------- absent here


def test_fields_the_partner_policy_hides_are_absent_there_not_unavailable(nodes: Nodes, aio: LoopThread) -> None:
    """partner-x's roles see names and phones (masked), nothing else personal: HQ
    sends it no other PII field at all, so there is nothing to open or to damage."""
    async def check() -> str:
        customer = await nodes.create()
        await nodes.sync()
        person = nodes.people[customer]
        body = await card(nodes.partner, customer)
        assert (body["name"], body["phone"]) == (person["name"], person["phone"])
        assert body["email"] is None and body["id_number"] is None and body["address"] is None
        assert body["unavailable"] == []
        full = await card(nodes.branch, customer)
        assert full["unavailable"] == [] and full["id_number"] == person["id_number"]
        return customer

    customer = aio.run(check(), timeout=60)
    conn = sqlite3.connect(f"file:{db_path(nodes.partner)}?mode=ro", uri=True, timeout=10)
    try:
        (state,) = conn.execute("SELECT _state FROM customers WHERE row_id = ?", (customer,)).fetchone()
        columns = conn.execute("SELECT email, id_number, address, identity_key FROM customers WHERE row_id = ?",
                               (customer,)).fetchone()
    finally:
        conn.close()
    held = set(msgspec.msgpack.decode(state))
    assert {"name", "phone", "partners"} <= held
    assert not held & {"email", "id_number", "birthday", "address", "notes", "phone_index", "identity_key",
                       "home_branch", "assigned_agent"}, held
    assert columns == (None, None, None, None)
    assert_logs_hold_no_value(nodes)
