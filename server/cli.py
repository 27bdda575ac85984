"""The `outpost` command: init, serve, sync, status, demo.

SITE is a site config: a path to a TOML file, or a name in sites/ (``branch-a``).
Every command exits non-zero with a one-line message (no traceback) when the
config, the database or the link is wrong.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec

from server.config import ConfigError, SiteConfig, load_site, with_overrides
from server.logging import setup_logging
from sync.errors import SyncError
from sync.store.errors import StoreError

ROOT = Path(__file__).resolve().parent.parent


def resolve_site(site: str) -> Path:
    """A config path from a path or a site name (looked up in ./sites, then the repo's sites/)."""
    path = Path(site)
    if path.suffix == ".toml" or path.exists():
        return path
    for base in (Path.cwd() / "sites", ROOT / "sites"):
        candidate = base / f"{site}.toml"
        if candidate.exists():
            return candidate
    raise ConfigError(site, "no such config file, and no sites/<name>.toml of that name")


def _site_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--upstream-url", help="Override the upstream URL of the config.")(f)
    f = click.option("--port", type=int, help="Override the listening port.")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), help="Override where the node keeps its data.")(f)
    f = click.argument("site")(f)
    return f


def _config(site: str, data_dir: str | None, port: int | None, upstream_url: str | None) -> SiteConfig:
    return with_overrides(load_site(resolve_site(site)), data_dir=data_dir, port=port, upstream_url=upstream_url)


def _friendly(f: Callable[..., Any]) -> Callable[..., Any]:
    """Known errors (config, store, sync) become one-line messages and exit status 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (ConfigError, StoreError, SyncError) as exc:
            click.echo(f"outpost: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.option("--log-level", default="WARNING", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """Outpost: offline-first sync and data protection for customer-care sites."""
    ctx.obj = {"log_level": log_level.upper()}


@main.command()
@_site_options
@_friendly
def init(site: str, data_dir: str | None, port: int | None, upstream_url: str | None) -> None:
    """Create a node's database from its site config."""
    from server.node import init_node

    config = _config(site, data_dir, port, upstream_url)

    async def go() -> None:
        store = await init_node(config)
        click.echo(f"initialised {config.node_id} ({config.role}) at {config.db_path} store {store.store_id}")
        await store.close()

    asyncio.run(go())


@main.command()
@_site_options
@click.option("--no-replicate", is_flag=True, help="Serve only; do not sync with the upstream.")
@click.option("--sync-interval", type=float, help="Override the seconds between background syncs.")
@click.pass_context
@_friendly
def serve(ctx: click.Context, site: str, data_dir: str | None, port: int | None, upstream_url: str | None,
          no_replicate: bool, sync_interval: float | None) -> None:
    """Serve the node's API and sync endpoints, and sync with the upstream in the background."""
    import uvicorn

    from server.app import create_app

    config = _config(site, data_dir, port, upstream_url)
    if sync_interval is not None:
        config = msgspec.structs.replace(config, sync=msgspec.structs.replace(config.sync, interval_s=sync_interval))
    if not config.db_path.exists():
        raise ConfigError(config.path, f"no database at {config.db_path}; run `outpost init {site}` first")
    setup_logging(ctx.obj["log_level"] if ctx.obj["log_level"] != "WARNING" else "INFO", node_id=config.node_id)
    app = create_app(config, replicate=not no_replicate)
    uvicorn.run(app, host=config.listen.host, port=config.listen.port, access_log=False, log_config=None,
                timeout_graceful_shutdown=5)


@main.command()
@_site_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@_friendly
def sync(ctx: click.Context, site: str, data_dir: str | None, port: int | None, upstream_url: str | None,
         quiet: bool) -> None:
    """Sync once with the upstream: push local changes, then pull until caught up."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from server.node import Node

    config = _config(site, data_dir, port, upstream_url)
    setup_logging(ctx.obj["log_level"], node_id=config.node_id)
    if config.upstream is None:
        raise ConfigError(config.path, "this node has no upstream to sync with")

    async def go() -> None:
        node = await Node.open(config)
        try:
            assert node.replicator is not None
            link = await node.store.link(config.upstream.node_id)  # type: ignore[union-attr]
            start = link.pull_cursor if link else 0
            with Progress(TextColumn("pull"), BarColumn(), MofNCompleteColumn(), TextColumn("seq"),
                          TimeElapsedColumn(), disable=quiet, transient=True) as bar:
                task = bar.add_task("pull", total=None)

                def progress(pulled: int, cursor: int, high: int) -> None:
                    bar.update(task, completed=max(0, cursor - start), total=max(1, high - start))

                report = await node.replicator.sync_once(progress)
        finally:
            await node.close()
        click.echo(
            f"synced {config.node_id} with {config.upstream.node_id}: pushed {report.pushed} "  # type: ignore[union-attr]
            f"pulled {report.pulled} applied {report.applied} conflicts {report.conflicts} "
            f"refused here {report.refused_here} refused upstream {report.refused_upstream}"
        )

    asyncio.run(go())


@main.command()
@_site_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_friendly
def status(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, as_json: bool) -> None:
    """Cursors, pending changes, last good sync per link, and the clock."""
    from server.status import node_status
    from sync.hlc import Clock
    from sync.store.sqlite import SqliteStore, wall_clock_ms

    config = _config(site, data_dir, port, upstream_url)

    async def go() -> None:
        store = await SqliteStore.open(config.db_path, node_id=config.node_id,
                                       clock=Clock(wall_clock_ms, config.sync.max_drift_ms))
        try:
            st = await node_status(store)
        finally:
            await store.close()
        if as_json:
            click.echo(msgspec.json.format(msgspec.json.encode(st).decode()))
            return
        from server.status_view import render_status

        render_status(st)

    asyncio.run(go())


@main.command()
@click.option("--customers", default=40, show_default=True, help="Demo customers to seed at HQ.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the nodes' data here (default: a temp dir).")
@_friendly
def demo(customers: int, workdir: str | None) -> None:
    """HQ and two branches on loopback: cut a branch off, edit both sides, heal, converge."""
    from server.demo import run_demo

    sys.exit(asyncio.run(run_demo(customers=customers, workdir=workdir)))
