"""A refusal recorded where the customer cannot be changed (a partner) reaches
HQ as a result; the sweep puts the customer on ``refused_marketing`` there,
unless the person gave their marketing consent again after it."""

from __future__ import annotations

from server.work.cadence import refusal_edits
from sync.edits import Edit

C1, C2, C3, C4 = "01JD0QK2M6X3Z1V9A8B7C6D5A1", "01JD0QK2M6X3Z1V9A8B7C6D5A2", "01JD0QK2M6X3Z1V9A8B7C6D5A3", \
    "01JD0QK2M6X3Z1V9A8B7C6D5A4"


def customer(row_id: str, *suppression: str) -> dict[str, object]:
    return {"row_id": row_id, "suppression": list(suppression), "deleted": False}


def result(customer_id: str, outcome: str, at: int) -> dict[str, object]:
    return {"row_id": f"r-{customer_id}-{at}", "customer_id": customer_id, "outcome": outcome,
            "recorded_at_ms": at, "deleted": False}


def consent(customer_id: str, granted: bool, at: int) -> dict[str, object]:
    return {"row_id": f"c-{customer_id}-{at}", "customer_id": customer_id, "purpose": "marketing",
            "granted": granted, "at_ms": at, "deleted": False}


def test_a_refusal_without_a_later_consent_suppresses_and_only_once() -> None:
    customers = [customer(C1), customer(C2, "refused_marketing"), customer(C3), customer(C4)]
    results = [result(C1, "refused", 1_000), result(C2, "refused", 1_000), result(C3, "refused", 1_000),
               result(C3, "no_answer", 5_000), result(C4, "connected", 1_000)]
    consents = [consent(C3, True, 2_000), consent(C1, True, 500)]
    assert refusal_edits(customers, results, consents) == [
        Edit("customers", C1, "suppression", "add", "refused_marketing")]


def test_a_refusal_after_the_consent_given_again_suppresses_again() -> None:
    customers = [customer(C3)]
    results = [result(C3, "refused", 1_000), result(C3, "refused", 3_000)]
    assert refusal_edits(customers, results, [consent(C3, True, 2_000)]) == [
        Edit("customers", C3, "suppression", "add", "refused_marketing")]
    withdrawn_then_given = [consent(C3, False, 2_500), consent(C3, True, 3_500)]
    assert refusal_edits(customers, results, withdrawn_then_given) == []
