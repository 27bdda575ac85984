"""`outpost` commands around users that need no running node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from server.cli import ROOT, USER_PASSWORD_ENV
from server.passwords import COST_ENV
from tests.conftest import write_sites


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("outpost: ") and "\n" not in message and "Traceback" not in message, message
    return message


def test_serve_refuses_a_bad_argon2_cost_in_one_line(tmp_path: Path) -> None:
    sites = write_sites(tmp_path / "sites")
    data = tmp_path / "data"
    assert run("init", sites["hq"], "--data-dir", data).returncode == 0
    message = one_line(run("serve", sites["hq"], "--data-dir", data, env={COST_ENV: "cheap"}))
    assert COST_ENV in message and "TIME,MEMORY_KIB,PARALLELISM" in message


def test_users_add_needs_a_password_and_a_running_hq(tmp_path: Path) -> None:
    sites = write_sites(tmp_path / "sites")
    env = {k: v for k, v in os.environ.items() if k != USER_PASSWORD_ENV}
    no_password = subprocess.run(
        [sys.executable, "-m", "server", "users", "add", str(sites["hq"]), "--username", "ana", "--role", "agent",
         "--site", "branch-1"], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert USER_PASSWORD_ENV in one_line(no_password)
    unreachable = run("users", "add", sites["hq"], "--port", "9", "--username", "ana", "--role", "agent",
                      "--site", "branch-1", env={USER_PASSWORD_ENV: "a long enough password"})
    assert "cannot reach" in one_line(unreachable)
    bad_role = run("users", "add", sites["hq"], "--username", "ana", "--role", "boss", "--site", "branch-1")
    assert bad_role.returncode == 2 and "hq_admin" in bad_role.stderr
