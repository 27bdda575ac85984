"""Reloading the access policy at a running node: what the new file hides is gone
from the API at once (the data stays: the operator still reads it); a bad file is
a 422 naming what is wrong, and the policy in force stays. A policy that lets a
role write a scope field shows the other write refusal: a change that would move
the customer out of the writer's scope.

This module edits its own copy of the policy file, on a deployment of its own;
each test puts the file back and reloads before it ends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from server.auth import TOKEN_ENV
from server.cli import ROOT
from server.policy import Policy
from tests.access.conftest import ADMIN, AccessDeployment, running_deployment
from tests.conftest import ClusterFactory, LoopThread


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Iterator[AccessDeployment]:
    """A deployment of this module's own: its tests edit its policy file."""
    with running_deployment(tmp_path_factory.mktemp("reload"), policy) as d:
        yield d


def move(text: str, role: str, field: str, *, to: str) -> str:
    """The policy text with ``field`` moved, in ``[roles.<role>.customers]``, to the list ``to``."""
    head = text.index(f"[roles.{role}.customers]")
    end = text.find("\n[", head + 1)
    end = len(text) if end < 0 else end
    section = text[head:end]
    section, found = re.subn(rf'"{field}",\s*|,\s*"{field}"(?=\s*\])|"{field}"', "", section, count=1)
    assert found, f"{field} is not listed for {role}"
    if re.search(rf"^{to} = \[", section, re.M):
        section = re.sub(rf"^{to} = \[", f'{to} = ["{field}", ', section, count=1, flags=re.M)
    else:
        section = section.rstrip("\n") + f'\n{to} = ["{field}"]\n'
    return text[:head] + section + text[end:]


@contextmanager
def policy_text(d: AccessDeployment, text: str, node: str) -> Iterator[dict[str, object]]:
    """``text`` as the policy file, reloaded at ``node``; the original back afterwards."""
    original = d.policy_file.read_text()
    d.policy_file.write_text(text)
    try:
        response = d.clients[node].post("/policy/reload", headers=ADMIN)
        yield {"status": response.status_code, "body": response.json()}
    finally:
        d.policy_file.write_text(original)
        assert d.clients[node].post("/policy/reload", headers=ADMIN).status_code == 200


def test_a_field_the_reloaded_policy_hides_is_gone_and_still_there(nodes: AccessDeployment) -> None:
    d = nodes
    customer = d.customers["a_team"]
    url = f"/customers/{customer.row_id}"
    agent = d.sign_in("agent")
    client = d.clients["branch-a"]
    assert client.get(url, headers=agent).json()["employer"] == customer.body["employer"]
    hidden = move(d.policy_file.read_text(), "agent", "employer", to="none")
    with policy_text(d, hidden, "branch-a") as reload:
        assert reload["status"] == 200, reload
        body = reload["body"]
        assert isinstance(body, dict) and body["path"] == str(d.policy_file.resolve())
        assert "agent" in body["roles"] and "agent" in body["roles_here"]
        seen = client.get(url, headers=agent)  # the same token: the policy applies per request
        assert seen.status_code == 200 and "employer" not in seen.json()
        assert client.get(url, headers=ADMIN).json()["employer"] == customer.body["employer"]
        kept = client.patch(url, json={"notes": customer.body["notes"]}, headers=agent)
        assert kept.status_code == 200 and "employer" not in kept.json()  # the rest of the role is as it was
    assert client.get(url, headers=agent).json()["employer"] == customer.body["employer"]
    events = d.events("branch-a", action="reload_policy")
    assert [(e.actor, e.outcome, e.collection) for e in events[-2:]] == [("operator", "ok", "policy")] * 2


