"""Keys: enroll a node with HQ, rotate scope keys (HQ) and a node's own keys.

Public keys travel as base64 text in JSON (API Structs hold no bytes).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody
from msgspec import Meta

from crypto.errors import SignatureError
from crypto.identity import NodeIdentity, NodePublicKeys, verify_signature
from server.audit_log import OPERATOR
from server.deps import NodeDep
from server.errors import BadSignatureError, WrongNodeError, problems
from server.key_authority import NotInRegistryError, RotationReport
from sync.ids import NodeIdStr
from sync.schema import KeyClass

B64Key = Annotated[str, Meta(min_length=40, max_length=48, pattern=r"^[A-Za-z0-9_-]+={0,2}$",
                             description="a raw 32-byte public key, base64url")]
B64Sig = Annotated[str, Meta(min_length=80, max_length=92, pattern=r"^[A-Za-z0-9_-]+={0,2}$",
                             description="an Ed25519 signature, base64url")]


class EnrollRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A node's public keys: Ed25519 (signs) and X25519 (receives scope keys)."""

    node_id: NodeIdStr
    key_version: Annotated[int, Meta(ge=1, lt=1 << 31)]
    sign_pub: B64Key
    kem_pub: B64Key
    #: Ed25519 signature over `enroll_message` by the key being enrolled (proof of possession)
    signature: B64Sig
    #: for a rotation: the signature of the same message by the node's previous key
    previous_signature: B64Sig | None = None


class EnrollResult(msgspec.Struct, kw_only=True):
    node_id: str
    key_version: int
    issued: list[str]


class RotateScopeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    group: Annotated[str, Meta(min_length=1, max_length=63)]
    field_class: KeyClass


class NodeKeysRotated(msgspec.Struct, kw_only=True):
    node_id: str
    key_version: int


def enroll_message(public: NodePublicKeys) -> bytes:
    """What an enrolling node signs: its id, key version and both public keys."""
    return msgspec.msgpack.encode(("outpost.enroll.v1", public.node_id, public.key_version, public.sign_pub, public.kem_pub))


def _b64(text: str, node: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadSignatureError(node) from None


def enroll_request(identity: NodeIdentity, previous: NodeIdentity | None = None) -> EnrollRequest:
    """The enrollment body a node sends for its identity (signed; co-signed by the
    previous identity on a rotation)."""
    public = identity.public()
    message = enroll_message(public)
    enc = lambda b: base64.urlsafe_b64encode(b).decode()  # noqa: E731
    return EnrollRequest(
        node_id=public.node_id, key_version=public.key_version, sign_pub=enc(public.sign_pub),
        kem_pub=enc(public.kem_pub), signature=enc(identity.sign(message)),
        previous_signature=None if previous is None else enc(previous.sign(message)),
    )


class EnrollController(Controller):
    """HQ, operator token: enroll a node (first time, or after it lost its keystore)."""

    path = "/nodes"
    tags = ["keys"]

    @post("/enroll", operation_id="EnrollNode",
          responses=problems(400, 401, 403, 409, 413), name="nodes:enroll", status_code=200)
    async def enroll(self, data: JSONBody[EnrollRequest], node: NodeDep) -> EnrollResult:  # type: ignore[valid-type]
        """Record a node's public keys in HQ's registry and send it, by sync, the
        scope keys its registry entry grants."""
        return await _enroll(node, data, require_previous=False)


class NodeKeysController(Controller):
    """HQ, no token: a node rotates its own keys, co-signing with its current key."""

    path = "/nodes"
    tags = ["keys"]

    @post("/rotate", operation_id="RotateNodeKeys",
          responses=problems(400, 401, 403, 409, 413), name="nodes:rotate", status_code=200)
    async def rotate(self, data: JSONBody[EnrollRequest], node: NodeDep) -> EnrollResult:  # type: ignore[valid-type]
        """Replace an enrolled node's public keys; the request must be signed by the
        new key and by the key HQ holds for the node now."""
        return await _enroll(node, data, require_previous=True)


async def _enroll(node: NodeDep, data: EnrollRequest, *, require_previous: bool) -> EnrollResult:  # type: ignore[valid-type]
    if node.authority is None:
        raise WrongNodeError("enroll", node.config.node_id, node.hq)
    public = NodePublicKeys(
        node_id=data.node_id, key_version=data.key_version,
        sign_pub=_b64(data.sign_pub, data.node_id), kem_pub=_b64(data.kem_pub, data.node_id),
    )
    if len(public.sign_pub) != 32 or len(public.kem_pub) != 32:
        raise BadSignatureError(data.node_id)
    message = enroll_message(public)
    try:
        verify_signature(public.sign_pub, _b64(data.signature, data.node_id), message, "enrollment")
        if require_previous:
            record = await node.store.node(data.node_id)
            if record is None or record.sign_pub is None or data.previous_signature is None:
                raise NotInRegistryError(data.node_id)
            if data.key_version <= (record.key_version or 0):
                raise BadSignatureError(data.node_id)
            verify_signature(record.sign_pub, _b64(data.previous_signature, data.node_id), message, "rotation")
    except SignatureError:
        raise BadSignatureError(data.node_id) from None
    issued = await node.authority.enroll(public, audit=node.audit.draft(
        OPERATOR, "key_operation", collection="keys", peer=data.node_id,
        reason="rotate_node" if require_previous else "enroll"))
    return EnrollResult(node_id=data.node_id, key_version=data.key_version, issued=issued)


class KeyAdminController(Controller):
    """Operator token: key rotation at this node."""

    path = "/keys"
    tags = ["keys"]

    @post("/rotate-scope", operation_id="RotateScopeKey",
          responses=problems(400, 401, 404, 409, 413), name="keys:rotate-scope", status_code=200)
    async def rotate_scope(self, data: JSONBody[RotateScopeRequest], node: NodeDep) -> RotationReport:  # type: ignore[valid-type]
        """At HQ: replace a scope key, re-wrap every data key under it in batches,
        and destroy the old one (nodes destroy theirs when the new epoch reaches them)."""
        if node.authority is None:
            raise WrongNodeError("rotate-scope", node.config.node_id, node.hq)
        return await node.authority.rotate_scope_key(data.group, data.field_class, audit=node.audit.draft(
            OPERATOR, "key_operation", collection="keys", peer=data.group, fields=(data.field_class,),
            reason="rotate_scope"))

    @post("/rotate-node", operation_id="RotateOwnKeys",
          responses=problems(401, 409), name="keys:rotate-node", status_code=200)
    async def rotate_node(self, node: NodeDep) -> NodeKeysRotated:
        """Give this node new signing and key-receiving keys and register them with
        HQ (co-signed by the current ones); the previous identity stays one more
        version for scope keys already on their way."""
        keystore = node.keyring.keystore
        current = keystore.identity
        fresh = NodeIdentity.generate(node.config.node_id, current.key_version + 1)
        if node.transport is None:
            raise WrongNodeError("rotate-node", node.config.node_id, "a node below HQ")
        await node.transport.post_json("/nodes/rotate", msgspec.json.encode(enroll_request(fresh, current)))
        # HQ holds the new keys now; the entry is durable before the keystore changes
        await node.audit.record(OPERATOR, "key_operation", collection="keys", peer=node.config.node_id,
                                reason="rotate_own", counts={"key_version": fresh.key_version})
        keystore.add_identity(fresh)
        keystore.drop_identities_below(current.key_version)
        keystore.save()
        node.store.auth_changed()
        return NodeKeysRotated(node_id=node.config.node_id, key_version=fresh.key_version)
