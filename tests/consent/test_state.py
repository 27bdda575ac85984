"""The rules of consent state, as plain functions (server/consents.py): which
record is in force, what a record does to suppression, and that the collection
can hold no personal information."""

from __future__ import annotations

import typing
from typing import Any

from hypothesis import given, strategies as st

from server.consents import (
    REFUSED_MARKETING,
    current,
    granted,
    record_row,
    suppression_edits,
)
from sync.edits import Edit
from sync.schema import COLLECTIONS, PARENTS

CUSTOMER = "01JD0QK2M6X3Z1V9A8B7C6D5E4"


def rec(row_id: str, purpose: str, ok: bool, at_ms: int, **extra: Any) -> dict[str, Any]:
    return {**record_row(row_id, CUSTOMER, purpose=purpose, granted=ok, channel="phone", at_ms=at_ms,
                         recorded_by="u1", site="hq"), **extra}


def test_the_latest_record_by_time_then_row_id_is_in_force() -> None:
    records = [rec("01A", "marketing", True, 100), rec("01C", "marketing", False, 300),
               rec("01B", "marketing", True, 300), rec("01D", "id_number", True, 50)]
    state = current(records)
    assert state["marketing"]["row_id"] == "01C", "same time: the greater row id"
    assert state["id_number"]["row_id"] == "01D"
    assert not granted(records, "marketing") and granted(records, "id_number")
    assert not granted(records, "data_processing"), "never recorded: not given"


def test_a_deleted_record_is_not_in_force() -> None:
    records = [rec("01A", "marketing", True, 100), rec("01B", "marketing", False, 200, deleted=True)]
    assert granted(records, "marketing")


@given(st.lists(st.tuples(st.sampled_from(["marketing", "id_number"]), st.booleans(),
                          st.integers(0, 5), st.integers(0, 999)), max_size=12), st.randoms())
def test_the_state_does_not_depend_on_the_order_records_arrive_in(
        events: list[tuple[str, bool, int, int]], rnd: Any) -> None:
    records = [rec(f"01{n:04d}{i:03d}", p, ok, at) for i, (p, ok, at, n) in enumerate(events)]
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert {k: v["row_id"] for k, v in current(records).items()} == {
        k: v["row_id"] for k, v in current(shuffled).items()}


def test_a_withdrawal_in_force_adds_refused_marketing_and_a_grant_removes_only_it() -> None:
    customer = {"row_id": CUSTOMER, "suppression": ["blacklist", "do_not_call"]}
    withdrawal = rec("01B", "marketing", False, 200)
    assert suppression_edits(customer, [rec("01A", "marketing", True, 100)], withdrawal) == [
        Edit("customers", CUSTOMER, "suppression", "add", REFUSED_MARKETING)]
    suppressed = {**customer, "suppression": ["blacklist", "do_not_call", REFUSED_MARKETING]}
    assert suppression_edits(suppressed, [withdrawal], rec("01C", "marketing", True, 300)) == [
        Edit("customers", CUSTOMER, "suppression", "remove", REFUSED_MARKETING)]
    assert suppression_edits(customer, [withdrawal], rec("01C", "marketing", True, 300)) == [], "nothing to take off"


def test_a_record_not_in_force_or_of_another_purpose_leaves_suppression_alone() -> None:
    customer = {"row_id": CUSTOMER, "suppression": [REFUSED_MARKETING]}
    later_withdrawal = rec("01B", "marketing", False, 500)
    assert suppression_edits(customer, [later_withdrawal], rec("01C", "marketing", True, 100)) == [], "back-dated"
    assert suppression_edits(customer, [], rec("01D", "id_number", True, 100)) == []
    assert suppression_edits(customer, [], rec("01E", "data_processing", False, 100)) == []


def test_the_consents_collection_has_no_field_that_could_hold_personal_information() -> None:
    """Ids, codes, flags and times: no free text, nothing sealed."""
    spec = COLLECTIONS["consents"]
    assert not spec.pii_fields and not spec.secret_fields
    for f in spec.fields.values():
        base = typing.get_args(f.annotation)[0]
        kinds = [t for t in (typing.get_args(base) or (base,)) if t is not type(None)]
        for kind in kinds:
            inner = typing.get_args(kind)[0] if typing.get_origin(kind) is typing.Annotated else kind
            meta = typing.get_args(kind)[1:] if typing.get_origin(kind) is typing.Annotated else ()
            if inner is str:  # only ids: bounded, and patterned or short
                assert any(getattr(m, "pattern", None) or (getattr(m, "max_length", 0) or 999) <= 64 for m in meta), f
            else:
                assert inner in (bool, int) or typing.get_origin(inner) is typing.Literal, (f, inner)
    assert PARENTS["consents"] == ("customers", "customer_id")
    assert all(f.merge == "append_only" for n, f in spec.fields.items() if n != "deleted")
