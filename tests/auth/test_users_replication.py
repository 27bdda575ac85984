"""Users replicate to the nodes of their site only; a tombstone shreds the hash;
layout 4 brings the sign-in tables to an older store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import msgspec

from server.passwords import PasswordCheck
from sync.edits import Edit
from sync.hlc import Clock
from sync.scope import PeerScope
from sync.store.migrations import LAYOUT_VERSION
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.auth.conftest import ADMIN, PASSWORD, Deployment, bearer, sign_in
from tests.auth.test_sign_in import refused


def usernames(deployment: Deployment, node: str) -> list[str]:
    async def read() -> list[str]:
        store = await deployment.open_store(node)
        try:
            return sorted(r["username"] for r in await store.find_rows("users"))
        finally:
            await store.close()

    return asyncio.run(read())


def test_users_reach_the_nodes_of_their_site_only(deployment: Deployment) -> None:
    assert usernames(deployment, "hq") == ["ana", "bo", "max"]
    assert usernames(deployment, "branch-a") == ["ana", "max"]
    assert usernames(deployment, "branch-b") == ["bo"]
    with deployment.client("hq") as hq:
        for branch in ("branch-a", "branch-b"):
            expected = hq.get("/status/digest", params={"peer": branch}, headers=ADMIN).json()["users_digest"]
            with deployment.client(branch) as client:
                assert client.get("/status/digest", headers=ADMIN).json()["users_digest"] == expected


def test_scope_of_a_user_row() -> None:
    def doc(site: str | None) -> dict[str, list[object]]:
        return {} if site is None else {"site": [msgspec.msgpack.encode(site), 1, "hq", 1, ""]}

    branch = PeerScope(node="branch-a", groups=frozenset({"branch-a"}), classes=frozenset())
    second_hq = PeerScope(node="hq2", groups=None, classes=frozenset())
    assert branch.admits("users", doc("branch-a"))
    assert not branch.admits("users", doc("branch-b"))
    assert not branch.admits("users", doc(None))
    assert second_hq.admits("users", doc("branch-b"))
    assert branch.admits("customers", doc("branch-b"))  # other collections as before


def test_a_deleted_user_keeps_no_hash_anywhere(deployment: Deployment) -> None:
    ana = deployment.user_ids["ana"]

    async def delete() -> None:
        store = await deployment.open_store("hq")
        try:
            await store.write_local([Edit("users", ana, "deleted", "set", True)])
        finally:
            await store.close()

    asyncio.run(delete())
    asyncio.run(deployment.sync("branch-a"))
    for node in ("hq", "branch-a"):
        db = sqlite3.connect(deployment.configs[node].db_path)
        try:
            (hash_column, state) = db.execute("SELECT password_hash, _state FROM users WHERE row_id = ?",
                                              (ana,)).fetchone()
        finally:
            db.close()
        assert hash_column is None and b"argon2" not in state and b"password_hash" not in state
    with deployment.client("branch-a") as client:
        refused(client.post("/auth/sign-in", json={"username": "ana", "password": PASSWORD}), 401, "sign_in_failed")


def test_layout_4_adds_the_sign_in_tables_and_user_columns_to_an_older_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"

    async def make() -> None:
        store = await SqliteStore.create(path, node_id="branch-a", role="branch", clock=Clock(wall_clock_ms, 60_000))
        await store.close()

    asyncio.run(make())
    db = sqlite3.connect(path)  # as a layout-3 store left it
    for statement in ("DROP TABLE auth_sessions", "DROP TABLE auth_refresh_tokens", "DROP TABLE auth_devices",
                      "DROP INDEX users_username", "ALTER TABLE users DROP COLUMN password_hash",
                      "ALTER TABLE users DROP COLUMN tokens_valid_after_ms", "DROP TABLE peer_rows",
                      "DROP TABLE peer_drops", "ALTER TABLE links DROP COLUMN pull_scope",
                      "ALTER TABLE nodes DROP COLUMN offboarding_ms", "ALTER TABLE nodes DROP COLUMN retired_ms",
                      "PRAGMA user_version = 3"):
        db.execute(statement)
    db.commit()
    db.close()

    async def reopen() -> None:
        store = await SqliteStore.open(path, clock=Clock(wall_clock_ms, 60_000))
        await store.close()

    asyncio.run(reopen())
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (LAYOUT_VERSION,) == (7,)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        columns = {r[1] for r in db.execute("PRAGMA table_info(users)")}
    finally:
        db.close()
    assert {"auth_sessions", "auth_refresh_tokens", "auth_devices", "users_username"} <= tables
    assert {"password_hash", "tokens_valid_after_ms"} <= columns


def test_only_user_rows_as_hq_wrote_them_sign_anyone_in(deployment: Deployment) -> None:
    """No API writes users below HQ, but a node could push such writes: a row
    with a field written outside HQ signs no one in."""
    async def forge(token_holder: str) -> None:
        store = await deployment.open_store("branch-a")
        try:
            hashed = await PasswordCheck().hash(PASSWORD)
            fields = {"username": "mallory", "role": "hq_admin", "site": "branch-a", "password_hash": hashed}
            await store.write_local([Edit("users", "01JD0QK2M6X3Z1V9A8B7C6D5E4", k, "set", v) for k, v in fields.items()])
            await store.write_local([Edit("users", deployment.user_ids[token_holder], "disabled", "set", False)])
        finally:
            await store.close()

    with deployment.client("branch-a") as client:
        pair = sign_in(client, "max")
        asyncio.run(forge("max"))
        refused(client.post("/auth/sign-in", json={"username": "mallory", "password": PASSWORD}), 401,
                "sign_in_failed")
        refused(client.get("/auth/me", headers=bearer(pair["access_token"])), 401, "unauthorized", "user_unknown")
        refused(client.post("/auth/sign-in", json={"username": "max", "password": PASSWORD}), 401, "sign_in_failed")
        assert sign_in(client, "ana")["principal"]["username"] == "ana"
