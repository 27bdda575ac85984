"""A deployment for the consent tests: HQ, branch-a, branch-b and partner-x in
process with a user per role (tests/access/conftest.py), its own, since these
tests record consents and change suppression. Each test makes the customers it
works on (`new_customer`), so tests do not see each other's records."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from server.consents import consent_records
from server.policy import Policy, load_policy
from tests.access.conftest import ADMIN, ID_CONSENT, AccessDeployment, person, running_deployment
from tests.conftest import POLICY_FILE

_numbers = itertools.count(300)


@pytest.fixture(scope="package")
def policy() -> Policy:
    return load_policy(POLICY_FILE)


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Iterator[AccessDeployment]:
    with running_deployment(tmp_path_factory.mktemp("consent"), policy) as d:
        yield d


def new_customer(d: AccessDeployment, *, settle: bool = True, **extra: Any) -> str:
    """A customer of branch-a on the agents' team, contracted to partner-x, made
    at HQ by the operator (with the consent its ID number needs); synced to the
    nodes below unless ``settle`` is false."""
    i = next(_numbers)
    body = {**person(i), **ID_CONSENT, "home_branch": "branch-a", "assigned_agent": d.user_id("mate"),
            "account_manager": d.user_id("account-manager"), "partners_add": ["partner-x"], **extra}
    customer = d.create_customer(f"consent-{i}", body)
    if settle:
        d.settle()
    quiet(d)
    return customer.row_id


def stamps(d: AccessDeployment, node: str, collection: str, row_id: str) -> dict[str, int]:
    """field -> the HLC stamp of its state, as ``node``'s database holds the row."""
    db = sqlite3.connect(f"file:{d.configs[node].db_path}?mode=ro", uri=True, timeout=10)
    try:
        (state,) = db.execute(f"SELECT _state FROM {collection} WHERE row_id = ?", (row_id,)).fetchone()
    finally:
        db.close()
    return {name: entry[1] for name, entry in msgspec.msgpack.decode(state).items()}


def quiet(d: AccessDeployment, node: str = "hq") -> None:
    """Let ``node``'s key steward finish what earlier writes gave it (it wraps and
    shreds keys in the background), so a test can count what one call writes."""
    d.on(node, d.node(node).steward.run_once())


def consents(d: AccessDeployment, node: str, customer: str) -> list[dict[str, Any]]:
    """The consent rows ``node`` holds for ``customer``."""
    return d.on(node, consent_records(d.node(node).store, customer))  # type: ignore[no-any-return]


def customer_row(d: AccessDeployment, node: str, customer: str) -> dict[str, Any] | None:
    return d.on(node, d.node(node).store.read_row("customers", customer))  # type: ignore[no-any-return]


def record(d: AccessDeployment, node: str, customer: str, body: dict[str, Any],
           headers: dict[str, str] = ADMIN) -> Any:
    return d.clients[node].post(f"/customers/{customer}/consents", json=body, headers=headers)
