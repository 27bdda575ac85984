"""Access tokens: compact JWS (RFC 7515) signed with the issuing node's Ed25519 key.

A token is ``HEADER.CLAIMS.SIGNATURE``, each part base64url without padding:

* header ``{"alg":"EdDSA","kid":"<node>:<key version>","typ":"JWT"}``; any other
  algorithm is refused before a key is looked up (no ``alg`` negotiation);
* claims `AccessClaims`: issuer node, user id, role, site, issued-at and expiry
  (seconds, as in JWT), token id, session id, the user's revocation stamp when
  the session began, and for a phone its device id;
* an Ed25519 signature over ``HEADER.CLAIMS`` by the identity ``kid`` names.

Which keys verify is the caller's decision: it reads the issuer and key version
(`token_key_id`), looks the key up, and hands it to `verify_access_token`. A
node accepts its own tokens and those of issuers its config trusts
(server/sessions.py). Pure: time
and keys are passed in; nothing here reads a clock, a file or the network.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from crypto.errors import SignatureError
from crypto.identity import NodeIdentity, verify_signature
from sync.schema import Role

#: longest token accepted (a real one is about 450 characters)
MAX_TOKEN_CHARS = 2048
#: how far in the future an issued-at may lie (another node's clock)
MAX_SKEW_S = 60

TokenReason = Literal["malformed", "bad_signature", "untrusted_issuer", "unknown_key", "expired", "not_yet_valid"]


class TokenError(Exception):
    """A bearer token that is not a valid access token here; ``reason`` is a stable code.

    The message names what is wrong, never the token.
    """

    MESSAGES: dict[str, str] = {
        "malformed": "The bearer token is not an access token of this system",
        "bad_signature": "The access token's signature does not verify",
        "untrusted_issuer": "The access token was issued by a node this node does not trust; sign in here",
        "unknown_key": "The access token was signed with a key this node does not hold for its issuer",
        "expired": "The access token has expired; refresh it or sign in again",
        "not_yet_valid": "The access token is stamped in the future; check the issuing node's clock",
    }

    def __init__(self, reason: TokenReason, issuer: str | None = None) -> None:
        self.reason = reason
        self.issuer = issuer
        super().__init__(self.MESSAGES[reason])


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    alg: Literal["EdDSA"]
    kid: Annotated[str, Meta(max_length=80)]
    typ: Literal["JWT"] = "JWT"


class AccessClaims(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """What an access token says. Names follow JWT where JWT has one."""

    #: the issuing node
    iss: str
    #: the user's row id
    sub: str
    role: Role
    site: str
    #: issued at / expires at, Unix seconds
    iat: int
    exp: int
    #: token id
    jti: str
    #: the session (sign-in) it belongs to, at the issuing node
    sid: str
    #: the user's ``tokens_valid_after_ms`` when the session began: a greater one revokes it
    rev: int
    #: the phone the token was issued to, for a device session
    dev: str | None = None


_encode = msgspec.json.Encoder(order="deterministic").encode
_decode_header = msgspec.json.Decoder(_Header).decode
_decode_claims = msgspec.json.Decoder(AccessClaims).decode

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None


def sign_access_token(claims: AccessClaims, identity: NodeIdentity) -> str:
    """The compact token for ``claims``, signed by ``identity`` (whose node must be the issuer)."""
    if claims.iss != identity.node_id:
        raise ValueError("a node signs only tokens it issues")
    header = _Header(alg="EdDSA", kid=f"{identity.node_id}:{identity.key_version}")
    signing_input = f"{_b64(_encode(header))}.{_b64(_encode(claims))}"
    return f"{signing_input}.{_b64(identity.sign(signing_input.encode('ascii')))}"


def token_key_id(token: str) -> tuple[str, int]:
    """(issuer node, key version) that a token says signed it, unverified;
    raises `TokenError` ``malformed``."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenError("malformed")
    try:
        header = _decode_header(_unb64(token.split(".", 1)[0]))
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise TokenError("malformed") from None
    issuer, _, version = header.kid.rpartition(":")
    if not issuer or not (version.isascii() and version.isdigit()) or len(version) > 9:
        raise TokenError("malformed")
    return issuer, int(version)


def verify_access_token(token: str, *, public_key: bytes, now_s: int) -> AccessClaims:
    """The claims of a valid, unexpired token signed by ``public_key`` (the key of
    the issuer and version `token_key_id` named); raises `TokenError` otherwise.

    The signature is checked before the claims are believed, expiry after.
    """
    issuer, _ = token_key_id(token)
    header_b64, claims_b64, signature_b64 = token.split(".")
    try:
        signing_input = f"{header_b64}.{claims_b64}".encode("ascii")
        verify_signature(public_key, _unb64(signature_b64), signing_input, "access token")
    except (SignatureError, UnicodeEncodeError):
        raise TokenError("bad_signature", issuer) from None
    try:
        claims = _decode_claims(_unb64(claims_b64))
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise TokenError("malformed", issuer) from None
    if claims.iss != issuer:
        raise TokenError("malformed", issuer)
    if claims.exp <= now_s:
        raise TokenError("expired", issuer)
    if claims.iat > now_s + MAX_SKEW_S:
        raise TokenError("not_yet_valid", issuer)
    return claims
