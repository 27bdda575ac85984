"""What this node records in its audit log (sync/audit.py: the hash chain).

One entry per action, in the same transaction as the action where it changes
anything (``store.write_local(edits, audit=log.draft(...))``), and before the
answer where it only shows something:

* every response showing personal information (in full or masked), with the
  *names* of the fields shown in full and of those masked, and the purpose
  code when the caller gave one; exactly one entry per request, naming every
  row it showed;
* every write, lookup, reveal, export, consent, erasure, key and policy
  operation; sign-ins and failed sign-ins; sync sessions served and made;
  retention purges;
* every refusal of a call (401, 403, 404, 422, 429), with its reason code.

Never a value, not even a masked one: an entry holds ids, names, codes and
counts (`sync.audit.AuditEntry`). The actor is a user id, ``operator`` (the
deployment's token), ``system`` (the node's own scheduled work) or
``anonymous`` (no valid credential).

Reveals are limited per user and node: `AuditLog.reserve_reveal` counts the
user's reveals of the last 24 hours in this node's chain and appends the new one
in the same transaction, or raises `TooManyRevealsError` with the seconds until
the oldest counted one is a day old. Refused reveals do not count.

No web framework here: the routes and server/auth.py's refusal hook call it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from server.access import Actor, TooManyRevealsError
from sync.audit import AuditDraft, AuditEntry

if TYPE_CHECKING:
    from sync.store.sqlite import SqliteStore

DAY_MS = 86_400_000
Action = Literal[
    "read", "lookup", "reveal", "export", "create", "write", "erase", "rotate_keys", "reload_policy",
    "sign_in", "consent", "read_consents", "audit_query", "audit_verify", "sync_pull", "sync_push", "sync_round", "retention_purge",
    "key_operation", "user_admin", "offboard",
]
#: the node's own scheduled work, and the deployment's operator token
SYSTEM = "system"
OPERATOR = "operator"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AuditLog:
    """Drafts and appends this node's audit entries (see the module docstring)."""

    def __init__(self, store: SqliteStore, *, reveals_per_day: int,
                 now_ms: Callable[[], int] = _now_ms) -> None:
        self.store = store
        self.reveals_per_day = reveals_per_day
        self.now_ms = now_ms

    def draft(self, actor: Actor | str, action: str, *, role: str | None = None, collection: str = "customers",
              row_id: str | None = None, rows: Iterable[str] = (), fields: Iterable[str] = (),
              shown: Iterable[str] = (), masked: Iterable[str] = (), purpose: str | None = None, reference: str | None = None,
              peer: str | None = None, counts: dict[str, int] | None = None, status: int = 200,
              reason: str | None = None) -> AuditDraft:
        """An entry to append, or to pass to ``store.write_local(..., audit=)``.
        ``actor`` is an `Actor` or an id (then ``role`` gives the role)."""
        if isinstance(actor, Actor):
            actor_id, role = actor.id, actor.role
        else:
            actor_id = actor
        rows = (row_id, *rows) if row_id is not None else tuple(rows)
        return AuditDraft(
            at_ms=self.now_ms(), actor=actor_id, role=role, action=action, collection=collection, rows=rows,
            fields=tuple(fields), shown=tuple(shown), masked=tuple(masked), purpose=purpose, reference=reference, peer=peer,
            counts=counts or {}, outcome="ok" if status < 400 else "refused", status=status, reason=reason,
        )

    async def record(self, actor: Actor | str, action: Action, **what: Any) -> AuditEntry:
        """Append what ``actor`` did (the keywords of `draft`); returns the entry once durable."""
        return await self.store.append_audit(self.draft(actor, action, **what))

    async def refused(self, actor_id: str, role: str | None, action: str, *, status: int, reason: str,
                      **what: Any) -> AuditEntry:
        """Append a refusal (``actor_id`` may be ``anonymous``)."""
        return await self.store.append_audit(self.draft(actor_id, action, role=role, status=status, reason=reason,
                                                        **what))

    async def reserve_reveal(self, actor: Actor, row_id: str, field: str, purpose: str,
                             reference: str | None) -> AuditEntry:
        """Record a reveal of ``field`` if ``actor`` is under today's limit (the
        operator has none); raises `TooManyRevealsError` otherwise."""
        draft = self.draft(actor, "reveal", row_id=row_id, fields=(field,), shown=(field,), purpose=purpose,
                           reference=reference)
        if actor.is_operator:
            return await self.store.append_audit(draft)
        entry, _, oldest = await self.store.append_audit_within(
            draft, limit=self.reveals_per_day, since_ms=draft.at_ms - DAY_MS + 1)
        if entry is None:
            wait_ms = DAY_MS if oldest is None else oldest + DAY_MS - draft.at_ms
            raise TooManyRevealsError(self.reveals_per_day, max(1, math.ceil(wait_ms / 1000)), field)
        return entry

    async def reveals_today(self, actor: Actor) -> int:
        """How many fields ``actor`` revealed here in the last 24 hours."""
        now = self.now_ms()
        return await self.store.count_audit(actor=actor.id, action="reveal", since_ms=now - DAY_MS + 1)
