"""The phone's HTTP side: signed sync requests and its key requests, over httpx.

Every request to ``/sync/pull``, ``/sync/push`` and ``/devices/keys`` carries
``x-outpost-signature: <node>.<key version>.<time ms>.<sig>``, ``sig`` the
unpadded base64url Ed25519 signature of the lines ``outpost.sync-request.v1``,
the route, the node id, the key version, the time and the raw SHA-256 of the
body, joined by ``\\n`` (api_spec/sync-protocol.md). An unreachable site is
`sync.errors.LinkDownError`; a refusal is the site's typed error.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import httpx
import msgspec

from crypto.identity import NodeIdentity
from sync.errors import LinkDownError, PeerRefusedError, SyncError, rebuild_error

SYNC_MEDIA_TYPE = "application/vnd.outpost.sync+msgpack"
SIGNATURE_HEADER = "x-outpost-signature"
SIGNATURE_DOMAIN = b"outpost.sync-request.v1"


def signature_header(identity: NodeIdentity, route: str, body: bytes, at_ms: int) -> str:
    """The signature header of one request on ``route`` carrying ``body``."""
    signed = b"\n".join([SIGNATURE_DOMAIN, route.encode(), identity.node_id.encode(),
                         str(identity.key_version).encode(), str(at_ms).encode(), hashlib.sha256(body).digest()])
    encoded = base64.urlsafe_b64encode(identity.sign(signed)).rstrip(b"=").decode()
    return f"{identity.node_id}.{identity.key_version}.{at_ms}.{encoded}"


class SiteTransport:
    """POSTs the phone's signed requests to its site node; the replicator's transport."""

    def __init__(self, base_url: str, *, site: str, identity: Callable[[], NodeIdentity],
                 now_ms: Callable[[], int], timeout_s: float = 30.0) -> None:
        self.site = site
        self.identity = identity
        self.now_ms = now_ms
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def __call__(self, route: str, body: bytes) -> bytes:
        return await self.post(f"/sync/{route}", route, body, SYNC_MEDIA_TYPE)

    async def post(self, path: str, route: str, body: bytes, media_type: str) -> bytes:
        """POST ``body`` signed for ``route``; the answer's bytes, or the typed error."""
        headers = {"content-type": media_type, "accept": media_type,
                   SIGNATURE_HEADER: signature_header(self.identity(), route, body, self.now_ms())}
        try:
            response = await self.client.post(path, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise LinkDownError(self.site, type(exc).__name__) from None
        if response.status_code == 200:
            return response.content
        raise refusal(self.site, response)

    async def aclose(self) -> None:
        await self.client.aclose()


def refusal(site: str, response: httpx.Response) -> SyncError:
    """The typed error of a refused request (5xx: the site is not serving: link down)."""
    if response.status_code >= 500:
        return LinkDownError(site, f"HTTP {response.status_code}")
    try:
        problem = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        problem = None
    if not isinstance(problem, dict):
        return PeerRefusedError(response.status_code, "unreadable", "the answer is not a problem document")
    return rebuild_error(response.status_code, str(problem.get("code", "unknown")), str(problem.get("detail", "")),
                         problem)
