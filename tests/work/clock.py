"""A controlled clock for the work-rule tests: local wall times in Shanghai."""

from __future__ import annotations

from datetime import date

from server.work.calendar import WorkCalendar

CAL = WorkCalendar(tz="Asia/Shanghai", holidays=frozenset({"2025-10-01", "2025-10-02", "2025-10-03"}),
                   working_days=frozenset({"2025-09-28"}))
HOUR = 3_600_000
DAY = 24 * HOUR
CUSTOMER = "01JD0QK2M6X3Z1V9A8B7C6D5E4"
TASK = "01JD0QK2M6X3Z1V9A8B7C6D5T1"


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0, tz: str | None = None) -> int:
    """Unix ms of a local wall time (Shanghai unless ``tz``)."""
    return CAL.at_local(date(y, m, d), hh, mm, tz)


def customer(**fields: object) -> dict[str, object]:
    row: dict[str, object] = {"row_id": CUSTOMER, "star_level": 0, "status": "active", "tags": [],
                              "suppression": [], "deleted": False, "home_branch": "branch-a"}
    row.update(fields)
    return row


def task(**fields: object) -> dict[str, object]:
    row: dict[str, object] = {"row_id": TASK, "customer_id": CUSTOMER, "kind": "sales", "status": "assigned",
                              "attempts": 0, "deleted": False}
    row.update(fields)
    return row


def result(row_id: str, at_ms: int, outcome: str | None = "no_answer", task_id: str = TASK,
           customer_id: str = CUSTOMER) -> dict[str, object]:
    return {"row_id": row_id, "task_id": task_id, "customer_id": customer_id, "outcome": outcome,
            "recorded_at_ms": at_ms, "deleted": False}
