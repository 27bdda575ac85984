"""Typed errors of the work rules.

Each carries the ids and state codes a caller needs (server/errors.py maps them
to HTTP: `ComplaintStateError` to 409, `NotTicketOwnerError` to 403,
`NotAComplaintError` to 422), and never a personal value.
"""

from __future__ import annotations


class WorkRuleError(Exception):
    """Base class of every error the work rules raise."""

    code = "work_rule_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Ids and codes for the caller (never values)."""
        return {}


class ComplaintStateError(WorkRuleError):
    """A complaint ticket cannot make this move from its state (an archived
    ticket cannot be handed over or archived again)."""

    code = "impossible_transition"

    def __init__(self, task_id: str, state: str, action: str) -> None:
        self.task_id = task_id
        self.state = state
        self.action = action
        super().__init__(f"Complaint ticket `{task_id}` is `{state}`: it cannot be {action}; "
                         f"open a new ticket instead")

    def details(self) -> dict[str, object]:
        return {"task_id": self.task_id, "state": self.state, "action": self.action}


class NotTicketOwnerError(WorkRuleError):
    """Only the ticket's owner (its first responder) or a supervisor may hand
    over or archive it."""

    code = "not_ticket_owner"

    def __init__(self, task_id: str, action: str) -> None:
        self.task_id = task_id
        self.action = action
        super().__init__(f"Only the owner of complaint ticket `{task_id}` or a supervisor may {action} it")

    def details(self) -> dict[str, object]:
        return {"task_id": self.task_id, "action": self.action}


class NotAComplaintError(WorkRuleError):
    """A complaint operation on a task of another kind."""

    code = "not_a_complaint"

    def __init__(self, task_id: str, kind: str | None) -> None:
        self.task_id = task_id
        self.kind = kind
        super().__init__(f"Task `{task_id}` is a `{kind}` task, not a complaint ticket")

    def details(self) -> dict[str, object]:
        return {"task_id": self.task_id, "kind": self.kind}
