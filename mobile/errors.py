"""What the phone client raises; messages hold ids and codes, never a value."""

from __future__ import annotations


class MobileError(Exception):
    """Base class of the phone client's errors."""

    code = "mobile"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class EnrolmentError(MobileError):
    """The site refused a step of the enrolment (``step``: ``sign_in``, ``enroll``),
    with its HTTP status and problem code."""

    code = "enrolment"

    def __init__(self, step: str, status: int, problem_code: str) -> None:
        self.step = step
        self.status = status
        self.problem_code = problem_code
        super().__init__(f"enrolment refused at `{step}`: HTTP {status} `{problem_code}`")


class NotHeldError(MobileError):
    """A row this phone does not hold (not its user's, or not synced yet)."""

    code = "not_held"

    def __init__(self, collection: str, row_id: str) -> None:
        self.collection = collection
        self.row_id = row_id
        super().__init__(f"this phone holds no `{collection}` row `{row_id}`: sync, or it is not its user's")