def test_a_bad_policy_file_is_a_422_and_the_policy_in_force_stays(nodes: AccessDeployment) -> None:
    d = nodes
    client = d.clients["branch-a"]
    customer = d.customers["a_team"]
    agent = d.sign_in("agent")
    before = client.get(f"/customers/{customer.row_id}", headers=agent).json()
    in_force = client.get("/policy", headers=ADMIN).json()
    bad = d.policy_file.read_text().replace('write = ["tags", "suppression", "notes"]',
                                            'write = ["tags", "suppression", "notes", "shoe_size"]', 1)
    assert bad != d.policy_file.read_text()
    original = d.policy_file.read_text()
    d.policy_file.write_text(bad)
    try:
        response = client.post("/policy/reload", headers=ADMIN)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "policy_invalid" and problem["path"] == str(d.policy_file.resolve())
        assert "Unknown field `shoe_size`" in problem["detail"] and "$.roles.agent.customers.write[3]" in problem["detail"]
        assert "policy in force is unchanged" in problem["detail"]
        assert client.get("/policy", headers=ADMIN).json() == in_force
        assert client.get(f"/customers/{customer.row_id}", headers=agent).json() == before
        event = d.events("branch-a", action="reload_policy")[-1]
        assert (event.outcome, event.status, event.reason) == ("refused", 422, "policy_invalid")
    finally:
        d.policy_file.write_text(original)


def test_only_the_operator_reloads(nodes: AccessDeployment) -> None:
    d = nodes
    response = d.clients["hq"].post("/policy/reload", headers=d.sign_in("hq-admin"))
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_a_write_that_would_move_the_customer_out_of_scope_is_refused(nodes: AccessDeployment) -> None:
    """With a policy that lets supervisors write ``home_branch``: moving a customer
    to another branch would take it out of the supervisor's scope (their site's
    customers), and so would creating one there."""
    d = nodes
    supervisor = d.sign_in("supervisor")
    client = d.clients["branch-a"]
    customer = d.customers["a_other"]
    url = f"/customers/{customer.row_id}"
    writes_home = move(d.policy_file.read_text(), "supervisor", "home_branch", to="write")
    with policy_text(d, writes_home, "branch-a") as reload:
        assert reload["status"] == 200, reload
        before_view = client.get(url, headers=ADMIN).json()
        moved = client.patch(url, json={"home_branch": "branch-b", "star_level": 1}, headers=supervisor)
        assert moved.status_code == 403, moved.text
        problem = moved.json()
        assert problem["code"] == "outside_scope" and problem["fields"] == ["home_branch", "star_level"]
        assert d.events("branch-a", row_id=customer.row_id)[-1].reason == "would_leave_scope"
        assert client.get(url, headers=ADMIN).json() == before_view
        stays = client.patch(url, json={"home_branch": "branch-a"}, headers=supervisor)
        assert stays.status_code == 200, stays.text
        made = client.post("/customers", json={"home_branch": "branch-b", "star_level": 2}, headers=supervisor)
        assert made.status_code == 403 and made.json()["code"] == "outside_scope"
        assert made.json()["row_id"] is None


@pytest.mark.system
def test_outpost_policy_reload_against_a_running_node(make_cluster: ClusterFactory, aio: LoopThread) -> None:
    cluster = aio.run(make_cluster(0), timeout=60)
    policy_file = cluster.configs["hq"].parent / "policy.toml"
    env = {**os.environ, TOKEN_ENV: cluster.token}

    def reload() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server", "policy", "reload", str(cluster.configs["hq"]),
                               "--port", str(cluster.hq.port)], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=60, stdin=subprocess.DEVNULL)

    done = reload()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"hq: policy {policy_file.resolve()} in force; roles here: ")
    assert "hq_admin" in done.stdout and "partner_agent" not in done.stdout
    policy_file.write_text(policy_file.read_text().replace("version = 1", "version = 2", 1))
    failed = reload()
    assert failed.returncode == 1 and failed.stdout == ""
    message = failed.stderr.strip()
    assert message.startswith("outpost: ") and "\n" not in message and "Traceback" not in message
    assert "422" in message and "version = 1" in message and "policy in force is unchanged" in message
