"""The keystore file: sealed with a passphrase, atomic saves, mode 0o600, no secret in its bytes."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from crypto.errors import (
    KeystoreExistsError,
    KeystoreFormatError,
    KeystoreMissingError,
    KeystorePassphraseError,
)
from crypto.identity import NodeIdentity
from crypto.keys import ScopeKey, new_key
from crypto.keystore import MAGIC, Keystore, _write_atomic, change_passphrase, create_keystore, open_keystore

N = 2**10  # scrypt cost for tests; the default is 2**15
PASSPHRASE = "correct horse battery staple 马"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "branch-a.keystore"


@pytest.fixture
def keystore(path: Path) -> Keystore:
    return create_keystore(path, "branch-a", PASSPHRASE, n=N)


def secrets_of(keystore: Keystore) -> list[bytes]:
    out = [keystore._key]
    for record in keystore.contents.identities:
        out += [record.sign_key, record.kem_key]
    out += [record.key for record in keystore.contents.scope_keys]
    return out


def test_create_and_open(keystore: Keystore, path: Path) -> None:
    again = open_keystore(path, PASSPHRASE)
    assert again.node_id == "branch-a"
    assert again.identity.public() == keystore.identity.public()
    assert again.identity.key_version == 1
    assert again.scope_keys() == []
    assert path.read_bytes().startswith(MAGIC)


def test_create_refuses_an_existing_file(keystore: Keystore, path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(KeystoreExistsError) as caught:
        create_keystore(path, "branch-a", PASSPHRASE, n=N)
    assert caught.value.path == path
    assert path.read_bytes() == before


def test_exclusive_write_never_replaces_a_file(path: Path) -> None:
    # what create_keystore relies on when another process creates the file after its check
    path.write_bytes(b"first")
    with pytest.raises(KeystoreExistsError):
        _write_atomic(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_open_missing(path: Path) -> None:
    with pytest.raises(KeystoreMissingError) as caught:
        open_keystore(path, PASSPHRASE)
    assert caught.value.path == path


def test_wrong_passphrase(keystore: Keystore, path: Path) -> None:
    keystore.add_scope_key(ScopeKey(new_key(), 1, "branch-a", "contact"))
    keystore.save()
    with pytest.raises(KeystorePassphraseError) as caught:
        open_keystore(path, PASSPHRASE + "!")
    message = str(caught.value)
    assert message == f"wrong passphrase for keystore {path} (or the file was altered)"
    assert PASSPHRASE not in message
    for secret in secrets_of(keystore):
        assert secret.hex() not in message and repr(secret) not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(KeystorePassphraseError):
        open_keystore(path, "")


def test_passphrase_is_nfc_normalised(path: Path) -> None:
    create_keystore(path, "hq", "caf\u00e9", n=N)  # é precomposed
    assert open_keystore(path, "cafe\u0301").node_id == "hq"  # e + combining acute


def test_empty_passphrase_and_bad_cost_are_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        create_keystore(path, "hq", "", n=N)
    with pytest.raises(ValueError, match="power of 2"):
        create_keystore(path, "hq", PASSPHRASE, n=1000)
    assert not path.exists()


def test_no_secret_in_the_file(keystore: Keystore, path: Path) -> None:
    keystore.add_scope_key(ScopeKey(new_key(), 1, "branch-a", "contact"))
    keystore.add_identity(NodeIdentity.generate("branch-a", 2))
    keystore.save()
    data = path.read_bytes()
    for encoded in (PASSPHRASE.encode(), PASSPHRASE.encode("utf-16-le"), PASSPHRASE.encode()[:8]):
        assert encoded not in data
    for secret in secrets_of(keystore):
        assert len(secret) == 32
        assert secret not in data and secret[:8] not in data and secret.hex().encode() not in data


def test_file_mode_is_0600(path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        keystore = create_keystore(path, "branch-a", PASSPHRASE, n=N)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        os.chmod(path, 0o644)
        keystore.save()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_scope_keys_persist_after_save(keystore: Keystore, path: Path) -> None:
    keys = [ScopeKey(new_key(), v, "branch-a", "contact") for v in (1, 2, 3)]
    identity_key = ScopeKey(new_key(), 1, "branch-a", "identity")
    for key in [*keys, identity_key]:
        keystore.add_scope_key(key)
    keystore.add_scope_key(keys[0])  # idempotent
    assert len(keystore.scope_keys()) == 4
    # unsaved changes are not in the file
    assert open_keystore(path, PASSPHRASE).scope_keys() == []
    keystore.save()
    again = open_keystore(path, PASSPHRASE)
    assert [k.raw for k in again.scope_keys("branch-a", "contact")] == [k.raw for k in keys]
    assert again.latest_scope_key("branch-a", "contact").raw == keys[2].raw
    assert again.scope_key("branch-a", "identity", 1).raw == identity_key.raw
    assert again.scope_key("branch-a", "identity", 2) is None
    assert again.latest_scope_key("branch-b", "contact") is None
    assert [k.field_class for k in again.scope_keys(field_class="identity")] == ["identity"]

    assert again.drop_scope_keys_below("branch-a", "contact", 3) == 2
    again.save()
    third = open_keystore(path, PASSPHRASE)
    assert [(k.field_class, k.version) for k in third.scope_keys()] == [("contact", 3), ("identity", 1)]


def test_a_different_scope_key_under_a_held_version_is_refused(keystore: Keystore) -> None:
    keystore.add_scope_key(ScopeKey(new_key(), 1, "branch-a", "contact"))
    with pytest.raises(ValueError, match="another scope key branch-a/contact v1"):
        keystore.add_scope_key(ScopeKey(new_key(), 1, "branch-a", "contact"))


def test_identity_rotation(keystore: Keystore, path: Path) -> None:
    first = keystore.identity
    second = NodeIdentity.generate("branch-a", 2)
    keystore.add_identity(second)
    keystore.add_identity(second)  # idempotent
    keystore.save()
    again = open_keystore(path, PASSPHRASE)
    assert again.identity.public() == second.public()
    assert again.identity_for(1).public() == first.public()
    assert again.identity_for(3) is None
    with pytest.raises(ValueError, match="no identity of version 3"):
        again.drop_identities_below(3)
    assert again.drop_identities_below(2) == 1
    again.save()
    assert open_keystore(path, PASSPHRASE).identity_for(1) is None
    with pytest.raises(ValueError, match="node hq"):
        again.add_identity(NodeIdentity.generate("hq", 5))
    with pytest.raises(ValueError, match="other keys as identity version 2"):
        again.add_identity(NodeIdentity.generate("branch-a", 2))


def test_change_passphrase(keystore: Keystore, path: Path) -> None:
    salt_before = path.read_bytes()[:120]
    change_passphrase(keystore, "new passphrase", n=N)
    assert path.read_bytes()[:120] != salt_before
    with pytest.raises(KeystorePassphraseError):
        open_keystore(path, PASSPHRASE)
    assert open_keystore(path, "new passphrase").identity.public() == keystore.identity.public()
    keystore.save()  # the derived key is the new one
    assert open_keystore(path, "new passphrase").node_id == "branch-a"


def test_saves_leave_no_temporary_file(keystore: Keystore, path: Path) -> None:
    for _ in range(3):
        keystore.save()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_every_save_uses_a_fresh_nonce(keystore: Keystore, path: Path) -> None:
    first = path.read_bytes()
    keystore.save()
    assert path.read_bytes() != first


@pytest.mark.parametrize("where", ["magic", "header", "contents"])
def test_truncated_file(keystore: Keystore, path: Path, where: str) -> None:
    data = path.read_bytes()
    cut = {"magic": 5, "header": len(MAGIC) + 10, "contents": len(data) - 1}[where]
    path.write_bytes(data[:cut])
    with pytest.raises(KeystoreFormatError, match="truncated"):
        open_keystore(path, PASSPHRASE)


def test_every_truncation_is_a_format_error(keystore: Keystore, path: Path) -> None:
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(KeystoreFormatError):
            open_keystore(path, PASSPHRASE)
    path.write_bytes(data + b"\x00")
    with pytest.raises(KeystoreFormatError, match="trailing bytes"):
        open_keystore(path, PASSPHRASE)


@pytest.mark.parametrize(
    ("garble", "detail"),
    [
        (lambda d: b"NOT-A-KEYSTORE!!\n" + d[17:], "bad magic"),
        (lambda d: os.urandom(200), "bad magic"),
        (lambda d: b"", "truncated"),
        (lambda d: d[: len(MAGIC)] + b"\x02" + d[len(MAGIC) + 1 :], "format 2"),
        (lambda d: d[: len(MAGIC) + 1] + b"\x00\x03" + d[len(MAGIC) + 3 :], "header does not decode"),
        (lambda d: d[: len(MAGIC) + 3] + b"\xc1" + d[len(MAGIC) + 4 :], "header does not decode"),
        (lambda d: d.replace(b"scrypt", b"argonx", 1), "kdf other than scrypt"),
    ],
)
def test_garbled_file(keystore: Keystore, path: Path, garble: Callable[[bytes], bytes], detail: str) -> None:
    path.write_bytes(garble(path.read_bytes()))
    with pytest.raises(KeystoreFormatError, match=detail) as caught:
        open_keystore(path, PASSPHRASE)
    assert PASSPHRASE not in str(caught.value)


def test_scrypt_cost_is_bounded_before_running(keystore: Keystore, path: Path) -> None:
    # n = 2**30 would take minutes and gigabytes: refused from the header alone
    data = path.read_bytes()
    start = len(MAGIC) + 3
    length = int.from_bytes(data[len(MAGIC) + 1 : start], "big")
    header = msgspec.msgpack.decode(data[start : start + length])
    header["n"] = 2**30
    encoded = msgspec.msgpack.encode(header)
    path.write_bytes(data[: len(MAGIC) + 1] + len(encoded).to_bytes(2, "big") + encoded + data[start + length :])
    with pytest.raises(KeystoreFormatError, match="scrypt parameters out of range"):
        open_keystore(path, PASSPHRASE)


def test_altered_ciphertext_or_header_reads_as_wrong_passphrase(keystore: Keystore, path: Path) -> None:
    data = path.read_bytes()
    for i in (len(data) - 1, len(data) - 20, data.index(b"salt") + 6):
        altered = bytearray(data)
        altered[i] ^= 0x01
        path.write_bytes(bytes(altered))
        with pytest.raises(KeystorePassphraseError):
            open_keystore(path, PASSPHRASE)


def test_repr_holds_no_key_material(keystore: Keystore) -> None:
    keystore.add_scope_key(ScopeKey(new_key(), 1, "branch-a", "contact"))
    texts = [repr(keystore), repr(keystore.contents), repr(keystore.scope_keys())]
    for secret in secrets_of(keystore):
        for text in texts:
            assert repr(secret) not in text and secret.hex() not in text
    assert "key=***" in repr(keystore.contents)
