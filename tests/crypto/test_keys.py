"""Keys: fresh randomness, injectable for tests; versions and lengths checked; repr hides keys."""

from __future__ import annotations

import pytest

from crypto.keys import KEY_BYTES, DataKey, ScopeKey, new_key


def test_new_key_is_fresh_and_injectable() -> None:
    assert len(new_key()) == KEY_BYTES
    assert new_key() != new_key()
    assert new_key(lambda n: b"\x07" * n) == b"\x07" * 32
    with pytest.raises(ValueError, match="returned 16 bytes"):
        new_key(lambda n: bytes(16))


def test_scope_key_carries_its_labels_and_hides_its_key() -> None:
    raw = new_key()
    key = ScopeKey(raw, 3, "branch-a", "contact")
    assert (key.version, key.group, key.field_class, key.raw) == (3, "branch-a", "contact", raw)
    assert repr(key) == "ScopeKey(group='branch-a', field_class='contact', version=3)"
    with pytest.raises(ValueError, match="32 bytes"):
        ScopeKey(raw[:31], 3, "branch-a", "contact")


def test_data_key_builds_its_cipher_once() -> None:
    key = DataKey(new_key(), 1)
    assert key.cipher is key.cipher
    with pytest.raises(AttributeError):
        key.other = 1  # type: ignore[attr-defined]
