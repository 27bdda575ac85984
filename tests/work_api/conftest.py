"""The work API tests' deployment: the access tests' nodes (HQ, two branches, a
partner, in process, real stores and keys, synced in memory) with customers of
their own, made at HQ for branch-a and synced there; each test makes its own
tasks on them, so tests do not see each other's work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from server.policy import load_policy
from tests.access.conftest import ADMIN, AccessDeployment, person, running_deployment
from tests.conftest import POLICY_FILE

HOUR_MS = 3_600_000


def zone_at_noon() -> str:
    """An IANA zone where it is now between 11:00 and 13:00, inside any calling window."""
    hour = time.gmtime().tm_hour
    offset = (12 - hour + 12) % 24 - 12  # -12..11
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def zone_at_night() -> str:
    """An IANA zone where it is now between 01:00 and 03:00, outside any default window."""
    hour = time.gmtime().tm_hour
    offset = (2 - hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


class Work:
    """The deployment and helpers to act as its users at branch-a."""

    def __init__(self, d: AccessDeployment) -> None:
        self.d = d
        self.agent = d.user_id("agent")
        self.mate = d.user_id("mate")
        self.serial = 100

    def headers(self, username: str) -> dict[str, str]:
        return self.d.sign_in(username)

    def customer(self, *, night: bool = False, **extra: Any) -> str:
        """A new customer at branch-a, assigned to the agents' team, synced there."""
        self.serial += 1
        body = {**person(self.serial), "home_branch": "branch-a", "star_level": 4, "segment": "gold",
                "assigned_agent": self.agent, "tz": zone_at_night() if night else zone_at_noon(), **extra}
        body.pop("id_number", None)
        made = self.d.create_customer(f"work-{self.serial}", body)
        self.d.settle()
        return made.row_id

    def task(self, customer_id: str, *, assignee: str | None = None, kind: str = "care", due_at_ms: int | None = None,
             priority: int = 5, by: str = "supervisor") -> dict[str, Any]:
        body: dict[str, Any] = {"customer_id": customer_id, "kind": kind, "assignee": assignee or self.agent,
                                "priority": priority}
        if due_at_ms is not None:
            body["due_at_ms"] = due_at_ms
        response = self.post(by, "/tasks", body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def post(self, username: str | None, path: str, body: Any = None) -> Any:
        headers = ADMIN if username is None else self.headers(username)
        return self.d.clients["branch-a"].post(path, json=body, headers=headers)

    def get(self, username: str | None, path: str, **params: Any) -> Any:
        headers = ADMIN if username is None else self.headers(username)
        return self.d.clients["branch-a"].get(path, params=params, headers=headers)

    def row(self, collection: str, row_id: str) -> dict[str, Any] | None:
        return self.d.on("branch-a", self.d.node("branch-a").store.read_row(collection, row_id))  # type: ignore[no-any-return]

    def high_seq(self) -> int:
        return self.d.high_seq("branch-a")


@pytest.fixture(scope="package")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Work]:
    with running_deployment(tmp_path_factory.mktemp("work"), load_policy(POLICY_FILE)) as d:
        yield Work(d)


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["detail"], body
    return body
