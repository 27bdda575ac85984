"""Users end to end: real `outpost serve` processes, the `outpost users` CLI, loopback HTTP.

A user defined at HQ reaches branch-1 (its site) and not branch-2, signs in at
branch-1 while HQ is stopped, and is disabled at HQ; branch-1 refuses the
user's token from its next sync on. Nothing of the password reaches a file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth import TOKEN_ENV
from server.cli import ROOT, USER_PASSWORD_ENV
from tests.conftest import Cluster, ClusterFactory, LoopThread, problem

pytestmark = pytest.mark.system

PASSWORD = "branch staff passphrase 42"


def outpost_users(cluster: Cluster, *args: str, password: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != USER_PASSWORD_ENV}
    env[TOKEN_ENV] = cluster.token
    if password:
        env[USER_PASSWORD_ENV] = PASSWORD
    return subprocess.run(
        [sys.executable, "-m", "server", "users", args[0], str(cluster.configs["hq"]), "--port", str(cluster.hq.port),
         *args[1:]],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )


async def sign_in(url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post("/auth/sign-in", json={"username": "ana", "password": PASSWORD})


async def me(url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.get("/auth/me", headers={"authorization": f"Bearer {token}"})


def test_user_defined_at_hq_signs_in_at_its_branch_while_hq_is_down(
    make_cluster: ClusterFactory, aio: LoopThread, tmp_path: Path,
) -> None:
    async def scenario() -> dict[str, Any]:
        cluster = await make_cluster(("branch-1", "branch-2"), sync_interval_s=3600)
        hq, one, two = cluster.hq, cluster.branches["branch-1"], cluster.branches["branch-2"]
        added = outpost_users(cluster, "add", "--username", "ana", "--role", "agent", "--site", "branch-1",
                              "--team", "north")
        assert added.returncode == 0, added.stderr
        assert "added ana (agent at branch-1)" in added.stdout
        listed = outpost_users(cluster, "list", "--json")
        assert listed.returncode == 0 and '"ana"' in listed.stdout and "argon2" not in listed.stdout
        no_password = outpost_users(cluster, "add", "--username", "bo", "--role", "agent", "--site", "branch-2",
                                    password=False)
        assert no_password.returncode == 1 and USER_PASSWORD_ENV in no_password.stderr
        taken = outpost_users(cluster, "add", "--username", "ana", "--role", "agent", "--site", "branch-2")
        assert taken.returncode == 1 and "Traceback" not in taken.stderr and "taken" in taken.stderr

        await one.sync_now()
        await two.sync_now()
        assert [u["username"] for u in await one.call("GET", "/users")] == ["ana"]
        assert await two.call("GET", "/users") == []
        refused_at_two = await sign_in(two.url)
        assert refused_at_two.status_code == 401 and problem(refused_at_two)["code"] == "sign_in_failed"

        await hq.stop()  # HQ is gone: the branch signs its staff in alone
        down = outpost_users(cluster, "list")
        assert down.returncode == 1 and down.stderr.startswith("outpost: cannot reach") and "Traceback" not in down.stderr
        pair = await sign_in(one.url)
        assert pair.status_code == 200, pair.text
        token = pair.json()["access_token"]
        assert (await me(one.url, token)).json()["site"] == "branch-1"
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as client:
            renewed = await client.post("/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]})
        assert renewed.status_code == 200, renewed.text
        token = renewed.json()["access_token"]

        await hq.restart()
        disabled = outpost_users(cluster, "disable", "ana")
        assert disabled.returncode == 0, disabled.stderr
        assert (await me(one.url, token)).status_code == 200  # branch-1 has not synced yet
        await one.sync_now()
        after = await me(one.url, token)
        again = await sign_in(one.url)
        return {"after": after, "again": again, "cluster": cluster}

    result = aio.run(scenario(), timeout=180)
    after, again, cluster = result["after"], result["again"], result["cluster"]
    assert after.status_code == 401 and problem(after)["reason"] == "disabled", after.text
    assert again.status_code == 403 and problem(again)["code"] == "account_disabled", again.text
    aio.run(cluster.close(), timeout=60)
    files = [p for p in cluster.workdir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.suffix == ".log" for p in files)
    leaked = [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert leaked == [], leaked
