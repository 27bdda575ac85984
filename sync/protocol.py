"""Sans-I/O sync protocol: what to send, what to accept, where to resume.

Nothing here touches a socket or a database. The replicator (downstream side) and
the responder (upstream side) call these functions and do the I/O themselves, the
way automerge's ``sync.rs`` separates deciding from sending.

A link between two nodes keeps one cursor per direction:

* pull: the upstream's local sequence number up to which the downstream holds
  everything its scope admits (it belongs to one upstream store, named by its
  ``store_id``; a different store id resets it to 0);
* push: the downstream's own sequence number up to which the upstream has
  acknowledged its changes (the upstream also remembers it, as ``acked_through``,
  and answers a replayed or gapped push with where to resume).

Cursors move in the same transaction as the changes they cover, so a pull cut
half-way resumes from the last page stored and an acknowledged push is never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from sync.changes import Change, ChangesPage, PullRequest, PushBatch, describe_validation_error
from sync.errors import (
    MalformedBatchError,
    OversizedBatchError,
    ReplayedBatchError,
    UnknownNodeError,
    VersionMismatchError,
)
from sync.hlc import Clock
from sync.merge import FieldState, encode_value
from sync.schema import COLLECTIONS, SCHEMA_VERSION, FieldSpec


class Incoming(msgspec.Struct, frozen=True, array_like=True):
    """A change that passed validation: its field, row, canonical state and batch index."""

    spec: FieldSpec
    row_id: str
    state: FieldState
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
    (an origin the sender may not speak for). Error messages hold no values.
    """
    out: list[Incoming] = []
    append = out.append
    collections = COLLECTIONS
    check = clock.check
    for i, change in enumerate(changes):
        spec = collections[change.collection].fields.get(change.field)
        if spec is None:
            raise MalformedBatchError(
                f"Unknown field `{change.field}` of `{change.collection}`",
                f"{path}[{i}].field",
            )
        try:
            value = spec.decoder.decode(change.value)
        except msgspec.DecodeError as exc:
            reason, where = describe_validation_error(exc, f"{path}[{i}].value")
            raise MalformedBatchError(f"{reason} for `{change.collection}.{change.field}`", where) from None
        check(change.hlc, f"{path}[{i}].hlc")
        if origin_allowed is not None and not origin_allowed(change.origin):
            raise UnknownNodeError(change.origin, f"{path}[{i}].origin")
        append(Incoming(spec, change.row_id, FieldState(encode_value(value), change.hlc, change.origin), i))
    return out


# ---------------------------------------------------------------- upstream side


def pull_start(request: PullRequest, peer_schema: int, *, store_id: str, high: int) -> int:
    """Where to start serving a pull: the requester's cursor, or 0 if it is not ours.

    A cursor into another store (the upstream was rebuilt) or beyond this store's
    high-water mark (restored from an older copy) cannot be trusted, so the
    requester gets everything again; merging is idempotent, so that is safe.
    Raises `VersionMismatchError` when the requester's schema is older than ours:
    it could not read what we would send, so it must upgrade first.
    """
    if peer_schema < SCHEMA_VERSION:
        raise VersionMismatchError("schema", SCHEMA_VERSION, peer_schema)
    if request.store_id != store_id or request.cursor > high:
        return 0
    return request.cursor


def check_push(batch: PushBatch, *, acked_through: int, max_changes: int) -> None:
    """Refuse a push that is malformed, too large, replayed or leaves a gap."""
    if batch.from_seq > batch.to_seq:
        raise MalformedBatchError("from_seq is greater than to_seq", "$.from_seq")
    if len(batch.changes) > max_changes:
        raise OversizedBatchError("change count", len(batch.changes), max_changes)
    if batch.to_seq <= acked_through and batch.to_seq > 0:
        raise ReplayedBatchError(batch.node, batch.from_seq, batch.to_seq, acked_through)
    if batch.from_seq > acked_through:
        raise ReplayedBatchError(batch.node, batch.from_seq, batch.to_seq, acked_through)


def origin_checker(sender: str, below: set[str]) -> Callable[[str], bool]:
    """Origins a sender may speak for: itself and the nodes enrolled below it."""
    allowed = {sender} | below
    return allowed.__contains__


def require_known(node: str, known: bool) -> None:
    if not known:
        raise UnknownNodeError(node)


# ---------------------------------------------------------------- downstream side


def next_pull(node: str, *, peer_store_id: str | None, cursor: int, limit: int) -> PullRequest:
    return PullRequest(node=node, store_id=peer_store_id, cursor=cursor, limit=limit)


def page_resets_cursor(page: ChangesPage, *, peer_store_id: str | None) -> bool:
    """True when the page comes from another upstream store than the cursor's."""
    return peer_store_id is not None and page.store_id != peer_store_id


def next_push(node: str, *, store_id: str, cursor: int, changes: list[Change], to_seq: int) -> PushBatch:
    return PushBatch(node=node, store_id=store_id, from_seq=cursor, to_seq=to_seq, changes=changes)
