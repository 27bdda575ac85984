"""Field sealing: round trips, every byte authenticated, AAD binds the field, known answers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import OpenError
from crypto.keys import DataKey, new_key
from crypto.seal import (
    MIN_SEALED_BYTES,
    FieldContext,
    _seal_with_nonce,
    field_aad,
    open_field,
    seal_field,
    sealed_key_version,
)

ROW_A = "01HZY7M3Q9V5X2K8R4T6W0B1C3"
ROW_B = "01HZY7M3Q9V5X2K8R4T6W0B1C4"
PHONE = "13800138000".encode()
KEY_A = DataKey(new_key(), 1)
KEY_B = DataKey(new_key(), 1)


def ctx(field: str = "phone", row_id: str = ROW_A, version: int = 1, collection: str = "customers") -> FieldContext:
    return FieldContext(collection, row_id, field, version)


def reason_of(key: DataKey, context: FieldContext, sealed: bytes) -> str:
    with pytest.raises(OpenError) as caught:
        open_field(key, context, sealed)
    return caught.value.reason


@pytest.mark.parametrize("value", ["", "13800138000", "张三", "北京市朝阳区建国路88号 3-1201", "😀\x00end"])
def test_round_trip(value: str) -> None:
    sealed = seal_field(KEY_A, ctx(), value.encode())
    assert open_field(KEY_A, ctx(), sealed).decode() == value
    assert len(sealed) == MIN_SEALED_BYTES + len(value.encode())


@given(value=st.binary(max_size=200), field=st.text(min_size=1, max_size=20), version=st.integers(0, 2**32 - 1))
def test_round_trip_any(value: bytes, field: str, version: int) -> None:
    key = DataKey(KEY_A.raw, version)
    context = ctx(field=field, version=version)
    sealed = seal_field(key, context, value)
    assert open_field(key, context, sealed) == value
    assert sealed_key_version(sealed) == version


def test_every_seal_draws_a_fresh_nonce() -> None:
    assert seal_field(KEY_A, ctx(), PHONE) != seal_field(KEY_A, ctx(), PHONE)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipping_any_byte_fails_with_its_reason(mask: int) -> None:
    sealed = seal_field(KEY_A, ctx(), PHONE)
    for i in range(len(sealed)):
        altered = bytearray(sealed)
        altered[i] ^= mask
        expected = "format" if i == 0 else "wrong_version" if i < 5 else "tag"
        assert reason_of(KEY_A, ctx(), bytes(altered)) == expected, f"byte {i}"


def test_truncated_or_extended_fails() -> None:
    sealed = seal_field(KEY_A, ctx(), PHONE)
    for cut in range(len(sealed)):
        expected = "format" if cut < MIN_SEALED_BYTES else "tag"
        assert reason_of(KEY_A, ctx(), sealed[:cut]) == expected, f"cut at {cut}"
    assert reason_of(KEY_A, ctx(), sealed + b"\x00") == "tag"


def test_ciphertext_moved_to_another_field_fails() -> None:
    name = seal_field(KEY_A, ctx("name"), "张三".encode())
    assert reason_of(KEY_A, ctx("phone"), name) == "tag"
    assert reason_of(KEY_A, ctx("phone", collection="tasks"), seal_field(KEY_A, ctx("phone"), PHONE)) == "tag"


def test_ciphertext_moved_to_another_customer_fails() -> None:
    sealed = seal_field(KEY_A, ctx(row_id=ROW_A), PHONE)
    # the same key, to show that the AAD alone refuses the move
    assert reason_of(KEY_A, ctx(row_id=ROW_B), sealed) == "tag"
    # and the other customer's own key
    assert reason_of(KEY_B, ctx(row_id=ROW_B), sealed) == "tag"


def test_another_key_of_the_same_version_fails() -> None:
    assert reason_of(KEY_B, ctx(), seal_field(KEY_A, ctx(), PHONE)) == "tag"


def test_key_versions_must_agree() -> None:
    key_v2 = DataKey(KEY_A.raw, 2)
    with pytest.raises(ValueError, match="key version 2, the key is version 1"):
        seal_field(KEY_A, ctx(version=2), PHONE)
    sealed_v1 = seal_field(KEY_A, ctx(version=1), PHONE)
    assert reason_of(key_v2, ctx(version=2), sealed_v1) == "wrong_version"  # header says 1
    assert reason_of(key_v2, ctx(version=1), sealed_v1) == "wrong_version"  # key is 2
    assert reason_of(KEY_A, ctx(version=2), sealed_v1) == "wrong_version"  # context says 2


def test_open_error_names_the_field_and_never_the_value() -> None:
    sealed = bytearray(seal_field(KEY_A, ctx(), PHONE))
    sealed[-1] ^= 1
    with pytest.raises(OpenError) as caught:
        open_field(KEY_A, ctx(), bytes(sealed))
    error = caught.value
    assert str(error) == f"cannot open customers.phone of row {ROW_A}: tag"
    assert (error.collection, error.row_id, error.field) == ("customers", ROW_A, "phone")
    assert error.details() == {"collection": "customers", "row_id": ROW_A, "field": "phone", "reason": "tag"}
    assert error.__cause__ is None and error.__suppress_context__


def test_sealed_key_version() -> None:
    assert MIN_SEALED_BYTES == 33  # open_field spells it as a literal
    assert sealed_key_version(seal_field(DataKey(KEY_A.raw, 70_000), ctx(version=70_000), b"")) == 70_000
    assert sealed_key_version(b"") is None
    assert sealed_key_version(b"\x01" + bytes(MIN_SEALED_BYTES - 2)) is None
    assert sealed_key_version(b"\x02" + bytes(MIN_SEALED_BYTES)) is None


def test_known_answer() -> None:
    key = DataKey(bytes(range(32)), 7)
    nonce = bytes(range(100, 112))
    context = FieldContext("customers", ROW_A, "phone", 7)
    # the associated data written out by hand: MessagePack fixarray(6) of fixstr "outpost/field",
    # bin8 of the 5-byte header (format 1, key version 7), fixstr collection, fixstr row id,
    # fixstr field, fixint 7
    aad = (b"\x96" + b"\xadoutpost/field" + b"\xc4\x05\x01\x00\x00\x00\x07" + b"\xa9customers"
           + b"\xba" + ROW_A.encode() + b"\xa5phone" + b"\x07")
    assert field_aad(context) == aad
    expected = b"\x01" + (7).to_bytes(4, "big") + nonce + AESGCM(bytes(range(32))).encrypt(nonce, PHONE, aad)
    sealed = _seal_with_nonce(key, context, PHONE, nonce)
    assert sealed == expected
    # pinned, so a change of layout on both sides still shows
    assert sealed.hex() == (
        "01000000076465666768696a6b6c6d6e6f7928e65649d865a60e526facd23156374bb1869b813e829f898764"
    )
    assert open_field(key, context, sealed) == PHONE
    # seal_field (which inlines the AAD) agrees with the hand-written layout too
    fresh = seal_field(key, context, PHONE)
    assert fresh[:5] == b"\x01\x00\x00\x00\x07"
    assert AESGCM(bytes(range(32))).decrypt(fresh[5:17], fresh[17:], aad) == PHONE


def test_known_answer_for_long_strings_uses_str8() -> None:
    context = FieldContext("customers", "r" * 40, "phone", 300)
    assert field_aad(context) == (
        b"\x96\xadoutpost/field\xc4\x05\x01\x00\x00\x01\x2c\xa9customers" + b"\xd9\x28" + b"r" * 40
        + b"\xa5phone" + b"\xcd\x01\x2c"
    )


@given(a=st.tuples(st.text(), st.text(), st.text(), st.integers(0, 2**32 - 1)),
       b=st.tuples(st.text(), st.text(), st.text(), st.integers(0, 2**32 - 1)))
def test_field_aad_is_unambiguous(a: tuple[str, str, str, int], b: tuple[str, str, str, int]) -> None:
    assert (field_aad(FieldContext(*a)) == field_aad(FieldContext(*b))) == (a == b)


def test_field_aad_keeps_concatenations_apart() -> None:
    assert field_aad(FieldContext("customers", "ab", "c", 1)) != field_aad(FieldContext("customers", "a", "bc", 1))


def test_nonce_must_be_12_bytes() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        _seal_with_nonce(KEY_A, ctx(), PHONE, bytes(8))


def test_data_key_checks_and_hides_its_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(bytes(16), 1)
    with pytest.raises(ValueError, match="key version"):
        DataKey(bytes(32), 2**32)
    assert repr(KEY_A) == "DataKey(version=1)"
    assert KEY_A.raw.hex() not in repr(KEY_A)
