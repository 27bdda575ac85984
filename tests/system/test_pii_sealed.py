"""PII sealed everywhere: byte searches of real nodes' files, key scope, erasure.

Real processes on loopback, real SQLite files and keystores; the checks read the
files' bytes (and the keystore with its passphrase), not the code's intentions.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from crypto.errors import OpenError, UnwrapError
from crypto.keys import DataKey
from crypto.keystore import open_keystore
from crypto.seal import FieldContext, open_field, sealed_key_version
from crypto.wrap import DataKeyWrapContext, unpack_row_key, unwrap_data_key
from server.demo import DEMO_ID_CONSENT, demo_person
from server.node_process import NodeProcess
from server.pii_scan import inflated, needle_forms

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parents[2]


def _blobs(data: bytes) -> list[bytes]:
    """The bytes, and whatever any zlib stream inside them inflates to."""
    return [data, *inflated(data)]


def test_demo_leaves_no_plaintext_pii_anywhere(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "server", "demo", "--customers", "12", "--workdir", str(workdir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    files = [p for p in workdir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"hq.db", "branch-a.db", "partner-x.db", "hq.log", "link-branch-b.traffic"} <= names
    traffic = (workdir / "link-branch-b.traffic").read_bytes()
    assert len(traffic) > 10_000, "the captured traffic holds the sync of the demo"
    needles = needle_forms([v for i in range(12) for v in demo_person(i).values()])
    # the search itself finds a value where there is one
    assert any(n in b for b in _blobs(zlib.compress(b"x" + demo_person(3)["name"].encode())) for n in needles)
    for path in files:
        for blob in _blobs(path.read_bytes()):
            found = [n for n in needles if n in blob]
            assert not found, f"{path.name} holds demo PII in plaintext"


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _open_everything(db: Path, keystore_path: Path, passphrase: str, field: str) -> list[bytes]:
    """Everything a holder of this database and keystore can open of ``field``:
    every scope key in the keystore tried on every data-key record, every data key
    on every sealed value."""
    keystore = open_keystore(keystore_path, passphrase)
    data_keys: dict[tuple[str, int], list[DataKey]] = {}
    for cust, cls, group, kv, wrapped in _data_key_wraps(db):
        for sk in keystore.scope_keys():
            if sk.group != group or sk.field_class != cls:
                continue
            ctx = DataKeyWrapContext(customer_id=cust, field_class=cls, group=group, scope_version=sk.version, key_version=kv)
            try:
                data_keys.setdefault((cust, kv), []).append(DataKey(unwrap_data_key(sk, wrapped, ctx), kv))
            except (UnwrapError, ValueError):
                pass
    opened = []
    for row_id, sealed in _rows(db, f"SELECT row_id, {field} FROM customers WHERE {field} IS NOT NULL"):
        version = sealed_key_version(sealed)
        for key in data_keys.get((row_id, version), []):
            try:
                opened.append(open_field(key, FieldContext("customers", row_id, field, version), sealed))
            except OpenError:
                pass
    return opened


def _data_key_wraps(db: Path, customer: str | None = None) -> list[tuple[str, str, str, int, bytes]]:
    """(customer, class, group, key version, wrapped key) of every data key wrap in
    the file: the ones in customer rows (home group) and the ``data_key`` records."""
    out = [
        (cust, cls, group, kv, wrapped) for cust, cls, group, kv, wrapped in _rows(
            db, "SELECT customer_id, field_class, scope_group, key_version, wrapped "
                "FROM keys WHERE kind = 'data_key' AND wrapped IS NOT NULL")
    ]
    for cls in ("contact", "identity", "address", "profile"):
        for cust, blob in _rows(db, f"SELECT row_id, {cls}_key FROM customers WHERE {cls}_key IS NOT NULL"):
            key = unpack_row_key(blob, "test")
            out.append((cust, cls, key.group, key.key_version, key.wrapped))
    return [w for w in out if customer is None or w[0] == customer]


def _copy_db(node: NodeProcess, name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        src = node.data_dir / f"{name}.db{suffix}"
        if src.exists():
            shutil.copy(src, dest / src.name)
    return dest / f"{name}.db"


async def _pair(tmp_path: Path, site: str) -> tuple[NodeProcess, NodeProcess, list[str]]:
    hq = NodeProcess("hq", tmp_path, token="tok")
    hq.init()
    await hq.start()
    node = NodeProcess(site, tmp_path, token="tok", upstream_url=hq.url)
    node.init()
    await node.start()
    await node.enroll()
    ids = []
    for i in range(6):
        card = await hq.call("POST", "/customers", json={
            "home_branch": "branch-a", "partners_add": [site] if site != "branch-a" else [], **demo_person(i),
            **DEMO_ID_CONSENT})
        ids.append(card["row_id"])
    for _ in range(2):
        await node.sync_now()
    return hq, node, ids


def test_partner_copy_with_its_keystore_opens_no_id_number(tmp_path: Path, aio: Any) -> None:
    async def scenario() -> None:
        hq, partner, ids = await _pair(tmp_path, "partner-x")
        try:
            card = await partner.call("GET", f"/customers/{ids[0]}")
            assert card["name"] == demo_person(0)["name"] and card["id_number"] is None
            assert card["unavailable"] == [], "no ID number at the partner at all: its policy hides it"
        finally:
            await partner.stop()
            await hq.stop()
        db = _copy_db(partner, "partner-x", tmp_path / "stolen")
        keystore = partner.data_dir / "partner-x.keystore"
        ks = open_keystore(keystore, partner.passphrase)
        # the policy's partner roles see names and phones masked (contact) and write call
        # notes (profile); no lookups: the blind-index key stays at HQ
        assert {k.field_class for k in ks.scope_keys()} == {"contact", "profile"}
        names = _open_everything(db, keystore, partner.passphrase, "name")
        assert sorted(n.decode() for n in names) == sorted(demo_person(i)["name"] for i in range(6))
        assert _open_everything(db, keystore, partner.passphrase, "id_number") == []
        assert _rows(db, "SELECT count(*) FROM keys WHERE field_class = 'identity'") == [(0,)]

    aio.run(scenario())


def test_erasure_leaves_nothing_to_open_even_in_an_older_copy(tmp_path: Path, aio: Any) -> None:
    async def scenario() -> None:
        hq, branch, ids = await _pair(tmp_path, "branch-a")
        erased = ids[2]
        try:
            assert (await branch.call("GET", f"/customers/{erased}"))["id_number"] == demo_person(2)["id_number"]
            await branch.stop()
            before = _copy_db(branch, "branch-a", tmp_path / "before")
            branch.client = type(branch.client)(base_url=branch.url, headers={"authorization": "Bearer tok"}, timeout=60)
            await branch.start()
            report = await hq.call("POST", f"/customers/{erased}/erase", json={"requested_by": "data_subject", "basis": "subject_request"})
            assert report["data_keys_shredded"] >= 3 and report["rotations"]
            for _ in range(2):
                await branch.sync_now()
            card = await branch.call("GET", f"/customers/{erased}")
            assert card["deleted"] and card["name"] is None and card["id_number"] is None
            other = await branch.call("GET", f"/customers/{ids[3]}")
            assert other["id_number"] == demo_person(3)["id_number"], "the rotation kept the others readable"
        finally:
            await branch.stop()
            await hq.stop()
        keystore = branch.data_dir / "branch-a.keystore"
        for field in ("name", "phone", "id_number", "address"):
            opened = {v.decode() for v in _open_everything(before, keystore, branch.passphrase, field)}
            assert demo_person(2)[field] not in opened, f"the old copy still opens the erased {field}"
        old_wraps = [w[-1] for w in _data_key_wraps(before, erased)]
        assert len(old_wraps) >= 3
        for suffix in ("", "-wal", "-journal"):
            for node, name in ((branch, "branch-a"), (hq, "hq")):
                path = node.data_dir / f"{name}.db{suffix}"
                if path.exists():
                    data = path.read_bytes()
                    assert not any(w in data for w in old_wraps), f"{path.name} still holds an erased key's wrap"

    aio.run(scenario())
