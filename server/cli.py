"""The `outpost` command: init, serve, sync, status, users, policy, retention, report, demo.

SITE is a site config: a path to a TOML file, or a name in sites/ (``branch-a``).
Every command exits non-zero with a one-line message (no traceback) when the
config, the database or the link is wrong.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec

from server.config import ConfigError, SiteConfig, load_site, with_overrides
from server.logging import setup_logging
from crypto.errors import KeystoreError
from sync.errors import SyncError
from sync.schema import Role
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
    """Known errors (config, store, sync, keystore, API, unreadable files) become one-line
    messages and exit status 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (ConfigError, StoreError, SyncError, KeystoreError, ApiError) as exc:
            click.echo(f"outpost: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:  # a keystore or data path that is no readable file (a directory, no permission)
            where = f"{exc.filename}: " if exc.filename is not None else ""
            click.echo(f"outpost: cannot open {where}{exc.strerror or type(exc).__name__}", err=True)
            sys.exit(1)

    return wrapper


class ApiError(Exception):
    """A node's API refused a CLI request (its problem detail is the message)."""


def _passphrase(*, confirm: bool = False) -> str:
    """The keystore passphrase: from the environment, else asked for (never stored)."""
    from server.node import PASSPHRASE_ENV

    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise ConfigError(PASSPHRASE_ENV, "no keystore passphrase: set it in the environment or run interactively")
    return click.prompt("keystore passphrase", hide_input=True, confirmation_prompt=confirm)  # type: ignore[no-any-return]


def _call(url: str, path: str, body: object = None, *, token_env: str = "OUTPOST_ADMIN_TOKEN", method: str = "POST",
          params: dict[str, str] | None = None) -> Any:
    """Call a node's API (POST by default) with the operator token; a refusal becomes `ApiError`."""
    import httpx

    token = os.environ.get(token_env, "")
    try:
        response = httpx.request(method, f"{url.rstrip('/')}{path}", json=body, params=params, timeout=600,
                                 headers={"authorization": f"Bearer {token}"})
    except httpx.TransportError as exc:
        raise ApiError(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text[:200]
        raise ApiError(f"{url}{path} answered {response.status_code}: {detail}")
    return response.json()


def _local_url(config: SiteConfig) -> str:
    return f"http://{config.listen.host}:{config.listen.port}"


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
    """Create a node's keystore (sealed with a passphrase) and database from its site config."""
    from server.node import init_node

    config = _config(site, data_dir, port, upstream_url)
    if config.db_path.exists():
        raise ConfigError(config.path, f"a database already exists at {config.db_path}; refusing to overwrite it")
    if config.keystore_path.exists():
        raise ConfigError(config.path, f"a keystore already exists at {config.keystore_path}; refusing to overwrite it")
    passphrase = _passphrase(confirm=True)

    async def go() -> None:
        store = await init_node(config, passphrase)
        click.echo(f"initialised {config.node_id} ({config.role}) at {config.db_path} store {store.store_id}; "
                   f"keystore {config.keystore_path}")
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
    from server.passwords import COST_ENV, PasswordCostError, password_hasher

    try:
        password_hasher()
    except PasswordCostError:
        raise ConfigError(COST_ENV, "expected TIME,MEMORY_KIB,PARALLELISM (e.g. 3,65536,4)") from None
    passphrase = _passphrase()
    from crypto.keystore import open_keystore

    open_keystore(config.keystore_path, passphrase)  # a wrong passphrase stops here, with one line
    setup_logging(ctx.obj["log_level"] if ctx.obj["log_level"] != "WARNING" else "INFO", node_id=config.node_id)
    app = create_app(config, passphrase=passphrase, replicate=not no_replicate)
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

    passphrase = _passphrase()

    async def go() -> None:
        node = await Node.open(config, passphrase)
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
@_site_options
@_friendly
def enroll(site: str, data_dir: str | None, port: int | None, upstream_url: str | None) -> None:
    """Register this node's public keys with HQ (needs HQ's OUTPOST_ADMIN_TOKEN); HQ
    then sends it, by sync, the scope keys its registry entry grants."""
    from crypto.keystore import open_keystore
    from server.routes.keys import enroll_request

    config = _config(site, data_dir, port, upstream_url)
    if config.upstream is None:
        raise ConfigError(config.path, "HQ does not enroll with anyone; enroll the nodes below it")
    keystore = open_keystore(config.keystore_path, _passphrase())
    body = msgspec.to_builtins(enroll_request(keystore.identity))
    result = _call(config.upstream.url, "/nodes/enroll", body)
    click.echo(f"enrolled {config.node_id} (key version {result['key_version']}) with {config.upstream.node_id}; "
               f"scope keys issued: {', '.join(result['issued']) or 'none'}")


@main.command()
@_site_options
@click.argument("customer")
@click.option("--requested-by", required=True,
              type=click.Choice(["data_subject", "guardian", "authority", "controller"]), help="Who asked.")
@click.option("--basis", required=True, help="The ground (PIPL Art. 47), e.g. subject_request, consent_withdrawn.")
@click.option("--reference", help="The ticket or task id the request came in.")
@_friendly
def erase(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, customer: str,
          requested_by: str, basis: str, reference: str | None) -> None:
    """Erase CUSTOMER's personal data everywhere (PIPL Art. 47), through the running HQ node;
    who asked and on what ground go into the audit log."""
    config = _config(site, data_dir, port, upstream_url)
    body = {"requested_by": requested_by, "basis": basis, **({"reference": reference} if reference else {})}
    report = _call(_local_url(config), f"/customers/{customer}/erase", body)
    rotated = ", ".join(f"{r['group']}/{r['field_class']} v{r['new_version']}" for r in report["rotations"])
    click.echo(f"erased {customer}: {report['data_keys_shredded']} data keys shredded, "
               f"{report['results_shredded']} results shredded; scope keys rotated: {rotated or 'none'}")


@main.command()
@_site_options
@click.argument("partner")
@click.option("--wait", "wait_s", type=float, default=600.0, show_default=True,
              help="Seconds to wait for the partner's node to sync, purge and sign its receipt.")
@_friendly
def offboard(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, partner: str,
             wait_s: float) -> None:
    """End PARTNER's contract (PIPL Art. 21), through the running HQ node: revoke its
    campaigns, customers, users and keys; wait until its node has purged everything
    and signed a verified receipt; then retire the node's credentials."""
    import time

    config = _config(site, data_dir, port, upstream_url)
    url, path = _local_url(config), f"/partners/{partner}/offboard"
    began = _call(url, path)
    click.echo(f"{partner}: revoked {began['customers_revoked']} customers, {began['campaigns_revoked']} campaigns, "
               f"{began['users_deleted']} users, {began['key_records_deleted']} key records; waiting for its purge")
    deadline = time.monotonic() + wait_s
    state = began
    while not state["purged"]:
        if time.monotonic() > deadline:
            raise ApiError(f"{partner} has not confirmed its purge within {wait_s:g} s "
                           f"(still holds {state['rows_held']} rows by HQ's record); run this again later")
        time.sleep(1.0)
        state = _call(url, path, method="GET")
    done = _call(url, f"/partners/{partner}/retire")
    click.echo(f"{partner}: purged ({done['receipts']} signed receipts, all verified); credentials retired")


@main.command("rotate-keys")
@_site_options
@click.option("--scope", "scope", help="A scope key to rotate, as GROUP/CLASS (at HQ), e.g. branch-a/contact.")
@click.option("--customer", help="A customer whose data keys to rotate (its fields are re-sealed).")
@click.option("--node", "own", is_flag=True, help="This node's own signing and key-receiving keys.")
@_friendly
def rotate_keys(site: str, data_dir: str | None, port: int | None, upstream_url: str | None,
                scope: str | None, customer: str | None, own: bool) -> None:
    """Rotate keys at the running node, without stopping it."""
    config = _config(site, data_dir, port, upstream_url)
    url = _local_url(config)
    if sum(x is not None and x is not False for x in (scope, customer, own)) != 1:
        raise click.UsageError("give exactly one of --scope, --customer, --node")
    if scope is not None:
        group, _, cls = scope.partition("/")
        r = _call(url, "/keys/rotate-scope", {"group": group, "field_class": cls})
        click.echo(f"rotated {group}/{cls}: v{r['old_version']} -> v{r['new_version']}, {r['rewrapped']} data keys "
                   f"re-wrapped, sent to {', '.join(r['recipients']) or 'no node'}")
    elif customer is not None:
        r = _call(url, f"/customers/{customer}/rotate-keys")
        click.echo(f"customer {customer}: {'data keys rotated' if r['rotated'] else 'nothing to rotate here'}")
    else:
        r = _call(url, "/keys/rotate-node")
        click.echo(f"{r['node_id']}: now key version {r['key_version']}")


#: where `outpost users add` reads the new user's password when no one types it
USER_PASSWORD_ENV = "OUTPOST_USER_PASSWORD"
ROLES: tuple[str, ...] = typing.get_args(Role)


@main.group()
def users() -> None:
    """Users, defined at HQ (through the running node, with its OUTPOST_ADMIN_TOKEN)."""


@users.command("add")
@_site_options
@click.option("--username", required=True, help="Sign-in name: lowercase letters, digits, dots, dashes.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--site", "user_site", required=True, help="The node where the user works (HQ or an enrolled node).")
@click.option("--team", help="The user's team.")
@click.option("--display-name", help="The name shown for the user.")
@_friendly
def users_add(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, username: str, role: str,
              user_site: str, team: str | None, display_name: str | None) -> None:
    """Define a user at HQ; the password is asked for (or OUTPOST_USER_PASSWORD)."""
    config = _config(site, data_dir, port, upstream_url)
    password = os.environ.get(USER_PASSWORD_ENV)
    if not password:
        if not sys.stdin.isatty():
            raise ConfigError(USER_PASSWORD_ENV, "no password for the new user: set it in the environment "
                                                 "or run interactively")
        password = click.prompt(f"password for {username}", hide_input=True, confirmation_prompt=True)
    body = {"username": username, "role": role, "site": user_site, "password": password,
            "team": team, "display_name": display_name}
    user = _call(_local_url(config), "/users", {k: v for k, v in body.items() if v is not None})
    click.echo(f"added {user['username']} ({user['role']} at {user['site']}) as {user['row_id']}")


def _user_id(url: str, username: str) -> str:
    found = _call(url, "/users", method="GET", params={"username": username})
    if not found:
        raise ApiError(f"no user `{username}` at {url}")
    return str(found[0]["row_id"])


@users.command("disable")
@_site_options
@click.argument("username")
@_friendly
def users_disable(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, username: str) -> None:
    """Disable USERNAME at HQ and revoke every token of theirs (their site follows on its next sync)."""
    url = _local_url(_config(site, data_dir, port, upstream_url))
    user = _call(url, f"/users/{_user_id(url, username)}/disable")
    click.echo(f"disabled {user['username']}; tokens issued before {user['tokens_valid_after_ms']} ms are revoked")


@users.command("enable")
@_site_options
@click.argument("username")
@_friendly
def users_enable(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, username: str) -> None:
    """Let USERNAME sign in again (at HQ)."""
    url = _local_url(_config(site, data_dir, port, upstream_url))
    user = _call(url, f"/users/{_user_id(url, username)}/enable")
    click.echo(f"enabled {user['username']}")


@users.command("revoke-tokens")
@_site_options
@click.argument("username")
@_friendly
def users_revoke_tokens(site: str, data_dir: str | None, port: int | None, upstream_url: str | None,
                        username: str) -> None:
    """End every session of USERNAME (at HQ): they sign in again."""
    url = _local_url(_config(site, data_dir, port, upstream_url))
    user = _call(url, f"/users/{_user_id(url, username)}/revoke-tokens")
    click.echo(f"revoked every token of {user['username']}")


@users.command("list")
@_site_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_friendly
def users_list(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, as_json: bool) -> None:
    """The users the running node holds (all at HQ, a site's own elsewhere); never a password hash."""
    rows = _call(_local_url(_config(site, data_dir, port, upstream_url)), "/users", method="GET")
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(rows).decode()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("username", "role", "site", "team", "state", "id")
    for u in rows:
        table.add_row(u["username"], u["role"], u["site"], u["team"] or "",
                      "disabled" if u["disabled"] else "active", u["row_id"])
    Console().print(table)


@main.group()
def policy() -> None:
    """The access policy of a running node (with its OUTPOST_ADMIN_TOKEN)."""


@policy.command("reload")
@_site_options
@_friendly
def policy_reload(site: str, data_dir: str | None, port: int | None, upstream_url: str | None) -> None:
    """Put the node's policy file in force again without a restart; a bad file is
    refused with what is wrong, and the policy in force stays."""
    config = _config(site, data_dir, port, upstream_url)
    result = _call(_local_url(config), "/policy/reload")
    click.echo(f"{config.node_id}: policy {result['path']} in force; roles here: "
               f"{', '.join(result['roles_here']) or 'none'}")


@main.group()
def audit() -> None:
    """The audit log: verify chains, ask who accessed a customer, what a user did."""


@audit.command("verify")
@_site_options
@click.option("--node", "chain", help="Check only this node's chain (default: every chain held).")
@_friendly
def audit_verify(site: str, data_dir: str | None, port: int | None, upstream_url: str | None,
                 chain: str | None) -> None:
    """Check the audit chains in SITE's database file: every hash, link and signed
    checkpoint. Exits 1 naming the first bad entry when any chain is broken.
    Reads the file only (the node may be running); the node's own key comes from
    its keystore."""
    from crypto.keystore import open_keystore
    from server.audit_verify import verify_chain
    from server.routes.audit import first_break_line
    from sync.hlc import Clock
    from sync.store.sqlite import SqliteStore, wall_clock_ms

    config = _config(site, data_dir, port, upstream_url)
    identity = open_keystore(config.keystore_path, _passphrase()).identity
    own = (identity.key_version, identity.public().sign_pub)

    async def go() -> list[Any]:
        store = await SqliteStore.open(config.db_path, node_id=config.node_id,
                                       clock=Clock(wall_clock_ms, config.sync.max_drift_ms))
        try:
            nodes = [chain] if chain else sorted(set(await store.audit_nodes()) | {config.node_id})
            return [await verify_chain(store, n, own_key=own if n == config.node_id else None) for n in nodes]
        finally:
            await store.close()

    reports = asyncio.run(go())
    for r in reports:
        state = "ok" if not r.breaks else f"{len(r.breaks)} breaks"
        click.echo(f"{r.node}: entries {r.first_seq}..{r.last_seq} ({r.entries}), checkpoints {r.checkpoints} "
                   f"({r.signatures_verified} signatures verified, {r.signatures_unverifiable} unverifiable): {state}")
        for b in r.breaks[:20]:
            click.echo(f"  entry {b.seq}: {b.kind} ({b.detail})")
    line = first_break_line(reports)
    if line is not None:
        click.echo(f"outpost: audit chain broken: first bad entry {line}", err=True)
        sys.exit(1)


def _print_entries(page: dict[str, Any]) -> None:
    for e in page["entries"]:
        what = ", ".join(filter(None, [
            "fields " + "/".join(e["fields"]) if e["fields"] else "",
            "shown " + "/".join(e["shown"]) if e["shown"] else "",
            "masked " + "/".join(e["masked"]) if e["masked"] else "",
            f"purpose {e['purpose']}" if e["purpose"] else "",
            f"ref {e['reference']}" if e["reference"] else "",
        ]))
        click.echo(f"{e['at_ms']} {e['node']}#{e['seq']} {e['actor']} ({e['role'] or '-'}) {e['action']} "
                   f"{','.join(e['rows'])} {what} -> {e['outcome']} {e['status']} {e['reason'] or ''}".rstrip())


@audit.command("customer")
@_site_options
@click.argument("customer")
@_friendly
def audit_customer(site: str, data_dir: str | None, port: int | None, upstream_url: str | None,
                   customer: str) -> None:
    """Who accessed CUSTOMER's data, and why (through the running node)."""
    config = _config(site, data_dir, port, upstream_url)
    _print_entries(_call(_local_url(config), f"/audit/customers/{customer}", method="GET",
                         params={"limit": "1000"}))


@audit.command("actor")
@_site_options
@click.argument("actor")
@click.option("--since-ms", type=int, help="From this time (Unix ms).")
@click.option("--until-ms", type=int, help="Up to this time (Unix ms).")
@_friendly
def audit_actor(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, actor: str,
                since_ms: int | None, until_ms: int | None) -> None:
    """What ACTOR (a user id) did in a period (through the running node)."""
    config = _config(site, data_dir, port, upstream_url)
    params = {"limit": "1000", **({"since_ms": str(since_ms)} if since_ms is not None else {}),
              **({"until_ms": str(until_ms)} if until_ms is not None else {})}
    _print_entries(_call(_local_url(config), f"/audit/actors/{actor}", method="GET", params=params))


@audit.command("alerts")
@_site_options
@_friendly
def audit_alerts(site: str, data_dir: str | None, port: int | None, upstream_url: str | None) -> None:
    """Breaks found in the chains the running node holds; exits 1 when there are any."""
    config = _config(site, data_dir, port, upstream_url)
    alerts = _call(_local_url(config), "/audit/alerts", method="GET")
    for a in alerts:
        click.echo(f"{a['at_ms']} {a['node']}: entry {a['seq']} {a['kind']} ({a['detail']})")
    if alerts:
        sys.exit(1)


@main.group()
def retention() -> None:
    """HQ's retention periods (its [retention] table), through the running HQ node."""


@retention.command("run")
@_site_options
@_friendly
def retention_run(site: str, data_dir: str | None, port: int | None, upstream_url: str | None) -> None:
    """Purge now the results and closed tasks HQ's retention periods have expired
    (HQ also does every [retention] interval_s); every node deletes them on its next sync."""
    config = _config(site, data_dir, port, upstream_url)
    periods = config.retention_periods
    if periods is None:
        raise ConfigError(config.path, "only HQ purges by retention; run this for HQ's config")
    report = _call(_local_url(config), "/retention/run")
    click.echo(f"{config.node_id}: purged {report['results']} results recorded more than {periods.results_days} "
               f"days ago and {report['tasks']} tasks closed more than {periods.closed_tasks_days} days ago")


@main.command()
@_site_options
@click.option("--by", type=click.Choice(["agent", "team", "site"]), default="agent", show_default=True,
              help="One row per agent, team or site, and day.")
@click.option("--from", "day_from", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--to", "day_to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, included.")
@click.option("--team", help="Only the work of this team's members.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True), help="Also write the rows as CSV here.")
@_friendly
def report(site: str, data_dir: str | None, port: int | None, upstream_url: str | None, by: str, day_from: Any,
           day_to: Any, team: str | None, csv_path: str | None) -> None:
    """KPIs per agent, team or site and day, over the rows the running node holds
    (HQ: all of them): a table here, and CSV with --csv."""
    from rich.console import Console
    from rich.table import Table

    from server.work.kpi import KpiRow, kpi_csv

    config = _config(site, data_dir, port, upstream_url)
    params = {"by": by, "from": f"{day_from:%Y-%m-%d}", "to": f"{day_to:%Y-%m-%d}", **({"team": team} if team else {})}
    rows = msgspec.convert(_call(_local_url(config), "/reports/kpi", method="GET", params=params), list[KpiRow])

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    table = Table("day", by, "site", "calls", "connect", "conversion", ">18 s", "orders ok", "complaints on time",
                  "AHT s", "satisfaction", title=f"{config.node_id}: KPIs {params['from']}..{params['to']}")
    for r in rows:
        table.add_row(str(r.day), r.key, r.site, str(r.attempts), pct(r.connect_rate), pct(r.conversion_rate),
                      pct(r.long_call_share), pct(r.order_success_rate), pct(r.complaint_timeliness),
                      "-" if r.aht_s is None else f"{r.aht_s:.1f}",
                      "-" if r.satisfaction is None else f"{r.satisfaction:.2f}")
    Console(width=160).print(table)
    if csv_path:
        Path(csv_path).write_text(kpi_csv(rows), encoding="utf-8", newline="")
        click.echo(f"wrote {len(rows)} rows to {csv_path}")


@main.command()
@click.option("--customers", default=40, show_default=True, help="Demo customers to seed at HQ.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the nodes' data here (default: a temp dir).")
@_friendly
def demo(customers: int, workdir: str | None) -> None:
    """HQ and two branches on loopback: cut a branch off, edit both sides, heal, converge."""
    from server.demo import run_demo

    sys.exit(asyncio.run(run_demo(customers=customers, workdir=workdir)))
