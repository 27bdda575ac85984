"""The node's record of who accessed which customer through its API.

Every customer response that shows personal information (in full or masked),
every write, lookup, reveal, erasure and key rotation, every policy reload and
retention purge (server/retention.py), and
every refusal of a customer call (401, 403, 404, 429) appends one
`sync.store.AccessEvent` to the node's ``access_events`` table: the time, the
actor (a user id, ``operator``, or ``anonymous`` without a valid credential),
the role, the action, the row id, the *names* of the fields shown in full or
changed and of those shown masked, the purpose code and reference id of a
reveal, the outcome, status and reason code. Never a value, not even a masked
one: everything in an event is an id, a name or a code from a fixed list.

The table is local to the node and append-only (the store refuses UPDATE and
DELETE); issue 5 turns it into the hash-chained, replicated audit log.

Reveals are limited per user and node: `AccessLog.reserve_reveal` counts the
user's reveals of the last 24 hours in this table and appends the new one in the
same transaction, or raises `TooManyRevealsError` with the seconds until the
oldest counted one is a day old. Refused reveals do not count.

No web framework here: the routes and server/auth.py's refusal hook call it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from server.access import Actor, TooManyRevealsError
from sync.store import AccessEvent

if TYPE_CHECKING:
    from sync.store import AccessEventStore

DAY_MS = 86_400_000
Action = Literal["read", "lookup", "reveal", "create", "write", "erase", "rotate_keys", "reload_policy",
                 "retention_purge"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AccessLog:
    """Appends a node's access events (see the module docstring)."""

    def __init__(self, store: AccessEventStore, *, reveals_per_day: int,
                 now_ms: Callable[[], int] = _now_ms) -> None:
        self.store = store
        self.reveals_per_day = reveals_per_day
        self.now_ms = now_ms

    def _event(self, actor_id: str, role: str | None, action: str, *, collection: str, row_id: str | None,
               fields: Iterable[str], masked: Iterable[str], purpose: str | None, reference: str | None,
               status: int, reason: str | None) -> AccessEvent:
        return AccessEvent(
            at_ms=self.now_ms(), actor=actor_id, role=role, action=action, collection=collection, row_id=row_id,
            fields=tuple(fields), masked=tuple(masked), purpose=purpose, reference=reference,
            outcome="ok" if status < 400 else "refused", status=status, reason=reason,
        )

    async def record(self, actor: Actor, action: Action, *, row_id: str | None = None, fields: Iterable[str] = (),
                     masked: Iterable[str] = (), purpose: str | None = None, reference: str | None = None,
                     collection: str = "customers", status: int = 200, reason: str | None = None) -> int:
        """Append what ``actor`` did (``reason``: a code, or a count such as
        ``purged:42``, never a value); returns the event id."""
        return await self.store.add_access_event(self._event(
            actor.id, actor.role, action, collection=collection, row_id=row_id, fields=fields, masked=masked,
            purpose=purpose, reference=reference, status=status, reason=reason))

    async def refused(self, actor_id: str, role: str | None, action: str, *, status: int, reason: str,
                      collection: str = "customers", row_id: str | None = None, fields: Iterable[str] = (),
                      purpose: str | None = None, reference: str | None = None) -> int:
        """Append a refusal (``actor_id`` may be ``anonymous``); returns the event id."""
        return await self.store.add_access_event(self._event(
            actor_id, role, action, collection=collection, row_id=row_id, fields=fields, masked=(),
            purpose=purpose, reference=reference, status=status, reason=reason))

    async def reserve_reveal(self, actor: Actor, row_id: str, field: str, purpose: str,
                             reference: str | None) -> int:
        """Record a reveal of ``field`` if ``actor`` is under today's limit (the
        operator has none); raises `TooManyRevealsError` otherwise."""
        event = self._event(actor.id, actor.role, "reveal", collection="customers", row_id=row_id, fields=(field,),
                            masked=(), purpose=purpose, reference=reference, status=200, reason=None)
        if actor.is_operator:
            return await self.store.add_access_event(event)
        event_id, _, oldest = await self.store.add_access_event_within(
            event, limit=self.reveals_per_day, since_ms=event.at_ms - DAY_MS + 1)
        if event_id is None:
            wait_ms = DAY_MS if oldest is None else oldest + DAY_MS - event.at_ms
            raise TooManyRevealsError(self.reveals_per_day, max(1, math.ceil(wait_ms / 1000)), field)
        return event_id

    async def reveals_today(self, actor: Actor) -> int:
        """How many fields ``actor`` revealed here in the last 24 hours."""
        now = self.now_ms()
        return await self.store.count_access_events(actor=actor.id, action="reveal", since_ms=now - DAY_MS + 1)
