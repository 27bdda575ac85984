"""The committed contract against real nodes: schemathesis generates requests for
every operation of ``api_spec/openapi.json`` and sends each one, over loopback
HTTP (httpx), as every identity below, to `outpost serve` processes (HQ,
branch-a, partner-x; tests/api/conftest.py). Every answer must:

* never be a 5xx;
* have a status code the operation documents, with the documented content type,
  and a body that matches the documented schema for that status;
* when it is an error, be a problem document (RFC 9457) whose ``status`` is the
  HTTP status and whose ``code`` names the error.

Path ids are sometimes replaced by ids of rows the seed made, so the fuzzer
reaches real customers, users and partners and not only 404s. Operations that
end what they are called with (signing out, revoking, disabling) get a fresh
session or a throwaway user, so the other identities keep working.

Generation is derandomised and writes no example database, so a run is
reproducible; `MAX_EXAMPLES` keeps the whole module near two minutes on two
cores.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import TestPhase
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import ROLE_USERS, VICTIM, ApiNodes, bearer

SPEC = Path(__file__).resolve().parents[2] / "api_spec" / "openapi.json"
SYNC_MEDIA_TYPE = "application/vnd.outpost.sync+msgpack"
PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_EXAMPLES = 8

schema = schemathesis.openapi.from_path(SPEC)
schema.config.generation.update(with_security_parameters=False, deterministic=True)

#: who sends each case: (identity, node). The operator token is the same at
#: every node; the role users work where `ROLE_USERS` puts them.
IDENTITIES: tuple[tuple[str, str], ...] = (
    ("operator", "hq"),
    ("operator", "branch-a"),
    *((role, site) for role, (_, site) in ROLE_USERS.items()),
    ("anonymous", "hq"),
)
#: operations that end the session they are called with: each call gets its own
ENDS_SESSION = {"SignOut"}
#: operations that act on a user: they only ever touch the throwaway user (or none)
ON_VICTIM_USER = {"DisableUser", "EnableUser", "RevokeUserTokens"}
#: operations that destroy a customer: only the throwaway customer (or none)
ON_VICTIM_CUSTOMER = {"EraseCustomer"}
#: partner-x stays contracted: offboarding or retiring it would delete the
#: partner agent the other identities include
PARTNER_SAFE = ("branch-a", "branch-z")

#: what the seed made, filled by the `seeded` fixture before any case is drawn
SEEDED: dict[str, list[str]] = {}


#: how many rows of each kind the seed makes (tests/api/conftest.py)
SEED_COUNTS = {"customers": 3, "victim_customer": 1, "users": len(ROLE_USERS), "victim_user": 1, "tasks": 3}
SEED_PREFIX = "@seed/"


@schema.hook
def flatmap_path_parameters(ctx: schemathesis.HookContext, params: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A generated path, or the same path naming a row the seed made.

    Explicit examples are drawn when the tests are collected, before any node
    runs, so a seeded row is named by a placeholder (``@seed/users/2``) that
    `resolve_seeded` replaces just before the request is sent."""
    if not params:
        return st.just(params)
    operation_id = ctx.operation.definition.raw.get("operationId") if ctx.operation else None
    real = [{**params, name: value} for name in params for value in _real_values(name, operation_id)]
    return st.sampled_from([params, *real]) if real else st.just(params)


def _real_values(name: str, operation_id: str | None) -> list[str]:
    def seeded(kind: str) -> list[str]:
        return [f"{SEED_PREFIX}{kind}/{i}" for i in range(SEED_COUNTS[kind])]

    if name == "row_id":
        return seeded("victim_customer") if operation_id in ON_VICTIM_CUSTOMER else seeded("customers")
    if name == "user_id":
        return seeded("victim_user") if operation_id in ON_VICTIM_USER else seeded("users")
    if name == "actor_id":
        return seeded("users")
    if name == "task_id":
        return seeded("tasks")
    if name == "partner":
        return ["partner-x", *PARTNER_SAFE] if operation_id == "GetOffboarding" else list(PARTNER_SAFE)
    return []


def resolve_seeded(case: schemathesis.Case) -> None:
    for name, value in (case.path_parameters or {}).items():
        if isinstance(value, str) and value.startswith(SEED_PREFIX):
            kind, index = value.removeprefix(SEED_PREFIX).split("/")
            case.path_parameters[name] = SEEDED[kind][int(index)]


