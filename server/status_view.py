"""`outpost status` as terminal tables (rich)."""

from __future__ import annotations

import datetime as dt

from rich.console import Console
from rich.table import Table

from server.status import NodeStatus


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_status(st: NodeStatus, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{st.node_id}[/] ({st.role}) store {st.store_id} seq {st.seq}")
    skew = st.clock.hlc_wall_ms - st.clock.wall_ms
    console.print(
        f"clock: wall {_when(st.clock.wall_ms)}, last HLC {_when(st.clock.hlc_wall_ms)} "
        f"({skew:+d} ms), max drift {st.clock.max_drift_ms} ms"
    )
    console.print("rows: " + ", ".join(f"{k} {v}" for k, v in st.rows.items()))
    table = Table(title="links")
    for col in ("peer", "direction", "pull (since/cursor)", "push (since/cursor)", "pending push",
                "last good sync", "last error", "in", "out"):
        table.add_column(col)
    for link in st.links:
        table.add_row(
            link.peer,
            link.direction,
            f"{link.pull_since}/{link.pull_cursor}",
            f"{link.push_since}/{link.push_cursor}" if link.direction == "upstream" else f"acked {link.acked_through}",
            "-" if link.pending_push is None else str(link.pending_push),
            _when(link.last_ok_ms),
            link.last_error or "",
            str(link.changes_in),
            str(link.changes_out),
        )
    console.print(table)
    if st.audit is not None:
        style = "bold red" if st.audit.alerts else "green"
        console.print(f"audit: own chain at entry {st.audit.seq}, {st.audit.chains_held} chains held, "
                      f"[{style}]{st.audit.alerts} alerts[/]")
        for line in st.audit.latest_alerts:
            console.print(f"  [red]{line}[/]")
