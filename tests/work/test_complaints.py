"""Complaint tickets: ownership, handover, archive, deadline warnings, repeats."""

from __future__ import annotations

import pytest

from server.work.complaints import archive_complaint, deadline_state, hand_over, open_complaint
from server.work.errors import ComplaintStateError, NotAComplaintError, NotTicketOwnerError
from tests.work.clock import CAL, CUSTOMER, DAY, HOUR, TASK, at

EARLIER = "01JD0QK2M6X3Z1V9A8B7C6D5T2"


def _ticket(edits: list, row_id: str = TASK) -> dict:
    row = {"row_id": row_id, "deleted": False, "status": "open", "attempts": 0}
    row.update({e.field: e.value for e in edits})
    return row


def test_the_first_responder_owns_the_ticket_through_handovers() -> None:
    now = at(2025, 3, 7, 10)
    ticket = _ticket(open_complaint(TASK, CUSTOMER, "billing", "ag-1", site="branch-a", now_ms=now, calendar=CAL,
                                    recent=[]))
    assert ticket["first_responder"] == "ag-1" and ticket["assignee"] == "ag-1"
    assert ticket["deadline_at_ms"] == now + 48 * HOUR and ticket.get("repeat_of") is None
    moved = hand_over(ticket, "ag-2", by_user="ag-1", by_role="agent", now_ms=now)
    assert [(e.field, e.value) for e in moved] == [("assignee", "ag-2"), ("handed_from", "ag-1")]
    ticket["assignee"] = "ag-2"
    with pytest.raises(NotTicketOwnerError):  # the one working it is not its owner
        hand_over(ticket, "ag-3", by_user="ag-2", by_role="agent", now_ms=now)
    assert hand_over(ticket, "ag-3", by_user="sup-1", by_role="supervisor", now_ms=now)
    with pytest.raises(NotTicketOwnerError):
        archive_complaint(ticket, by_user="ag-2", by_role="agent", now_ms=now)
    archived = archive_complaint(ticket, by_user="ag-1", by_role="agent", now_ms=now)
    assert [(e.field, e.value) for e in archived] == [("status", "archived")]


def test_an_archived_ticket_cannot_be_handed_over_or_archived_again() -> None:
    ticket = {"row_id": TASK, "kind": "complaint", "status": "archived", "first_responder": "ag-1", "deleted": False}
    for call in (lambda: hand_over(ticket, "ag-2", by_user="ag-1", by_role="agent", now_ms=0),
                 lambda: archive_complaint(ticket, by_user="sup", by_role="supervisor", now_ms=0)):
        with pytest.raises(ComplaintStateError) as err:
            call()
        assert err.value.code == "impossible_transition" and err.value.state == "archived"
        assert err.value.details()["task_id"] == TASK
    with pytest.raises(NotAComplaintError):
        hand_over({**ticket, "kind": "care", "status": "open"}, "x", by_user="ag-1", by_role="agent", now_ms=0)


def test_deadline_warning_then_overdue() -> None:
    deadline = at(2025, 3, 9, 10)
    ticket = {"row_id": TASK, "status": "assigned", "deadline_at_ms": deadline}
    assert deadline_state(ticket, deadline - 9 * HOUR, warn_before_ms=8 * HOUR) == "ok"
    assert deadline_state(ticket, deadline - 8 * HOUR, warn_before_ms=8 * HOUR) == "warning"
    assert deadline_state(ticket, deadline, warn_before_ms=8 * HOUR) == "warning"
    assert deadline_state(ticket, deadline + 1, warn_before_ms=8 * HOUR) == "overdue"
    assert deadline_state({**ticket, "status": "archived"}, deadline + 1) == "ok"


def test_a_repeat_is_the_same_customer_and_category_within_30_days() -> None:
    now = at(2025, 3, 31, 10)
    earlier = {"row_id": EARLIER, "kind": "complaint", "customer_id": CUSTOMER, "category": "billing",
               "created_at_ms": now - 30 * DAY, "deleted": False}
    def opened(recent: list) -> object:
        return _ticket(open_complaint(TASK, CUSTOMER, "billing", "ag-1", site=None, now_ms=now, calendar=CAL,
                                      recent=recent)).get("repeat_of")
    assert opened([earlier]) == EARLIER
    assert opened([{**earlier, "created_at_ms": now - 30 * DAY - 1}]) is None
    assert opened([{**earlier, "category": "network"}]) is None
    assert opened([{**earlier, "customer_id": "01JD0QK2M6X3Z1V9A8B7C6D5X0"}]) is None
