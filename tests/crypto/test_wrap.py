"""Key wrapping: scope keys to a node by HPKE, data keys under a scope key by AES-GCM."""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from crypto.errors import UnwrapError
from crypto.identity import NodeIdentity
from crypto.keys import ScopeKey, new_key
from crypto.wrap import (
    WRAPPED_DATA_KEY_BYTES,
    WRAPPED_SCOPE_KEY_BYTES,
    DataKeyWrapContext,
    RowKey,
    ScopeWrapContext,
    _wrap_data_key_with_nonce,
    pack_row_key,
    unpack_row_key,
    data_key_aad,
    scope_wrap_info,
    unwrap_data_key,
    unwrap_scope_key,
    wrap_data_key,
    wrap_scope_key,
)

HQ = NodeIdentity.generate("hq")
BRANCH_A = NodeIdentity.generate("branch-a")
BRANCH_B = NodeIdentity.generate("branch-b")
SCOPE_RAW = new_key()
TO_A = ScopeWrapContext(
    recipient="branch-a", recipient_key_version=1, group="branch-a", field_class="contact", version=2
)

SCOPE = ScopeKey(SCOPE_RAW, 2, "branch-a", "contact")
DATA_RAW = new_key()
CUSTOMER = "01HZY7M3Q9V5X2K8R4T6W0B1C3"
DK_CTX = DataKeyWrapContext(
    customer_id=CUSTOMER, field_class="contact", group="branch-a", scope_version=2, key_version=1
)


def wrap_for_a() -> bytes:
    return wrap_scope_key(BRANCH_A.public().kem_pub, SCOPE_RAW, TO_A)


def scope_reason(identity: NodeIdentity, sealed: bytes, ctx: ScopeWrapContext = TO_A) -> str:
    with pytest.raises(UnwrapError) as caught:
        unwrap_scope_key(identity.kem_key, sealed, ctx)
    return caught.value.reason


def data_reason(scope: ScopeKey, sealed: bytes, ctx: DataKeyWrapContext = DK_CTX) -> str:
    with pytest.raises(UnwrapError) as caught:
        unwrap_data_key(scope, sealed, ctx)
    return caught.value.reason


# scope keys


def test_scope_key_round_trip() -> None:
    sealed = wrap_for_a()
    assert len(sealed) == WRAPPED_SCOPE_KEY_BYTES
    assert unwrap_scope_key(BRANCH_A.kem_key, sealed, TO_A) == SCOPE_RAW


def test_every_wrap_differs() -> None:
    assert wrap_for_a() != wrap_for_a()


def test_a_key_wrapped_for_node_a_does_not_unwrap_at_node_b() -> None:
    sealed = wrap_for_a()
    assert scope_reason(BRANCH_B, sealed) == "tag"
    assert scope_reason(BRANCH_B, sealed, msgspec.structs.replace(TO_A, recipient="branch-b")) == "tag"
    assert scope_reason(HQ, sealed) == "tag"


@pytest.mark.parametrize(
    "change",
    [
        {"recipient": "branch-b"},
        {"recipient_key_version": 2},
        {"group": "branch-b"},
        {"field_class": "identity"},
        {"version": 3},
    ],
)
def test_scope_key_is_bound_to_its_whole_context(change: dict[str, object]) -> None:
    assert scope_reason(BRANCH_A, wrap_for_a(), msgspec.structs.replace(TO_A, **change)) == "tag"


def test_scope_key_every_byte_is_checked() -> None:
    sealed = wrap_for_a()
    for i in range(len(sealed)):
        altered = bytearray(sealed)
        altered[i] ^= 0x01
        assert scope_reason(BRANCH_A, bytes(altered)) == ("format" if i == 0 else "tag"), f"byte {i}"
    for cut in (0, 1, 33, len(sealed) - 1):
        assert scope_reason(BRANCH_A, sealed[:cut]) == "format"
    assert scope_reason(BRANCH_A, sealed + b"\x00") == "format"


def test_scope_key_info_is_the_documented_encoding() -> None:
    info = (b"\x97\xb1outpost/scope-key\x01" + b"\xa8branch-a" + b"\x01" + b"\xa8branch-a" + b"\xa7contact" + b"\x02")
    assert scope_wrap_info(TO_A) == info
    # bare HPKE with the hand-written info opens what wrap_scope_key sealed
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
    assert suite.decrypt(wrap_for_a()[1:], BRANCH_A.kem_key, info=info) == SCOPE_RAW


def test_unwrap_error_names_the_key_and_never_holds_it() -> None:
    with pytest.raises(UnwrapError) as caught:
        unwrap_scope_key(BRANCH_B.kem_key, wrap_for_a(), TO_A)
    assert str(caught.value) == "cannot unwrap scope key branch-a/contact v2 for node branch-a: tag"
    assert SCOPE_RAW.hex() not in str(caught.value)


def test_wrap_refuses_malformed_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_scope_key(BRANCH_A.public().kem_pub, SCOPE_RAW[:16], TO_A)
    with pytest.raises(ValueError):
        wrap_scope_key(BRANCH_A.public().kem_pub[:31], SCOPE_RAW, TO_A)


# data keys


def test_data_key_round_trip() -> None:
    sealed = wrap_data_key(SCOPE, DATA_RAW, DK_CTX)
    assert len(sealed) == WRAPPED_DATA_KEY_BYTES
    assert unwrap_data_key(SCOPE, sealed, DK_CTX) == DATA_RAW
    assert wrap_data_key(SCOPE, DATA_RAW, DK_CTX) != sealed


