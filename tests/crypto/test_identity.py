"""Node identity: Ed25519 signatures, raw key round trips, no key material in repr."""

from __future__ import annotations

import pytest

from crypto.errors import SignatureError
from crypto.identity import NodeIdentity, verify_signature

DATA = b"push batch 17 from branch-a"


def test_sign_and_verify() -> None:
    node = NodeIdentity.generate("branch-a")
    verify_signature(node.public().sign_pub, node.sign(DATA), DATA, "push batch 17")


def test_tampered_data_fails() -> None:
    node = NodeIdentity.generate("branch-a")
    signature = node.sign(DATA)
    for i in range(len(DATA)):
        altered = bytearray(DATA)
        altered[i] ^= 0x01
        with pytest.raises(SignatureError, match="signature on push batch 17 does not verify"):
            verify_signature(node.public().sign_pub, signature, bytes(altered), "push batch 17")


def test_tampered_signature_fails() -> None:
    node = NodeIdentity.generate("branch-a")
    signature = node.sign(DATA)
    for i in range(len(signature)):
        altered = bytearray(signature)
        altered[i] ^= 0x80
        with pytest.raises(SignatureError):
            verify_signature(node.public().sign_pub, bytes(altered), DATA, "push batch 17")
    for bad in (b"", signature[:-1], signature + b"\x00"):
        with pytest.raises(SignatureError):
            verify_signature(node.public().sign_pub, bad, DATA, "push batch 17")


def test_another_nodes_key_fails() -> None:
    a, b = NodeIdentity.generate("branch-a"), NodeIdentity.generate("branch-b")
    with pytest.raises(SignatureError) as caught:
        verify_signature(b.public().sign_pub, a.sign(DATA), DATA, "checkpoint 3 of branch-a")
    assert caught.value.what == "checkpoint 3 of branch-a"


def test_malformed_public_key_fails_as_a_bad_signature() -> None:
    node = NodeIdentity.generate("branch-a")
    with pytest.raises(SignatureError):
        verify_signature(node.public().sign_pub[:31], node.sign(DATA), DATA, "push batch 17")


def test_raw_round_trip() -> None:
    node = NodeIdentity.generate("hq", key_version=3)
    sign_raw, kem_raw = node.to_raw()
    assert len(sign_raw) == len(kem_raw) == 32
    again = NodeIdentity.from_raw("hq", 3, sign_raw, kem_raw)
    assert again.public() == node.public()
    assert again.to_raw() == (sign_raw, kem_raw)
    verify_signature(node.public().sign_pub, again.sign(DATA), DATA, "round trip")


def test_public_keys() -> None:
    node = NodeIdentity.generate("hq", key_version=2)
    public = node.public()
    assert (public.node_id, public.key_version) == ("hq", 2)
    assert len(public.sign_pub) == len(public.kem_pub) == 32
    assert public.sign_pub != public.kem_pub


def test_repr_shows_no_key_material() -> None:
    node = NodeIdentity.generate("hq")
    text = repr(node)
    assert text == "NodeIdentity(node_id='hq', key_version=1)"
    for raw in node.to_raw():
        assert raw.hex() not in text and repr(raw) not in text
