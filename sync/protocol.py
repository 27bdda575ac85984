"""Sans-I/O sync protocol: what to send, what to accept, where to resume.

Nothing here touches a socket or a database. The replicator (downstream side) and
the responder (upstream side) call these functions and do the I/O themselves, the
way automerge's ``sync.rs`` separates deciding from sending.

Every node numbers each field state it stores with its own local sequence, and
a row carries the greatest number of its fields. A link reads the other side's
rows in that order, so each direction keeps a cursor of two numbers:

* ``since``: every field state numbered up to it has been delivered;
* ``cursor``: the run that delivers the states after ``since`` has read the rows
  numbered up to it.

A run sends, for each row numbered after ``cursor``, its fields numbered after
``since``. When it reaches the end (``more`` is false), ``since`` moves up to
``cursor``. A run cut half-way resumes where it stopped, with the same
``since``; one cursor alone could not, because a row read later may hold a field
numbered before the row where a page ended.

* pull: the upstream's numbers; they belong to one upstream store (``store_id``),
  and a different store resets them to 0;
* push: the downstream's own numbers; the upstream remembers them as
  (``acked_since``, ``acked_through``) and answers a replayed or gapped push with
  where to resume.

Cursors move in the same transaction as the changes they cover, so a pull cut
half-way resumes from the last page stored and an acknowledged push is never lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from sync.changes import Change, ChangesPage, PullRequest, PushBatch, describe_validation_error
from sync.errors import (
    ClockDriftError,
    MalformedBatchError,
    OversizedBatchError,
    ReplayedBatchError,
    UnknownNodeError,
    VersionMismatchError,
)
from sync.hlc import Clock
from sync.ids import NODE_ID_PATTERN, ROW_ID_PATTERN
from sync.merge import FieldState, encode_value
from sync.schema import COLLECTIONS, SCHEMA_VERSION, FieldSpec


#: merge types whose state is a join of many nodes' contributions: its stamp is
#: the greatest among them, so any node may forward it (each contribution names
#: its own node inside the value)
JOINED = frozenset({"add_wins_set", "counter"})

_ROW_ID = re.compile(ROW_ID_PATTERN)
_NODE_ID = re.compile(NODE_ID_PATTERN)


class Incoming(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A change that passed validation: field, row, canonical state, decoded value, batch index."""

    spec: FieldSpec
    row_id: str
    state: FieldState
    value: Any
    index: int


def validate_changes(
    changes: Sequence[Change],
    *,
    clock: Clock,
    origin_allowed: Callable[[str], bool] | None = None,
    path: str = "$.changes",
) -> list[Incoming]:
    """Check every change of a batch before anything is applied.

    Each value is decoded with its field's type (constraints included) and
    re-encoded canonically, so equal values have equal bytes whichever client
    encoded them. Raises, naming the first bad change by its JSON path:
    `MalformedBatchError` (unknown collection or field, invalid value),
    `ClockDriftError` (stamped too far in the future) and `UnknownNodeError`
    (a register written by a node the sender may not speak for; see `JOINED`).
    Error messages hold no values.
    """
    if not changes:
        return []
    # one clock reading for the batch; find the offending change only on failure
    newest = max(c.hlc for c in changes)
    try:
        clock.check(newest)
    except ClockDriftError:
        for i, change in enumerate(changes):
            clock.check(change.hlc, f"{path}[{i}].hlc")
        raise
    for origin in {c.origin for c in changes}:
        if _NODE_ID.match(origin) is None:
            index = next(j for j, c in enumerate(changes) if c.origin == origin)
            raise MalformedBatchError("Expected a node id (lowercase letters, digits, dots, dashes)", f"{path}[{index}].origin")
    for row_id in {c.row_id for c in changes}:
        if _ROW_ID.match(row_id) is None:
            index = next(j for j, c in enumerate(changes) if c.row_id == row_id)
            raise MalformedBatchError("Expected a ULID or UUID row id", f"{path}[{index}].row_id")
    out: list[Incoming] = []
    append = out.append
    collections = COLLECTIONS
    encode = encode_value
    checked: set[str] = set()
    for i, change in enumerate(changes):
        spec = collections[change.collection].fields.get(change.field)
        if spec is None:
            raise MalformedBatchError(
                f"Unknown field `{change.field}` of `{change.collection}`",
                f"{path}[{i}].field",
            )
        if origin_allowed is not None and spec.merge not in JOINED and change.origin not in checked:
            if not origin_allowed(change.origin):
                raise UnknownNodeError(change.origin, f"{path}[{i}].origin")
            checked.add(change.origin)
        try:
            value = spec.decoder.decode(change.value)
        except msgspec.DecodeError as exc:
            reason, where = describe_validation_error(exc, f"{path}[{i}].value")
            raise MalformedBatchError(f"{reason} for `{change.collection}.{change.field}`", where) from None
        append(Incoming(spec, change.row_id, FieldState(encode(value), change.hlc, change.origin), value, i))
    return out


