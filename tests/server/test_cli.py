"""The `outpost` command as a subprocess: what it prints, what it exits with.

Every failure must be a one-line ``outpost: ...`` message on stderr with exit
status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import ROOT
from server.node_process import free_port
from sync.edits import Edit
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.conftest import ClusterFactory, LoopThread, write_sites


def outpost(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m server`` in ``cwd``, importing this checkout's code (not
    whichever checkout an editable install of the package points at)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "server", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60, env=env,
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Assert exit status 1 and a single ``outpost:`` line on stderr; return it."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    message = result.stderr.strip()
    assert message.startswith("outpost: "), message
    assert "\n" not in message, message
    return message


@pytest.fixture
def sites(tmp_path: Path) -> dict[str, Path]:
    return write_sites(tmp_path / "sites")


def test_init_creates_the_database_once(tmp_path: Path, sites: dict[str, Path]) -> None:
    data = tmp_path / "data"
    first = outpost("init", sites["hq"], "--data-dir", data, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "initialised hq (hq)" in first.stdout
    db = data / "hq.db"
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        nodes = {row[0] for row in con.execute("SELECT node_id FROM nodes")}
    finally:
        con.close()
    assert meta["node_id"] == "hq" and meta["role"] == "hq"
    assert str(meta["store_id"]) in first.stdout
    assert {"hq", "branch-1", "branch-2", "branch-3", "branch-4", "branch-1.m1"} <= nodes
    size = db.stat().st_size

    second = outpost("init", sites["hq"], "--data-dir", data, cwd=tmp_path)
    message = one_line_failure(second)
    assert "already exists" in message and str(db) in message
    assert db.stat().st_size == size


def test_status_json_prints_the_link_cursors(tmp_path: Path, sites: dict[str, Path]) -> None:
    data = tmp_path / "data"
    assert outpost("init", sites["branch-1"], "--data-dir", data, cwd=tmp_path).returncode == 0
    result = outpost("status", sites["branch-1"], "--data-dir", data, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["node_id"] == "branch-1" and status["role"] == "branch"
    (link,) = status["links"]
    assert link["peer"] == "hq" and link["direction"] == "upstream"
    for key in ("pull_since", "pull_cursor", "push_since", "push_cursor", "acked_through"):
        assert link[key] == 0, key
    assert link["pending_push"] == 0


def test_status_table(tmp_path: Path, sites: dict[str, Path]) -> None:
    data = tmp_path / "data"
    assert outpost("init", sites["branch-1"], "--data-dir", data, cwd=tmp_path).returncode == 0
    result = outpost("status", sites["branch-1"], "--data-dir", data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "branch-1" in result.stdout and "hq" in result.stdout


def test_status_without_a_database(tmp_path: Path, sites: dict[str, Path]) -> None:
    data = tmp_path / "nowhere"
    message = one_line_failure(outpost("status", sites["branch-1"], "--data-dir", data, "--json", cwd=tmp_path))
    assert "No Outpost store" in message and "outpost init" in message
    assert not (data / "branch-1.db").exists(), "status created a database"


def test_missing_config(tmp_path: Path) -> None:
    message = one_line_failure(outpost("status", tmp_path / "absent.toml", cwd=tmp_path))
    assert "absent.toml" in message and "cannot read" in message
    message = one_line_failure(outpost("status", "no-such-site", cwd=tmp_path))
    assert "no-such-site" in message


@pytest.mark.parametrize(
    ("toml", "path", "expected"),
    [
        ('node_id = "hq"\nrole = "hq"\n[sync]\ninterval_s = "fast"\n', "$.sync.interval_s", "Expected `float`"),
        ('node_id = "hq"\nrole = "hq"\n[listen]\nport = 70000\n', "$.listen.port", "<= 65535"),
        ('node_id = "hq"\nrole = "hq"\n[sync]\nmax_drift_ms = -5\n', "$.sync.max_drift_ms", ">= 0"),
        ('node_id = "hq"\nrole = "hq"\n[[nodes]]\nnode_id = "b"\nrole = "moon-base"\n', "$.nodes[0].role", ""),
        ('node_id = "hq"\nrole = "hq"\n[sync]\nintervall_s = 5.0\n', "$.sync", "unknown field"),
        ('node_id = "b"\nrole = "branch"\n', "$.upstream", "upstream"),
        ('node_id = "hq"\nrole = hq\n', "line 2", "Invalid value"),
    ],
    ids=["wrong-type", "port-range", "negative", "bad-enum", "unknown-key", "no-upstream", "not-toml"],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, path: str, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    for command in ("init", "status"):
        message = one_line_failure(outpost(command, config, "--data-dir", tmp_path / "data", cwd=tmp_path))
        assert "bad.toml" in message
        assert path in message and expected in message, message
    assert not (tmp_path / "data").exists(), "a bad config still created the data dir"


def test_sync_against_an_unreachable_upstream(tmp_path: Path, sites: dict[str, Path]) -> None:
    data = tmp_path / "data"
    assert outpost("init", sites["branch-1"], "--data-dir", data, cwd=tmp_path).returncode == 0
    port = free_port()  # nothing listens there
    result = outpost("sync", sites["branch-1"], "--data-dir", data, "--upstream-url", f"http://127.0.0.1:{port}",
                     "--quiet", cwd=tmp_path)
    message = one_line_failure(result)
    assert "Cannot reach `hq`" in message
    status = json.loads(outpost("status", sites["branch-1"], "--data-dir", data, "--json", cwd=tmp_path).stdout)
    assert status["links"][0]["last_error"].startswith("link_down")


def test_sync_against_a_running_hq(
    tmp_path: Path, sites: dict[str, Path], make_cluster: ClusterFactory, aio: LoopThread
) -> None:
    customers = 25

    async def start_hq_with_customers() -> str:
        cluster = await make_cluster(0)
        for i in range(customers):
            await cluster.hq.call("POST", "/customers", json={"star_level": i % 8, "segment": "gold"})
        return cluster.hq.url

    hq_url = aio.run(start_hq_with_customers(), timeout=60)
    data = tmp_path / "data"
    assert outpost("init", sites["branch-1"], "--data-dir", data, cwd=tmp_path).returncode == 0

    async def write_local_changes() -> None:
        store = await SqliteStore.open(data / "branch-1.db", node_id="branch-1", clock=Clock(wall_clock_ms, 60_000))
        try:
            row = new_ulid(wall_clock_ms(), b"0123456789")
            await store.write_local([Edit("customers", row, "star_level", value=7),
                                     Edit("customers", row, "segment", value="platinum"),
                                     Edit("customers", row, "tags", "add", "from-branch")])
        finally:
            await store.close()

    asyncio.run(write_local_changes())
    args = ("sync", sites["branch-1"], "--data-dir", data, "--upstream-url", hq_url)
    result = outpost(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("synced branch-1 with hq: "), line
    # HQ's customers (two fields each), and the epochs of branch-1's scope keys (four classes and the
    # blind index; two fields each: what the record is, and the live version)
    pulled = customers * 2 + 5 * 2
    assert "pushed 3 " in line and f"pulled {pulled} " in line and f"applied {pulled} " in line, line

    again = outpost(*args, "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "pushed 0 pulled 0 " in again.stdout, again.stdout

    status = json.loads(outpost("status", sites["branch-1"], "--data-dir", data, "--json", cwd=tmp_path).stdout)
    (link,) = status["links"]
    assert link["pull_cursor"] > 0 and link["pull_since"] == link["pull_cursor"]
    assert link["push_cursor"] > 0 and link["pending_push"] == 0
    assert link["last_error"] is None
    assert status["rows"]["customers"] == customers + 1