@schemathesis.serializer(SYNC_MEDIA_TYPE)
def sync_frame(ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """The sync endpoints take msgpack frames: generated bytes go as they are,
    anything else msgpack-encoded (well-formed msgpack, not a valid frame)."""
    raw = getattr(value, "data", value)  # schemathesis wraps generated binary bodies in `Binary`
    data = raw if isinstance(raw, bytes) else msgspec.msgpack.encode(raw)
    return {"data": data}


@schemathesis.check
def problem_details(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                    case: schemathesis.Case) -> bool | None:
    """An error answer is a problem document naming its status and code."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(PROBLEM_MEDIA_TYPE), f"error answered as {content_type!r}, not a problem document"
    body = response.json()
    assert isinstance(body, dict), "a problem document is an object"
    assert body.get("status") == response.status_code, f"`status` {body.get('status')!r} is not the HTTP status"
    assert isinstance(body.get("code"), str) and body["code"], "a problem document names its `code`"
    assert isinstance(body.get("title"), str) and isinstance(body.get("type"), str), "`type` and `title` are strings"
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          problem_details]


@pytest.fixture(scope="module")
def seeded(api_nodes: ApiNodes) -> Iterator[ApiNodes]:
    """The nodes, with what the seed made where `resolve_seeded` finds it."""
    SEEDED.update(
        customers=api_nodes.customers[:-1], victim_customer=[api_nodes.victim_customer],
        users=[uid for name, uid in api_nodes.users.items() if name != VICTIM[0]],
        victim_user=[api_nodes.users[VICTIM[0]]], tasks=api_nodes.tasks,
    )
    try:
        yield api_nodes
    finally:
        SEEDED.clear()


@pytest.fixture(scope="module")
def clients(api_nodes: ApiNodes) -> Iterator[dict[str, httpx.Client]]:
    """An httpx client per node, without credentials (each request brings its own)."""
    made = {site: httpx.Client(base_url=api_nodes.node(site).url, timeout=30) for site in ("hq", *api_nodes.below)}
    try:
        yield made
    finally:
        for c in made.values():
            c.close()


def _headers(nodes: ApiNodes, identity: str, operation_id: str) -> dict[str, str]:
    if identity == "anonymous":
        return {}
    if identity == "operator":
        return bearer(nodes.hq.token)
    if operation_id in ENDS_SESSION:
        spare = nodes.spare[identity]
        assert spare, f"no spare session of {identity} left: raise SPARE_SESSIONS in tests/api/conftest.py"
        return bearer(spare.pop())
    return bearer(nodes.tokens[identity])


def send(client: httpx.Client, case: schemathesis.Case, headers: dict[str, str]) -> httpx.Response:
    """The case as an httpx request (schemathesis serialises it)."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url), headers=headers)
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif "data" in kwargs:
        data = kwargs["data"]
        body["content" if isinstance(data, bytes | str) else "data"] = data
    assert not kwargs.get("cookies"), "the API takes no cookies"
    return client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                          headers=kwargs.get("headers"), **body)


#: explicit and coverage cases (boundary values, wrong types, missing fields,
#: other methods: hundreds per operation) go to the operator at HQ and to one
#: other identity in turn; generated cases go to every identity
_turn = itertools.count()


def identities_for(case: schemathesis.Case) -> tuple[tuple[str, str], ...]:
    phase = case.meta.phase.name if case.meta is not None else None
    if phase == TestPhase.FUZZING:
        return IDENTITIES
    return IDENTITIES[0], IDENTITIES[1 + next(_turn) % (len(IDENTITIES) - 1)]


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                     suppress_health_check=list(HealthCheck))
def test_every_answer_conforms(case: schemathesis.Case, seeded: ApiNodes, clients: dict[str, httpx.Client]) -> None:
    operation_id = case.operation.definition.raw["operationId"]
    resolve_seeded(case)
    for identity, site in identities_for(case):
        headers = _headers(seeded, identity, operation_id)
        response = send(clients[site], case, headers)
        case.validate_response(response, checks=CHECKS, headers=headers)


@pytest.mark.parametrize("route", ["/sync/pull", "/sync/push", "/sync/audit"])
@pytest.mark.parametrize("body", [b"", b"\x00garbage", msgspec.msgpack.encode([1, "x", None, {"a": 1}])],
                         ids=["empty", "garbage", "not-a-frame"])
def test_a_sync_endpoint_refuses_a_bad_frame_and_changes_nothing(
        seeded: ApiNodes, clients: dict[str, httpx.Client], route: str, body: bytes) -> None:
    """The fuzzer's bytes reach the sync endpoints too; here, the same refusals
    named: a 4xx problem document, and HQ's data as it was."""
    before = clients["hq"].get("/status/digest", headers=bearer(seeded.hq.token)).json()
    response = clients["hq"].post(route, content=body, headers={"content-type": SYNC_MEDIA_TYPE})
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert response.json()["status"] == response.status_code and response.json()["code"]
    assert clients["hq"].get("/status/digest", headers=bearer(seeded.hq.token)).json() == before
