"""A node served for `bench_audit_card`, with its lone audit appends on or off (bench only).

    OUTPOST_ADMIN_TOKEN=... OUTPOST_KEYSTORE_PASSPHRASE=... \\
        .venv/bin/python -m bench.card_server SITE --data-dir DIR --port PORT --audit {on,off}

What `outpost serve SITE --no-replicate` runs: `server.app.create_app` under
uvicorn, with the same uvicorn options and log setup, in its own process.

``--audit off`` replaces `SqliteStore.append_audit` in this process, before the
app is built, with an async no-op that returns None. The customer card's
``node.audit.record(...)`` ends there, so a read's entry is neither chained nor
written nor committed; everything else a card costs (reading the row, opening
its sealed fields, the policy's projection, building the draft, JSON) is still
done. Other lone appends (refusals, sign-ins) are dropped too; a write's entry,
committed with the write, is not (the benchmark makes none). This switch exists
only here: production code has none, and must not grow one.

``BENCH_PROFILE=PATH`` in the environment runs the server under cProfile and
writes its stats to PATH when it stops (SIGTERM): the event loop's thread only,
not aiosqlite's threads, whose time shows as waiting.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import signal
import sys
from typing import Any

import uvicorn

from server.app import create_app
from server.cli import resolve_site
from server.config import load_site, with_overrides
from server.logging import setup_logging
from server.node import PASSPHRASE_ENV
from sync.audit import AuditDraft
from sync.store.sqlite import SqliteStore

PROFILE_ENV = "BENCH_PROFILE"


async def _no_append(self: SqliteStore, draft: AuditDraft) -> Any:
    """`SqliteStore.append_audit` with audit off: nothing chained, written or committed."""
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audit", choices=("on", "off"), required=True)
    args = parser.parse_args()
    if args.audit == "off":
        SqliteStore.append_audit = _no_append  # type: ignore[method-assign]
    config = with_overrides(load_site(resolve_site(args.site)), data_dir=args.data_dir, port=args.port)
    setup_logging("INFO", node_id=config.node_id)
    app = create_app(config, passphrase=os.environ[PASSPHRASE_ENV], replicate=False)

    def serve() -> None:
        uvicorn.run(app, host=config.listen.host, port=config.listen.port, access_log=False, log_config=None,
                    timeout_graceful_shutdown=5)

    profile_path = os.environ.get(PROFILE_ENV)
    if not profile_path:
        serve()
        return
    # uvicorn raises the SIGTERM it caught again once it has shut down: exit then, through the finally
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler = cProfile.Profile()
    try:
        profiler.runcall(serve)
    finally:
        profiler.dump_stats(profile_path)


if __name__ == "__main__":
    main()
