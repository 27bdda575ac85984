"""The downstream side of a link: push local changes up, pull the upstream's down.

The replicator is handed a `Transport` (an async callable: route and request
bytes in, response bytes out) and knows nothing of HTTP. `server/` gives it an
httpx transport; tests give it an in-memory one:

>>> import asyncio, tempfile, os
>>> from sync.edits import Edit
>>> from sync.hlc import Clock
>>> from sync.responder import Responder
>>> from sync.store.sqlite import SqliteStore, wall_clock_ms
>>> async def two_replicas_converge():
...     d = tempfile.mkdtemp()
...     hq = await SqliteStore.create(os.path.join(d, "hq.db"), node_id="hq", role="hq",
...                                   clock=Clock(wall_clock_ms, 60_000))
...     await hq.enroll("branch-a", parent="hq", role="branch")
...     branch = await SqliteStore.create(os.path.join(d, "a.db"), node_id="branch-a", role="branch",
...                                       clock=Clock(wall_clock_ms, 60_000))
...     row = "01JD0QK2M6X3Z1V9A8B7C6D5E4"
...     await hq.write_local([Edit("customers", row, "star_level", value=6)])
...     await branch.write_local([Edit("customers", row, "tags", "add", "vip")])
...     replicator = Replicator(branch, LocalTransport(Responder(hq)), upstream="hq")
...     report = await replicator.sync_once()
...     same = await hq.digest() == await branch.digest()
...     card = await branch.read_row("customers", row)
...     await hq.close(); await branch.close()
...     return report.pushed, report.pulled, same, card["star_level"], card["tags"]
>>> asyncio.run(two_replicas_converge())
(1, 1, True, 6, ['vip'])
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypeVar

import msgspec

from sync.changes import Ack, Change, ChangesPage, decode_frame, encode_frame
from sync.errors import (
    ClockDriftError,
    LinkDownError,
    MalformedBatchError,
    ReplayedBatchError,
    SyncError,
    VersionMismatchError,
)
from sync.protocol import after_page, next_pull, next_push, put_ahead, validate_changes
from sync.store import PurgeHook, ReplicaStore

log = logging.getLogger(__name__)

Route = Literal["pull", "push"]
_M = TypeVar("_M", Ack, ChangesPage)


class Transport(Protocol):
    """Carries one request frame to the upstream and returns its response frame.

    Raises `LinkDownError` when the peer cannot be reached and the peer's typed
    `SyncError` when it refuses the request.
    """

    async def __call__(self, route: Route, body: bytes) -> bytes: ...


class LocalTransport:
    """An in-memory transport straight into a `Responder` (tests, doctests)."""

    def __init__(self, responder: object) -> None:
        self.responder = responder

    async def __call__(self, route: Route, body: bytes) -> bytes:
        return await self.responder.handle(route, body)  # type: ignore[attr-defined,no-any-return]


class SyncReport(msgspec.Struct, kw_only=True):
    """What one round did, in both directions."""

    pushed: int = 0
    pulled: int = 0
    applied: int = 0
    superseded: int = 0
    refused_here: int = 0
    refused_upstream: int = 0
    conflicts: int = 0
    push_batches: int = 0
    pull_pages: int = 0
    #: rows purged here because they left this node's scope upstream
    purged: int = 0


Progress = Callable[[int, int, int], None]
"""Called after each page with (changes so far, cursor, upstream high-water mark)."""


class Replicator:
    """Keeps one node in sync with its upstream: periodically, on demand, with backoff."""

    def __init__(
        self,
        store: ReplicaStore,
        transport: Transport,
        *,
        upstream: str,
        page_limit: int = 5_000,
        push_limit: int = 5_000,
        bulk_rows: int = 20_000,
        max_body_bytes: int = 64 * 1024 * 1024,
        compress: bool = True,
        interval_s: float = 5.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        jitter: Callable[[], float] = random.random,
        on_purge: PurgeHook | None = None,
    ) -> None:
        self.store = store
        #: the edits recording rows purged at the upstream's word (a signed receipt)
        self.on_purge = on_purge
        self.transport = transport
        self.upstream = upstream
        self.page_limit = page_limit
        self.push_limit = push_limit
        self.bulk_rows = bulk_rows
        self.max_body_bytes = max_body_bytes
        self.compress = compress
        self.interval_s = interval_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.jitter = jitter
        self.failures = 0
        self.last_error: SyncError | None = None
        self.last_report: SyncReport | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------ one round

    async def sync_once(self, progress: Progress | None = None) -> SyncReport:
        """Push everything not yet acknowledged, then pull until caught up.

        Raises the first `SyncError` that stops the round (after recording it on
        the link); whatever was applied before it stays applied.
        """
        async with self._lock:
            report = SyncReport()
            try:
                await self.store.ensure_link(self.upstream, "upstream")
                await self._push(report)
                await self._pull(report, progress)
            except SyncError as exc:
                self.last_error = exc
                await self.store.record_link_error(self.upstream, f"{exc.code}: {exc.message}")
                raise
            self.last_error = None
            self.last_report = report
            return report

    async def _push(self, report: SyncReport) -> None:
        store = self.store
        rewinds = 0
        first = True  # until a batch is acknowledged: the priority changes go ahead in it
        while True:
            link = await store.link(self.upstream)
            assert link is not None
            since, cursor = link.push_since, link.push_cursor
            ahead: list[Change] = []
            if first:
                ahead = (await store.priority_after(since, cursor, limit=self.push_limit,
                                                    exclude_src=self.upstream)).changes
            page = await store.changes_after(since, cursor, limit=max(1, self.push_limit - len(ahead)),
                                             exclude_src=self.upstream)
            after = (since, page.cursor) if page.more else (page.cursor, page.cursor)
            if not page.changes and not ahead and after == (since, cursor):
                return
            changes = put_ahead(ahead, page.changes)
            # rows holding nothing for the upstream (states it sent us) still move
            # the cursor through an (empty) batch, so both sides agree on it
            batch = next_push(
                store.node_id,
                store_id=store.store_id,
                since=since,
                cursor=cursor,
                changes=changes,
                to_seq=page.cursor,
                more=page.more,
            )
            try:
                ack = self._expect(
                    await self.transport("push", encode_frame(batch, compress=self.compress)), Ack
                )
            except ReplayedBatchError as exc:
                # the upstream knows better what it holds from us: resume there
                rewinds += 1
                if rewinds > 3:
                    raise
                log.warning(
                    "sync.push resume",
                    extra={"peer": self.upstream, "from": cursor, "since": exc.acked_since, "to": exc.acked_through},
                )
                high = await store.high_seq()
                if exc.acked_through > high:
                    # this copy is older than what the upstream holds from us:
                    # number new writes after it so they are not taken for replays
                    await store.raise_seq(exc.acked_through)
                await store.set_push_cursor(self.upstream, since=exc.acked_since, cursor=exc.acked_through)
                continue
            first = False
            await store.record_push_ack(
                self.upstream, since=ack.acked_since, cursor=ack.acked_through, sent=len(changes)
            )
            report.pushed += len(changes)
            report.push_batches += 1
            report.refused_upstream += len(ack.refused)
            report.conflicts += ack.conflicts
            for refusal in ack.refused:
                change = changes[refusal.index] if 0 <= refusal.index < len(changes) else None
                log.warning(
                    "sync.push change refused upstream",
                    extra={
                        "peer": self.upstream,
                        "reason": refusal.reason,
                        "collection": change.collection if change else None,
                        "row_id": change.row_id if change else None,
                        "field": change.field if change else None,
                    },
                )
            if not page.more:
                return

    async def _pull(self, report: SyncReport, progress: Progress | None) -> None:
        """Pull pages until the upstream has no more. When far behind (an initial
        sync: `bulk_rows` or more row versions to go), the store's column indexes
        are dropped for the pull and built again at its end, however it ends."""
        store = self.store
        deferred = False
        first = True  # the round's first request asks for the priority changes ahead
        try:
            while True:
                link = await store.link(self.upstream)
                assert link is not None
                request = next_pull(
                    store.node_id,
                    store_id=store.store_id,
                    peer_store_id=link.peer_store_id,
                    since=link.pull_since,
                    cursor=link.pull_cursor,
                    limit=self.page_limit,
                    scope=link.pull_scope,
                    priority=first,
                )
                page = self._expect(await self.transport("pull", encode_frame(request, compress=self.compress)), ChangesPage)
                if page.node != self.upstream:
                    raise MalformedBatchError(
                        f"Answer comes from `{page.node}`, not the configured upstream `{self.upstream}`", "$.node"
                    )
                if link.peer_store_id is not None and page.store_id != link.peer_store_id:
                    log.warning(
                        "sync.pull upstream store changed; resynchronising",
                        extra={"peer": self.upstream, "old": link.peer_store_id, "new": page.store_id},
                    )
                incoming = validate_changes(page.changes, clock=store.clock)
                if not deferred and page.more and page.high - page.cursor >= self.bulk_rows:
                    deferred = bool(await store.defer_indexes())
                first = False
                since, cursor = after_page(page)
                applied = await store.apply_pulled(
                    incoming, peer=self.upstream, peer_store_id=page.store_id, since=since, cursor=cursor,
                    drops=page.drops, scope=page.scope, on_purge=self.on_purge,
                )
                report.purged += applied.purged
                report.pulled += len(page.changes)
                report.pull_pages += 1
                report.applied += applied.applied
                report.superseded += applied.superseded
                report.refused_here += len(applied.refused)
                report.conflicts += applied.conflicts
                if progress is not None:
                    progress(report.pulled, page.cursor, page.high)
                if not page.more:
                    return
        finally:
            if deferred:
                await store.restore_indexes()

    def _expect(self, data: bytes, kind: type[_M]) -> _M:
        message, _ = decode_frame(data, max_body_bytes=self.max_body_bytes)
        if not isinstance(message, kind):
            raise MalformedBatchError(f"Expected `{kind.__name__}` from the upstream", "$.kind")
        return message

    # ------------------------------------------------------------ the loop

    def wake(self) -> None:
        """Ask the loop to sync now instead of at the next interval."""
        self._wake.set()

    def next_delay_s(self) -> float:
        """Seconds to wait before the next round: the interval, or backoff after failures."""
        if self.failures == 0:
            return self.interval_s
        base = min(self.backoff_max_s, self.backoff_base_s * 2 ** (self.failures - 1))
        return base * (0.5 + self.jitter() / 2)

    async def run(self, stop: asyncio.Event, on_round: Callable[[SyncReport | SyncError], Awaitable[None]] | None = None) -> None:
        """Sync until ``stop`` is set: every ``interval_s``, when woken, and with
        exponential backoff (with jitter) while the link is down or refused."""
        while not stop.is_set():
            outcome: SyncReport | SyncError
            try:
                outcome = await self.sync_once()
                self.failures = 0
            except (LinkDownError, VersionMismatchError, ClockDriftError) as exc:
                self.failures += 1
                outcome = exc
                log.info("sync.round waiting", extra={"peer": self.upstream, "code": exc.code, "failures": self.failures})
            except SyncError as exc:
                self.failures += 1
                outcome = exc
                log.warning("sync.round failed", extra={"peer": self.upstream, "code": exc.code, "failures": self.failures})
            except Exception as exc:  # a bug or a store failure: keep the loop alive, back off
                self.failures += 1
                outcome = SyncError(f"internal error: {type(exc).__name__}")
                log.exception("sync.round crashed", extra={"peer": self.upstream, "failures": self.failures})
            if on_round is not None:
                await on_round(outcome)
            self._wake.clear()
            wake = asyncio.ensure_future(self._wake.wait())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({wake, stopped}, timeout=self.next_delay_s(), return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
                stopped.cancel()
