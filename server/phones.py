"""Phones below a site node: their node ids, scope, keys and registration upstream.

An account manager's phone is a node of the lowest level (DESIGN.md, Topology):
it syncs with its site node over the same protocol, each request signed with
its own Ed25519 key (`server.sync_auth`). It enrols once, signed in as its
user: ``POST /devices/enroll`` with its public keys makes it a device of the
user *and* a node of the site's registry (kind ``mobile``, parent the site).

* Its node id is ``<site>.<device id in lowercase>`` (the phone draws the ULID),
  so the site finds the device, and so the user, of any phone that syncs, and
  no phone can take the id of another node.
* Its scope is the policy's ``[node_rows] mobile`` rule for that user
  (`phone_entry`): checked again on every request against the user row as the
  site holds it, so disabling or revoking the user at HQ retires the phone at
  the site's next sync.
* Its keys: the site HPKE-wraps, for the phone's key-receiving key, the scope
  keys of its own group in the classes the phone's scope grants (`phone_keys`),
  answered to a signed ``POST /devices/keys``. They never enter the replicated
  ``keys`` collection, so they never travel to HQ or to another node.
* Upstream: the site registers the phone with its own upstream (`Registration`,
  ``POST /devices/register``, signed by the site), so HQ takes the phone's
  changes, forwarded by the site, as coming from a node below it.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

import msgspec
from msgspec import Meta

from crypto.identity import NodePublicKeys
from crypto.keystore import Keystore
from crypto.wrap import ScopeWrapContext, wrap_scope_key
from server.config import NodeEntry
from server.keyring import INDEX_CLASS
from sync.ids import NodeIdStr
from sync.store import NodeRecord

B64Key = Annotated[str, Meta(min_length=40, max_length=48, pattern=r"^[A-Za-z0-9_-]+={0,2}$",
                             description="a raw 32-byte public key, base64url")]
#: where a site registers its phones with its upstream
REGISTER_PATH = "/devices/register"
#: a ULID in lowercase (the node id alphabet has no capitals)
_DEVICE = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")


class PhoneNodeError(Exception):
    """A phone's node id that this site cannot register."""

    code = "phone_node"

    def __init__(self, node_id: str, reason: str) -> None:
        self.node_id = node_id
        self.message = f"phone node `{node_id}`: {reason}"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"node": self.node_id, "path": "$.node.node_id"}


class PhoneNameError(PhoneNodeError):
    """A phone node id that is not ``<site>.<ULID in lowercase>`` for this site: bad input."""

    code = "invalid_phone_node"


def phone_node_id(site: str, device_id: str) -> str:
    """The node id of the phone with ``device_id`` (a ULID) at ``site``."""
    return f"{site}.{device_id.lower()}"


def device_of(site: str, node_id: str) -> str | None:
    """The device id a phone node id of ``site`` carries, or None if it is none."""
    prefix = f"{site}."
    if not node_id.startswith(prefix) or _DEVICE.match(node_id[len(prefix):]) is None:
        return None
    return node_id[len(prefix):].upper()


#: the role of a phone's user (the policy's roles at a ``mobile`` site)
PHONE_ROLE = "account_manager"


def phone_entry(node_id: str, site: str, user_id: str) -> NodeEntry:
    """The registry entry a phone is served by: kind ``mobile``, its user's rows.
    No blind-index key: a phone looks no one up by number."""
    return NodeEntry(node_id=node_id, role="mobile", parent=site, user=user_id, lookups=False)


def _b64(text: str, node: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PhoneNodeError(node, "a public key is not base64url") from None


def _enc(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


# ---------------------------------------------------------------- keys for a phone


class PhoneKeysRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A phone asks its site for its scope keys (the request is signed, route ``keys``).
    (Not ``node``: a body member named like a dependency of the route would be
    taken for it in Litestar's error reports.)"""

    phone: NodeIdStr


class WrappedScopeKey(msgspec.Struct, kw_only=True):
    """One scope key HPKE-wrapped for the phone (`crypto.wrap.wrap_scope_key`, with
    ``ScopeWrapContext(recipient=node, recipient_key_version=key_version, group,
    field_class, version)`` as ``info``)."""

    group: str
    field_class: str
    version: int
    wrapped: Annotated[str, Meta(description="base64url: 0x01 | HPKE enc (32) | ciphertext + tag (48)")]


class PhoneKeys(msgspec.Struct, kw_only=True):
    """Every scope key the phone may hold now. A key it holds that is not listed
    was rotated away (an erasure, a rotation): the phone destroys it."""

    node: str
    key_version: int
    keys: list[WrappedScopeKey]
    #: the customer fields the user's role sees masked: the phone shows them masked
    masked: list[str] = []


def phone_keys(keystore: Keystore, site: str, record: NodeRecord, classes: frozenset[str],
               masked: frozenset[str] = frozenset()) -> PhoneKeys:
    """The site's scope keys of its own group in ``classes`` (never the blind-index
    key), each version it holds, wrapped for the phone of ``record``."""
    assert record.kem_pub is not None and record.key_version is not None
    out = []
    for key in keystore.scope_keys(group=site):
        if key.field_class not in classes or key.field_class == INDEX_CLASS:
            continue
        ctx = ScopeWrapContext(recipient=record.node_id, recipient_key_version=record.key_version,
                               group=key.group, field_class=key.field_class, version=key.version)
        out.append(WrappedScopeKey(group=key.group, field_class=key.field_class, version=key.version,
                                   wrapped=_enc(wrap_scope_key(record.kem_pub, key.raw, ctx))))
    return PhoneKeys(node=record.node_id, key_version=record.key_version, keys=out, masked=sorted(masked))


# ---------------------------------------------------------------- registration upstream


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A site tells its upstream of a phone enrolled below it (signed by the site,
    route ``register``): its node id and public keys, so the upstream takes the
    phone's changes forwarded by the site and checks its purge receipts."""

    node_id: NodeIdStr
    key_version: Annotated[int, Meta(ge=1, lt=1 << 31)]
    sign_pub: B64Key
    kem_pub: B64Key


class Registered(msgspec.Struct, kw_only=True):
    node_id: str
    parent: str


def registration(record: NodeRecord) -> Registration:
    assert record.sign_pub is not None and record.kem_pub is not None and record.key_version is not None
    return Registration(node_id=record.node_id, key_version=record.key_version, sign_pub=_enc(record.sign_pub),
                        kem_pub=_enc(record.kem_pub))


def registered_keys(data: Registration) -> NodePublicKeys:
    public = NodePublicKeys(node_id=data.node_id, key_version=data.key_version,
                            sign_pub=_b64(data.sign_pub, data.node_id), kem_pub=_b64(data.kem_pub, data.node_id))
    if len(public.sign_pub) != 32 or len(public.kem_pub) != 32:
        raise PhoneNodeError(data.node_id, "a public key is not 32 bytes")
    return public
