"""A running node: its config, store, responder and (below HQ) replicator.

Plain objects, no web framework: the app, the CLI and the tests all build a node
the same way.
"""

from __future__ import annotations

import asyncio
import logging

from server.config import SiteConfig
from server.transport import HttpTransport
from sync.hlc import Clock
from sync.replicator import Replicator, SyncReport
from sync.responder import Limits, Responder
from sync.store.sqlite import SqliteStore, wall_clock_ms

log = logging.getLogger(__name__)


async def init_node(config: SiteConfig) -> SqliteStore:
    """Create the node's database and enroll the nodes its config lists."""
    config.data_path.mkdir(parents=True, exist_ok=True)
    store = await SqliteStore.create(
        config.db_path, node_id=config.node_id, role=config.role, clock=Clock(wall_clock_ms, config.sync.max_drift_ms)
    )
    await enroll_listed(store, config)
    return store


async def enroll_listed(store: SqliteStore, config: SiteConfig) -> None:
    for entry in config.nodes:
        await store.enroll(entry.node_id, parent=entry.parent or config.node_id, role=entry.role)
    if config.upstream is not None:
        await store.ensure_link(config.upstream.node_id, "upstream")


class Node:
    """Everything one node runs, opened from its config."""

    def __init__(self, config: SiteConfig, store: SqliteStore) -> None:
        self.config = config
        self.store = store
        self.responder = Responder(
            store,
            Limits(
                max_body_bytes=config.sync.max_body_bytes,
                max_push_changes=max(config.sync.push_limit, 20_000),
                max_page_changes=max(config.sync.page_limit, 20_000),
            ),
        )
        self.transport: HttpTransport | None = None
        self.replicator: Replicator | None = None
        if config.upstream is not None:
            self.transport = HttpTransport(config.upstream.url, peer=config.upstream.node_id, timeout_s=config.sync.timeout_s)
            self.replicator = Replicator(
                store,
                self.transport,
                upstream=config.upstream.node_id,
                page_limit=config.sync.page_limit,
                push_limit=config.sync.push_limit,
                max_body_bytes=config.sync.max_body_bytes,
                interval_s=config.sync.interval_s,
                backoff_max_s=config.sync.backoff_max_s,
            )
        self._stop = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, config: SiteConfig) -> Node:
        """Open the node's store (created by `outpost init`); re-reads the config's registry."""
        store = await SqliteStore.open(
            config.db_path, node_id=config.node_id, clock=Clock(wall_clock_ms, config.sync.max_drift_ms)
        )
        await enroll_listed(store, config)
        return cls(config, store)

    def start_replication(self) -> None:
        """Sync with the upstream in the background until `close`."""
        if self.replicator is not None and self._loop_task is None:
            self._loop_task = asyncio.create_task(self.replicator.run(self._stop, on_round=self._log_round))

    async def _log_round(self, outcome: object) -> None:
        if isinstance(outcome, SyncReport) and (outcome.pushed or outcome.pulled):
            log.info(
                "sync.round done",
                extra={"pushed": outcome.pushed, "pulled": outcome.pulled, "conflicts": outcome.conflicts},
            )

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop syncing (a round in flight gets ``grace_s`` to finish; an apply cut
        short rolls back whole) and close the store."""
        self._stop.set()
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(self._loop_task, grace_s)
            except TimeoutError:
                pass  # wait_for cancelled it
        if self.transport is not None:
            await self.transport.aclose()
        await self.store.close()
