"""The HTTP transport of the replicator: sync frames over httpx.

Maps what can go wrong on the way to the types the replicator reacts to: an
unreachable peer is `LinkDownError` (back off, retry); a refusal is the peer's own
typed error rebuilt from its problem response (`sync.errors.rebuild_error`).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import msgspec

from sync.errors import LinkDownError, PeerRefusedError, rebuild_error
from sync.replicator import Route

SYNC_MEDIA_TYPE = "application/vnd.outpost.sync+msgpack"


class HttpTransport:
    """POSTs frames to ``{base_url}/sync/{route}``."""

    def __init__(self, base_url: str, *, peer: str, timeout_s: float = 30.0, client: httpx.AsyncClient | None = None,
                 sign: Callable[[str, bytes], dict[str, str]] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.peer = peer
        #: the headers that sign a sync request (`server.sync_auth.signer`)
        self.sign = sign
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None

    async def __call__(self, route: Route, body: bytes) -> bytes:
        return await self.send(route, body)

    async def send(self, route: str, body: bytes) -> bytes:
        """POST a signed body to ``/sync/{route}`` (``pull``, ``push``, ``audit``)."""
        headers = self.sign(route, body) if self.sign is not None else None
        return await self.post(f"/sync/{route}", body, SYNC_MEDIA_TYPE, headers=headers)

    async def post_json(self, path: str, body: bytes, *, token: str | None = None) -> object:
        """POST a JSON body to the upstream's API (enrollment, key rotation)."""
        return msgspec.json.decode(await self.post(path, body, "application/json", token=token))

    async def post(self, path: str, body: bytes, media_type: str, *, token: str | None = None,
                   headers: dict[str, str] | None = None) -> bytes:
        headers = {"content-type": media_type, "accept": media_type, **(headers or {})}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        try:
            response = await self._client.post(f"{self.base_url}{path}", content=body, headers=headers)
            content = await response.aread()
        except httpx.TransportError as exc:
            raise LinkDownError(self.peer, type(exc).__name__) from None
        if response.status_code in (200, 201):
            return content
        if response.status_code >= 500:
            raise LinkDownError(self.peer, f"HTTP {response.status_code}")
        try:
            problem = msgspec.json.decode(content)
        except msgspec.DecodeError:
            raise PeerRefusedError(response.status_code, "unreadable", "the answer is not a problem document") from None
        if not isinstance(problem, dict):
            raise PeerRefusedError(response.status_code, "unreadable", "the answer is not a problem document")
        code = str(problem.get("code", "unknown"))
        message = str(problem.get("detail", ""))
        raise rebuild_error(response.status_code, code, message, problem)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
