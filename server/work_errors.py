"""Typed errors of the work API (server/work_api.py): each carries the ids,
codes and field names a caller needs to fix the request, never a personal
value; server/errors.py maps them to HTTP statuses."""

from __future__ import annotations


class BadCursorError(Exception):
    """A paging or delta cursor this node did not give, or gave for another store."""

    code = "bad_cursor"

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.message = f"`{parameter}` is not a cursor this node gave ({reason}); fetch the inbox again without it"

    def details(self) -> dict[str, object]:
        return {"parameter": self.parameter}


class CallRefusedError(Exception):
    """The call may not be placed now (the work rules said why)."""

    def __init__(self, task_id: str, code: str, detail: str, retry_at_ms: int | None) -> None:
        self.task_id = task_id
        self.code = "call_refused"
        self.reason = code
        self.retry_at_ms = retry_at_ms
        when = "" if retry_at_ms is None else f"; it may be placed from {retry_at_ms} (Unix ms)"
        self.message = f"The call of task `{task_id}` may not be placed now: {code} ({detail}){when}"

    def details(self) -> dict[str, object]:
        return {"task_id": self.task_id, "reason": self.reason, "retry_at_ms": self.retry_at_ms}


class TaskClosedError(Exception):
    """A change that needs an open task, on a task that is done, archived or cancelled."""

    code = "impossible_transition"

    def __init__(self, task_id: str, state: str, action: str) -> None:
        self.task_id = task_id
        self.state = state
        self.action = action
        self.message = f"Task `{task_id}` is `{state}`: it cannot {action}"

    def details(self) -> dict[str, object]:
        return {"task_id": self.task_id, "state": self.state, "action": self.action}


class BadTimeError(Exception):
    """A time out of the range the operation takes."""

    code = "bad_time"

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.message = f"`{field}` {reason}"

    def details(self) -> dict[str, object]:
        return {"field": self.field}


class UnknownUserError(Exception):
    """A user id this node does not hold (or a deleted or disabled user)."""

    code = "unknown_user"

    def __init__(self, field: str, user_id: str) -> None:
        self.field = field
        self.user_id = user_id
        self.message = f"`{field}` names no active user known at this node"

    def details(self) -> dict[str, object]:
        return {"field": self.field, "user_id": self.user_id}


class TaskKindError(Exception):
    """A task kind this operation does not make, or a revisit without its work order."""

    code = "wrong_task_kind"

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.message = f"A `{kind}` task {reason}"

    def details(self) -> dict[str, object]:
        return {"kind": self.kind}