def test_data_key_of_another_customer_fails() -> None:
    other = msgspec.structs.replace(DK_CTX, customer_id="01HZY7M3Q9V5X2K8R4T6W0B1C4")
    assert data_reason(SCOPE, wrap_data_key(SCOPE, DATA_RAW, DK_CTX), other) == "tag"


def test_data_key_of_another_key_version_fails() -> None:
    other = msgspec.structs.replace(DK_CTX, key_version=2)
    assert data_reason(SCOPE, wrap_data_key(SCOPE, DATA_RAW, DK_CTX), other) == "tag"


@pytest.mark.parametrize("change", [{"field_class": "identity"}, {"group": "branch-b"}, {"version": 3}])
def test_data_key_is_bound_to_its_scope_key_labels(change: dict[str, object]) -> None:
    # the same 32 bytes under other labels: only the associated data tells them apart
    relabelled = ScopeKey(
        SCOPE_RAW, change.get("version", 2), change.get("group", "branch-a"), change.get("field_class", "contact")
    )
    ctx = DataKeyWrapContext(CUSTOMER, relabelled.field_class, relabelled.group, relabelled.version, 1)
    assert data_reason(relabelled, wrap_data_key(SCOPE, DATA_RAW, DK_CTX), ctx) == "tag"


def test_data_key_under_another_scope_key_fails() -> None:
    other = ScopeKey(new_key(), 2, "branch-a", "contact")
    assert data_reason(other, wrap_data_key(SCOPE, DATA_RAW, DK_CTX)) == "tag"


def test_data_key_every_byte_is_checked() -> None:
    sealed = wrap_data_key(SCOPE, DATA_RAW, DK_CTX)
    for i in range(len(sealed)):
        altered = bytearray(sealed)
        altered[i] ^= 0x80
        assert data_reason(SCOPE, bytes(altered)) == ("format" if i == 0 else "tag"), f"byte {i}"
    for cut in range(len(sealed)):
        assert data_reason(SCOPE, sealed[:cut]) == "format"


def test_context_must_name_the_scope_key_given() -> None:
    for change in ({"scope_version": 3}, {"group": "branch-b"}, {"field_class": "identity"}):
        ctx = msgspec.structs.replace(DK_CTX, **change)
        with pytest.raises(ValueError, match="context names scope key"):
            wrap_data_key(SCOPE, DATA_RAW, ctx)
        with pytest.raises(ValueError, match="context names scope key"):
            unwrap_data_key(SCOPE, bytes(WRAPPED_DATA_KEY_BYTES), ctx)


def test_data_key_known_answer() -> None:
    nonce = bytes(range(12))
    aad = (b"\x97\xb0outpost/data-key\x01" + b"\xba" + CUSTOMER.encode() + b"\xa7contact" + b"\xa8branch-a"
           + b"\x02" + b"\x01")
    assert data_key_aad(DK_CTX) == aad
    sealed = _wrap_data_key_with_nonce(SCOPE, DATA_RAW, DK_CTX, nonce)
    assert sealed == b"\x01" + nonce + AESGCM(SCOPE_RAW).encrypt(nonce, DATA_RAW, aad)


def test_data_key_error_message() -> None:
    with pytest.raises(UnwrapError) as caught:
        unwrap_data_key(SCOPE, bytes(WRAPPED_DATA_KEY_BYTES), DK_CTX)
    assert str(caught.value) == (
        f"cannot unwrap data key contact v1 of customer {CUSTOMER} under scope key branch-a/contact v2: format"
    )


# ---------------------------------------------------------------- data keys carried in a customer row


def _row_key() -> tuple[RowKey, bytes]:
    key = RowKey("branch-a", 2, 1, wrap_data_key(SCOPE, DATA_RAW, DK_CTX))
    return key, pack_row_key(key)


def _opens(blob: bytes) -> bytes:
    """Unwrap a packed row key the way a node does: with the context its label names."""
    key = unpack_row_key(blob, "test key")
    scope = ScopeKey(SCOPE_RAW, key.scope_version, key.group, "contact")
    ctx = DataKeyWrapContext(customer_id=CUSTOMER, field_class="contact", group=key.group,
                             scope_version=key.scope_version, key_version=key.key_version)
    return unwrap_data_key(scope, key.wrapped, ctx)


def test_row_key_round_trip() -> None:
    key, blob = _row_key()
    assert unpack_row_key(blob, "test key") == key
    assert len(blob) == 1 + 4 + 4 + 1 + len("branch-a") + WRAPPED_DATA_KEY_BYTES
    assert _opens(blob) == DATA_RAW


@pytest.mark.parametrize("cut", [0, 5, 10, 17, -1])
def test_row_key_truncated_or_padded_is_a_format_error(cut: int) -> None:
    _, blob = _row_key()
    for bad in (blob[:cut], blob + b"\x00"):
        with pytest.raises(UnwrapError) as info:
            unpack_row_key(bad, "contact key of c1")
        assert info.value.reason == "format" and info.value.what == "contact key of c1"


def test_row_key_of_another_format_is_refused() -> None:
    _, blob = _row_key()
    with pytest.raises(UnwrapError, match="format"):
        unpack_row_key(b"\x02" + blob[1:], "k")


@pytest.mark.parametrize("offset", [1, 4, 5, 8, 10])
def test_an_altered_label_does_not_open(offset: int) -> None:
    """Key version (bytes 1-4), scope version (5-8) and group (10-) are bound by
    the wrap's associated data: changed, the key no longer opens."""
    _, blob = _row_key()
    bad = bytearray(blob)
    bad[offset] ^= 0x01
    with pytest.raises(UnwrapError) as info:
        _opens(bytes(bad))
    assert info.value.reason in ("tag", "format")
