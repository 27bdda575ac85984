"""A phone enrols at branch-a, syncs, and holds exactly its user's share: their
customers and tasks, only the fields the policy shows an account manager,
only the keys of the classes it reads, and no personal value in plaintext."""

from __future__ import annotations

import sqlite3

import pytest

from crypto.keystore import open_keystore
from mobile import Phone
from server.pii_scan import inflated, needle_forms
from sync.store.sqlite import wall_clock_ms
from tests.conftest import LoopThread
from tests.mobile.conftest import PASSPHRASE, PEOPLE, Site

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def max_phone(site: Site, aio: LoopThread) -> Phone:
    async def make() -> Phone:
        phone = await site.enroll("max")
        await phone.sync()
        return phone

    return aio.run(make(), timeout=60)


def _query(path: object, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_phone_holds_its_users_customers_and_tasks_only(site: Site, max_phone: Phone, aio: LoopThread) -> None:
    assert max_phone.node_id.startswith("branch-a.") and max_phone.user_id == site.users["max"]
    customers = aio.run(max_phone.customers())
    assert sorted(customers) == sorted([site.customers["max_1"], site.customers["max_2"]])
    db = max_phone.data_dir / "phone.db"
    tasks = {row[0] for row in _query(db, "SELECT row_id FROM tasks")}
    assert tasks == {site.tasks[k] for k in ("max_1_due", "max_1_urgent", "max_1_later", "max_2_due")}
    assert _query(db, "SELECT count(*) FROM users") == [(0,)], "no user row (no password hash) on a phone"
    # the branch holds every one of its customers, the phone only max's
    branch_db = site.branch.data_dir / "branch-a.db"
    assert len(_query(branch_db, "SELECT row_id FROM customers")) == len(PEOPLE)


def test_fields_the_policy_hides_are_absent_on_the_phone(site: Site, max_phone: Phone) -> None:
    row = site.customers["max_1"]
    db = max_phone.data_dir / "phone.db"
    branch_db = site.branch.data_dir / "branch-a.db"
    sql = f"SELECT partners, id_number_index, phone_index, name FROM customers WHERE row_id = '{row}'"
    (b_partners, b_id_index, b_phone_index, b_name), = _query(branch_db, sql)
    assert "partner-x" in str(b_partners), "the branch holds the customer's partners"
    (partners, id_index, phone_index, name), = _query(db, sql)
    assert partners in (None, "[]") and id_index is None, "an account manager sees neither"
    assert b_phone_index is not None and b_name is not None
    assert phone_index == b_phone_index and name == b_name, "sealed as the branch holds it"
    state = _query(db, f"SELECT _state FROM customers WHERE row_id = '{row}'")[0][0]
    assert b"partners" not in state and b"id_number_index" not in state, "absent, not null"


def test_the_phone_opens_its_customers_names_with_its_own_keys(site: Site, max_phone: Phone,
                                                                aio: LoopThread) -> None:
    card = aio.run(max_phone.card(site.customers["max_1"]))
    person = PEOPLE["max_1"]
    assert card.unavailable == {}
    assert {f: v.reveal() for f, v in card.pii.items()} == {f: v for f, v in person.items() if f != "id_number"}
    assert card.masked == {"id_number": "3****************4"}, "an account manager sees the ID number masked"
    assert card.fields["account_manager"] == site.users["max"] and card.fields["star_level"] == 5
    assert person["name"] not in repr(card)
    keystore = open_keystore(max_phone.data_dir / "phone.keystore", PASSPHRASE)
    held = {(k.group, k.field_class) for k in keystore.scope_keys()}
    assert held == {("branch-a", c) for c in ("contact", "identity", "address", "profile")}, \
        "the branch's own group only, the classes an account manager reads; no blind-index key"


def test_no_personal_value_in_plaintext_in_the_phones_files(site: Site, max_phone: Phone, aio: LoopThread) -> None:
    aio.run(max_phone.card(site.customers["max_1"]))
    needles = needle_forms(v for person in PEOPLE.values() for v in person.values())
    files = [p for p in max_phone.data_dir.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"phone.db", "phone.keystore", "phone.json"}
    for path in files:
        data = path.read_bytes()
        for blob in (data, *inflated(data)):
            found = [n for n in needles if n in blob]
            assert not found, f"{path.name} holds personal information in plaintext"


def test_inbox_is_ordered_by_due_time_and_priority_and_skips_suppressed(site: Site, max_phone: Phone,
                                                                        aio: LoopThread) -> None:
    inbox = aio.run(max_phone.inbox(wall_clock_ms()))
    assert [t.task_id for t in inbox] == [site.tasks["max_1_urgent"], site.tasks["max_1_due"]], \
        "due now only, the urgent first; max_2 is do-not-call"
    later = aio.run(max_phone.inbox(wall_clock_ms(), horizon_ms=72 * 3_600_000))
    assert site.tasks["max_1_later"] in [t.task_id for t in later]
