"""The person's copy (PIPL Art. 44-45): `POST /customers/{id}/export` at HQ gives
everything held about one customer (fields in full, tasks, results, consent
records, and who accessed their data) and nothing about anyone else; the export
is itself in the audit log, and only the operator at HQ may make one."""

from __future__ import annotations

import json
import os

from sync.edits import Edit
from sync.ids import new_ulid
from sync.store.sqlite import wall_clock_ms
from tests.access.conftest import ADMIN, AccessDeployment

PII = ("name", "phone", "second_contact", "email", "id_number", "birthday", "address", "employer", "position",
       "interests", "notes")


def _id() -> str:
    return new_ulid(wall_clock_ms(), os.urandom(10))


def _work_for(d: AccessDeployment, customer_id: str) -> tuple[list[str], list[str]]:
    """Two tasks and a result for the customer, written at HQ."""
    tasks, results = [_id(), _id()], [_id()]
    edits = [Edit("tasks", t, "customer_id", "set", customer_id) for t in tasks]
    edits += [Edit("tasks", t, "kind", "set", "care") for t in tasks]
    edits += [Edit("results", r, "customer_id", "set", customer_id) for r in results]
    edits += [Edit("results", r, "task_id", "set", tasks[0]) for r in results]
    edits += [Edit("results", r, "outcome", "set", "connected") for r in results]
    d.on("hq", d.node("hq").store.write_local(edits))
    return tasks, results


def test_the_export_holds_everything_about_the_customer_and_nothing_of_another(deployment: AccessDeployment) -> None:
    d = deployment
    mine, other = d.customers["b"], d.customers["a_other"]
    tasks, results = _work_for(d, mine.row_id)
    other_tasks, other_results = _work_for(d, other.row_id)
    reader = d.sign_in("hq-admin")
    assert d.clients["hq"].get(f"/customers/{mine.row_id}", params={"purpose": "complaint"},
                               headers=reader).status_code == 200
    last = d.last_event_id("hq")

    response = d.clients["hq"].post(f"/customers/{mine.row_id}/export", json={"requested_by": "data_subject"},
                                    headers=ADMIN)
    assert response.status_code == 200, response.text
    got = response.json()
    for field in PII:
        if field in mine.body:
            assert got["customer"][field] == mine.body[field], field
    assert sorted(t["row_id"] for t in got["tasks"]) == sorted(tasks)
    assert [r["row_id"] for r in got["results"]] == results and got["results"][0]["outcome"] == "connected"
    accessed = {(a["actor"], a["action"], a["purpose"]) for a in got["accesses"]}
    assert (d.user_id("hq-admin"), "read", "complaint") in accessed and ("operator", "create", None) in accessed
    assert all(mine.row_id in a["rows"] for a in got["accesses"])

    text = json.dumps(got, ensure_ascii=False)
    strangers = [other.row_id, *other_tasks, *other_results]
    strangers += [str(v) for k, v in other.body.items() if k in PII and str(v) not in text_of(mine.body)]
    assert [s for s in strangers if s in text] == []

    (entry,) = d.events("hq", after_id=last)
    assert (entry.action, entry.rows, entry.actor, entry.reason) == ("export", (mine.row_id,), "operator",
                                                                     "data_subject")
    assert set(entry.shown) == {f for f in PII if mine.body.get(f) is not None}
    assert entry.counts["tasks"] == 2 and entry.counts["results"] == 1


def text_of(body: dict[str, object]) -> str:
    return json.dumps(body, ensure_ascii=False)


def test_only_the_operator_exports_and_only_at_hq(deployment: AccessDeployment) -> None:
    d = deployment
    customer = d.customers["a_team"]
    as_user = d.clients["hq"].post(f"/customers/{customer.row_id}/export", json={"requested_by": "data_subject"},
                                   headers=d.sign_in("hq-admin"))
    assert as_user.status_code == 403 and customer.body["name"] not in as_user.text
    at_branch = d.clients["branch-a"].post(f"/customers/{customer.row_id}/export",
                                           json={"requested_by": "data_subject"}, headers=ADMIN)
    assert at_branch.status_code == 409 and at_branch.json()["code"] == "wrong_node"
    free_text = d.clients["hq"].post(f"/customers/{customer.row_id}/export",
                                     json={"requested_by": "data_subject", "note": "张三 asked"}, headers=ADMIN)
    assert free_text.status_code == 400 and "张三" not in free_text.text