# ---------------------------------------------------------------- priority changes
#
# A do-not-call (any suppression reason) and a consent record travel ahead of
# other changes: the first page of a sync round, each way, carries the ones
# pending (numbered after ``since`` in rows after ``cursor``) before the run's
# own changes. The cursors stay as they are: the run sends those states again
# when it reaches their rows, and merging a state twice changes nothing.


def put_ahead(
    priority: Sequence[Change], changes: Sequence[Change], *, dropped: Iterable[tuple[str, str]] = ()
) -> list[Change]:
    """A page's changes with the ``priority`` ones first, each sent once.

    Priority changes of rows the page drops (``dropped``: (collection, row id))
    are left to the run: a drop is applied before the page's changes, so a
    change sent ahead of it would bring the row back.
    """
    if not priority:
        return list(changes)
    skip = set(dropped)
    ahead = [c for c in priority if (c.collection, c.row_id) not in skip]
    sent = {_identity(c) for c in ahead}
    return ahead + [c for c in changes if _identity(c) not in sent]


def _identity(change: Change) -> tuple[str, str, str, int, str, bytes]:
    return change.collection, change.row_id, change.field, change.hlc, change.origin, bytes(change.value)


# ---------------------------------------------------------------- upstream side


def pull_start(request: PullRequest, peer_schema: int, *, store_id: str, high: int) -> tuple[int, int]:
    """(since, cursor) to serve a pull from: the requester's, or (0, 0) if not ours.

    A cursor into another store (the upstream was rebuilt) or beyond this store's
    high-water mark (restored from an older copy) cannot be trusted, so the
    requester gets everything again; merging is idempotent, so that is safe.
    Raises `VersionMismatchError` when the requester's schema is older than ours:
    it could not read what we would send, so it must upgrade first.
    """
    if peer_schema < SCHEMA_VERSION:
        raise VersionMismatchError("schema", SCHEMA_VERSION, peer_schema)
    if request.store_id != store_id or request.cursor > high or request.since > request.cursor:
        return 0, 0
    return request.since, request.cursor


def check_push(batch: PushBatch, *, acked_since: int, acked_through: int, max_changes: int) -> None:
    """Refuse a push that is malformed, too large, replayed or leaves a gap.

    A replay would not move what this node acknowledged (a resend after a lost
    answer). A gap assumes more delivered than this node acknowledged (it
    was restored from an older copy, say). Both are answered with
    (``acked_since``, ``acked_through``), where the sender resumes.
    """
    if batch.from_seq > batch.to_seq or batch.since > batch.from_seq:
        raise MalformedBatchError("Expected since <= from_seq <= to_seq", "$.from_seq")
    if len(batch.changes) > max_changes:
        raise OversizedBatchError("change count", len(batch.changes), max_changes)
    gap = batch.from_seq > acked_through or batch.since > acked_since
    new_since, new_through = acked_after(batch, acked_since=acked_since)
    replay = new_since <= acked_since and new_through <= acked_through
    if replay or gap:
        raise ReplayedBatchError(batch.node, batch.from_seq, batch.to_seq, acked_since, acked_through)


def acked_after(batch: PushBatch, *, acked_since: int) -> tuple[int, int]:
    """(``acked_since``, ``acked_through``) once ``batch`` is stored: the end of a
    run delivers every state up to ``to_seq``; a page within one, its rows only."""
    if batch.more:
        return max(acked_since, batch.since), batch.to_seq
    return batch.to_seq, batch.to_seq


def origin_checker(sender: str, below: set[str]) -> Callable[[str], bool]:
    """Origins a sender may speak for: itself and the nodes enrolled below it."""
    allowed = {sender} | below
    return allowed.__contains__


def require_known(node: str, known: bool) -> None:
    if not known:
        raise UnknownNodeError(node)


# ---------------------------------------------------------------- downstream side


def next_pull(
    node: str, *, store_id: str, peer_store_id: str | None, since: int, cursor: int, limit: int, scope: str = "",
    priority: bool = False,
) -> PullRequest:
    return PullRequest(
        node=node, store_id=peer_store_id, since=since, cursor=cursor, limit=limit, node_store_id=store_id,
        scope=scope, priority=priority,
    )


def after_page(page: ChangesPage) -> tuple[int, int]:
    """The pull cursor (since, cursor) once ``page`` is stored."""
    return (page.cursor, page.cursor) if not page.more else (page.since, page.cursor)


def next_push(
    node: str, *, store_id: str, since: int, cursor: int, changes: list[Change], to_seq: int, more: bool
) -> PushBatch:
    return PushBatch(
        node=node, store_id=store_id, since=since, from_seq=cursor, to_seq=to_seq, changes=changes, more=more
    )
