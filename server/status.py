"""What `outpost status` and ``GET /status`` report: cursors, pending changes,
last good sync per link, the clock."""

from __future__ import annotations

import msgspec

from sync.hlc import wall_ms_of
from sync.replicator import Replicator
from sync.store.sqlite import SqliteStore


class LinkStatus(msgspec.Struct, kw_only=True):
    peer: str
    direction: str
    pull_since: int
    pull_cursor: int
    push_since: int
    push_cursor: int
    acked_through: int
    pending_push: int | None
    last_ok_ms: int | None
    last_error: str | None
    last_error_ms: int | None
    changes_in: int
    changes_out: int


class ClockStatus(msgspec.Struct, kw_only=True):
    wall_ms: int
    hlc: int
    hlc_wall_ms: int
    max_drift_ms: int


class AuditStatus(msgspec.Struct, kw_only=True):
    """This node's chain, and the breaks found in the chains it holds."""

    seq: int
    chains_held: int
    alerts: int
    #: the newest alerts, at most five: ``<node>: entry <seq> <kind>``
    latest_alerts: list[str]


class NodeStatus(msgspec.Struct, kw_only=True):
    node_id: str
    role: str
    store_id: str
    seq: int
    rows: dict[str, int]
    clock: ClockStatus
    links: list[LinkStatus]
    replicator_failures: int | None = None
    audit: AuditStatus | None = None


async def node_status(store: SqliteStore, replicator: Replicator | None = None) -> NodeStatus:
    links = []
    for link in await store.links():
        pending = None
        if link.direction == "upstream":
            pending = await store.pending_count(link.push_since, link.push_cursor, exclude_src=link.peer)
        links.append(
            LinkStatus(
                peer=link.peer,
                direction=link.direction,
                pull_since=link.pull_since,
                pull_cursor=link.pull_cursor,
                push_since=link.push_since,
                push_cursor=link.push_cursor,
                acked_through=link.acked_through,
                pending_push=pending,
                last_ok_ms=link.last_ok_ms,
                last_error=link.last_error,
                last_error_ms=link.last_error_ms,
                changes_in=link.changes_in,
                changes_out=link.changes_out,
            )
        )
    clock = store.clock
    return NodeStatus(
        node_id=store.node_id,
        role=store.role,
        store_id=store.store_id,
        seq=await store.high_seq(),
        rows=await store.counts(),
        clock=ClockStatus(wall_ms=clock.now_ms(), hlc=clock.last, hlc_wall_ms=wall_ms_of(clock.last),
                          max_drift_ms=clock.max_drift_ms),
        links=links,
        replicator_failures=None if replicator is None else replicator.failures,
        audit=await _audit_status(store),
    )


async def _audit_status(store: SqliteStore) -> AuditStatus:
    return AuditStatus(
        seq=(await store.audit_head())[0], chains_held=len(await store.audit_nodes()),
        alerts=await store.count_audit_alerts(),
        latest_alerts=[f"{a['node']}: entry {a['seq']} {a['kind']}" for a in await store.audit_alerts(limit=5)],
    )
