"""Consent records and the access events of consent calls hold ids, codes and
times: a byte search of every node's consent rows and events finds none of the
personal information the deployment's customers were made with."""

from __future__ import annotations

import sqlite3

import msgspec

from server.pii_scan import needle_forms
from tests.access.conftest import AccessDeployment
from tests.consent.conftest import new_customer, record

PII = ("name", "phone", "second_contact", "email", "id_number", "birthday", "address", "employer", "position",
       "interests", "notes")


def test_no_personal_information_in_consent_rows_or_their_events(deployment: AccessDeployment) -> None:
    d = deployment
    customer = new_customer(d, settle=False)
    for purpose, granted in (("marketing", False), ("data_processing", True), ("marketing", True)):
        assert record(d, "hq", customer, {"purpose": purpose, "granted": granted, "channel": "sms"}).status_code == 201
    d.settle()
    values = [str(v) for c in d.customers.values() for k, v in c.body.items() if k in PII]
    needles = needle_forms(values)
    assert len(values) > 40
    rows_seen = 0
    for node in d.clients:
        db = sqlite3.connect(f"file:{d.configs[node].db_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT * FROM consents").fetchall()
        finally:
            db.close()
        rows_seen += len(rows)
        blob = repr(rows).encode() + b"".join(v for r in rows for v in r if isinstance(v, bytes))
        events = [e for e in d.events(node) if e.action in ("consent", "read_consents")]
        blob += msgspec.json.encode(events)
        assert [n for n in needles if n in blob] == [], node
    assert rows_seen > len(d.customers)
