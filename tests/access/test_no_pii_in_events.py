"""The access events hold ids, names and codes: no personal information, not even
masked, whatever the calls were (reads, lookups by the number itself, reveals,
refusals). The nodes' files hold none in plaintext either."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from server.masking import mask_field
from server.pii_scan import needle_forms, scan
from tests.access.conftest import ADMIN, AccessDeployment


def test_no_pii_value_or_mask_in_the_audit_log(deployment: AccessDeployment) -> None:
    d = deployment
    customers = [d.customers[k] for k in ("a_team", "a_other", "b", "b_partner")]
    # calls of every kind that carry or return personal information, allowed and refused
    for username in ("agent", "supervisor", "account-manager", "partner-agent", "hq-admin", "auditor"):
        headers = d.sign_in(username)
        client = d.clients[d.site_of(username)]
        for c in customers:
            client.get(f"/customers/{c.row_id}", headers=headers)
            client.post(f"/customers/{c.row_id}/reveal", json={"field": "phone", "purpose": "inbound_call"},
                        headers=headers)
            # what is there already (other tests read these customers), allowed or refused
            client.patch(f"/customers/{c.row_id}", json={"name": c.body["name"], "phone": c.body["phone"]},
                         headers=headers)
            for field in ("phone", "id_number"):
                client.post("/customers/lookup", json={"field": field, "value": c.body[field]}, headers=headers)
    for node, client in d.clients.items():
        for c in customers:
            client.get(f"/customers/{c.row_id}", headers=ADMIN)

    values = [*(str(v) for c in d.customers.values() for k, v in c.body.items()
                         if k in ("name", "phone", "second_contact", "email", "id_number", "birthday", "address",
                                  "employer", "position", "interests", "notes"))]
    masks = {mask_field("customers", k, v) for c in d.customers.values() for k, v in c.body.items()
             if isinstance(v, str)} - {"***"}
    needles = [n.decode() for n in needle_forms(values)] + sorted(masks)
    assert len(values) > 40 and masks
    for node in d.clients:
        events = d.events(node)
        assert events, node
        text = msgspec.json.encode(events).decode()
        found = [n for n in needles if n in text]
        assert found == [], f"{node}'s access events hold personal information"
        db = sqlite3.connect(f"file:{d.configs[node].db_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT * FROM audit_entries").fetchall()
        finally:
            db.close()
        assert len(rows) >= len(events)  # HQ holds the chains it collected too
        assert [n for n in needles if n in repr(rows)] == []


def test_no_plaintext_pii_in_any_nodes_files(deployment: AccessDeployment) -> None:
    d = deployment
    files = [p for node in d.configs for p in Path(d.configs[node].data_path).iterdir() if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    values = [str(v) for c in d.customers.values() for k, v in c.body.items()
              if k in ("name", "phone", "second_contact", "email", "id_number", "address", "employer", "notes")]
    assert scan(files, values) == []
