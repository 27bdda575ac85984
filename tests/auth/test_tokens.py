"""Access tokens: compact JWS with EdDSA; nothing but a valid, current signature passes."""

from __future__ import annotations

import base64
import json

import pytest

from crypto.identity import NodeIdentity
from server.tokens import MAX_SKEW_S, AccessClaims, TokenError, sign_access_token, token_key_id, verify_access_token

NOW = 1_800_000_000
BRANCH = NodeIdentity.generate("branch-a")
OTHER = NodeIdentity.generate("branch-b")


def claims(**changes: object) -> AccessClaims:
    values: dict[str, object] = dict(iss="branch-a", sub="01JD0QK2M6X3Z1V9A8B7C6D5E4", role="agent", site="branch-a",
                                     iat=NOW, exp=NOW + 600, jti="01JD0QK2M6X3Z1V9A8B7C6D5E5",
                                     sid="01JD0QK2M6X3Z1V9A8B7C6D5E6", rev=0)
    values.update(changes)
    return AccessClaims(**values)  # type: ignore[arg-type]


def verify(token: str, key: NodeIdentity = BRANCH, now_s: int = NOW) -> AccessClaims:
    return verify_access_token(token, public_key=key.public().sign_pub, now_s=now_s)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip_and_key_id() -> None:
    token = sign_access_token(claims(dev="01JD0QK2M6X3Z1V9A8B7C6D5E7"), BRANCH)
    assert token_key_id(token) == ("branch-a", 1)
    assert verify(token) == claims(dev="01JD0QK2M6X3Z1V9A8B7C6D5E7")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "kid": "branch-a:1", "typ": "JWT"}
    assert len(token) < 600


def test_a_node_signs_only_its_own_tokens() -> None:
    with pytest.raises(ValueError):
        sign_access_token(claims(iss="hq"), BRANCH)


def test_another_key_does_not_verify() -> None:
    with pytest.raises(TokenError) as err:
        verify(sign_access_token(claims(), BRANCH), key=OTHER)
    assert err.value.reason == "bad_signature"


def test_every_changed_character_is_refused() -> None:
    token = sign_access_token(claims(), BRANCH)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        forged = token[:i] + alphabet[(alphabet.index(ch) + 1) % 64] + token[i + 1:]
        try:
            got = verify(forged)
        except TokenError:
            continue
        # the last character of a part may carry only padding bits: same bytes, same token
        assert got == claims(), i


def test_claims_swapped_under_a_valid_signature_are_refused() -> None:
    mine = sign_access_token(claims(), BRANCH).split(".")
    theirs = sign_access_token(claims(role="supervisor"), BRANCH).split(".")
    with pytest.raises(TokenError) as err:
        verify(".".join([mine[0], theirs[1], mine[2]]))
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize("header", [
    {"alg": "none", "kid": "branch-a:1", "typ": "JWT"},
    {"alg": "HS256", "kid": "branch-a:1", "typ": "JWT"},
    {"alg": "EdDSA", "kid": "branch-a:1", "typ": "JWT", "jku": "http://evil"},
    {"alg": "EdDSA", "kid": "branch-a", "typ": "JWT"},
    {"alg": "EdDSA", "kid": "branch-a:²", "typ": "JWT"},
])
def test_other_headers_are_malformed(header: dict[str, str]) -> None:
    _, body, sig = sign_access_token(claims(), BRANCH).split(".")
    with pytest.raises(TokenError) as err:
        verify(".".join([_b64(json.dumps(header).encode()), body, sig]))
    assert err.value.reason == "malformed"


def test_a_token_claiming_another_issuer_than_its_key_id_is_malformed() -> None:
    header = _b64(json.dumps({"alg": "EdDSA", "kid": "branch-a:1", "typ": "JWT"}).encode())
    body = _b64(json.dumps({**json.loads(base64.urlsafe_b64decode(
        sign_access_token(claims(), BRANCH).split(".")[1] + "==")), "iss": "hq"}).encode())
    sig = _b64(BRANCH.sign(f"{header}.{body}".encode()))
    with pytest.raises(TokenError) as err:
        verify(f"{header}.{body}.{sig}")
    assert err.value.reason == "malformed"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "x" * 3000, "é.é.é", "eyJ.eyJ.sig"])
def test_garbage_is_malformed(token: str) -> None:
    with pytest.raises(TokenError) as err:
        verify(token)
    assert err.value.reason in {"malformed", "bad_signature"}
    assert token not in str(err.value) or token == ""


def test_expiry_and_clock_skew() -> None:
    token = sign_access_token(claims(), BRANCH)
    assert verify(token, now_s=NOW + 599).sub
    for now, reason in ((NOW + 600, "expired"), (NOW - MAX_SKEW_S - 1, "not_yet_valid")):
        with pytest.raises(TokenError) as err:
            verify(token, now_s=now)
        assert err.value.reason == reason
    assert verify(token, now_s=NOW - MAX_SKEW_S).sub  # another node's clock a little behind
