"""Fixtures for tests that run real nodes: loopback subprocesses, real SQLite files.

Nodes are `server.node_process.NodeProcess` subprocesses (``python -m server
serve``), each with its own data dir under ``tmp_path`` and a fresh operator
token. Branches can reach HQ through a `server.link_proxy.LinkProxy` that a test
cuts and heals.

Asynchronous parts (the node clients, the link proxies) all live on one event
loop that runs in a background thread for the whole session (`aio`). Tests stay
plain functions and hand a coroutine to ``aio.run(...)``; a module-scoped node
can then serve many tests. Every process a fixture starts is stopped in its
teardown, killed if it does not stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import Phase, settings

from server.link_proxy import LinkProxy
from server.node import KDF_COST_ENV, PASSPHRASE_ENV
from server.node_process import NodeProcess
from server.passwords import COST_ENV as ARGON2_COST_ENV

T = TypeVar("T")

# tests/test_mutants.py runs property tests against a broken merge rule: finding
# the failure is what counts there, shrinking it would only cost minutes
settings.register_profile(
    "mutant", phases=[Phase.explicit, Phase.reuse, Phase.generate], derandomize=True, database=None
)

# keystores made by tests use a cheap scrypt cost (the format records it, so
# opening them stays cheap too); the demo and real nodes use the default
os.environ.setdefault(KDF_COST_ENV, str(2**10))
# password hashes made by tests use a cheap Argon2id cost (each hash records its
# own, so verifying stays cheap too); real nodes use argon2-cffi's default
os.environ.setdefault(ARGON2_COST_ENV, "1,8,1")
# the CLI reads the keystore passphrase from the environment when no one types it
os.environ.setdefault(PASSPHRASE_ENV, "correct horse battery staple")

ENROLLED_BRANCHES = ("branch-1", "branch-2", "branch-3", "branch-4")
#: a phone enrolled below branch-1 (so branch-1 may forward its register writes)
MOBILE = "branch-1.m1"
#: the user the phone belongs to (its rows are theirs)
MOBILE_USER = "am-1"
#: the repository's access policy, which the test sites use
POLICY_FILE = Path(__file__).resolve().parent.parent / "sites" / "policy.toml"
SITES_DIR = POLICY_FILE.parent


class LoopThread:
    """An asyncio loop in a daemon thread; `run` blocks until a coroutine is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # a timed-out or interrupted test stops its coroutine too
            raise

    def close(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            self.run(cancel_rest(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def aio() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


# ---------------------------------------------------------------- site configs


def full_replica_policy() -> str:
    """A policy under which every node holds and may write every row and field:
    for the tests of sync itself (convergence under partitions, crashes), which
    have every node edit a shared pool. Scoped replication has its own tests,
    under the repository's policy."""
    from server.policy import GOVERNED
    from sync.schema import COLLECTIONS

    lines = ["version = 1", "[node_rows]", *(f'{kind} = "all"' for kind in ("hq", "branch", "partner", "mobile"))]
    for role, sites, rows in (("hq_admin", '["hq"]', "all"), ("supervisor", '["branch", "partner", "mobile"]', "site")):
        lines += [f"[roles.{role}]", f"sites = {sites}", f'rows = "{rows}"']
        for collection in GOVERNED:
            fields = ", ".join(f'"{name}"' for name in COLLECTIONS[collection].fields)
            lines += [f"[roles.{role}.{collection}]", f"write = [{fields}]"]
    return "\n".join(lines) + "\n"


def write_sites(
    base: Path,
    *,
    branches: tuple[str, ...] = ENROLLED_BRANCHES,
    sync: dict[str, Any] | None = None,
    policy: str = "replica",
) -> dict[str, Path]:
    """Write ``hq.toml`` (enrolling ``branches`` and `MOBILE`) and one config per branch.

    ``sync`` sets keys of every config's ``[sync]`` table. Ports, data dirs and
    the upstream URL are given on the command line by `ClusterNode`. ``policy``:
    ``replica`` (`full_replica_policy`) or ``sites`` (the repository's).
    """
    base.mkdir(parents=True, exist_ok=True)
    settings = {"interval_s": 0.5, "backoff_max_s": 1.0, "timeout_s": 20.0, **(sync or {})}
    sync_table = "[sync]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in settings.items())
    hq = ['node_id = "hq"', 'role = "hq"', "", sync_table]
    for name in branches:
        hq += ["[[nodes]]", f'node_id = "{name}"', 'role = "branch"', 'parent = "hq"', ""]
    hq += ["[[nodes]]", f'node_id = "{MOBILE}"', 'role = "mobile"', 'parent = "branch-1"', f'user = "{MOBILE_USER}"', ""]
    # each config reads policy.toml beside it
    if policy == "sites":
        shutil.copyfile(POLICY_FILE, base / "policy.toml")
    else:
        (base / "policy.toml").write_text(full_replica_policy())
    paths = {"hq": base / "hq.toml"}
    paths["hq"].write_text("\n".join(hq))
    for name in branches:
        path = base / f"{name}.toml"
        path.write_text(
            f'node_id = "{name}"\nrole = "branch"\n\n[upstream]\nnode_id = "hq"\n'
            f'url = "http://127.0.0.1:9"\n\n{sync_table}'
        )
        paths[name] = path
    return paths


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


# ---------------------------------------------------------------- nodes


@contextlib.contextmanager
def enrolled_nodes(aio: LoopThread, workdir: Path, sites: tuple[str, ...],
                   prepare: Callable[[NodeProcess, dict[str, NodeProcess]], Awaitable[None]] | None = None,
                   *, extra_config: str = "") -> Iterator[tuple[NodeProcess, dict[str, NodeProcess]]]:
    """HQ and the repository's ``sites`` below it (`outpost serve`, syncing only on
    demand), initialised, started and enrolled with HQ; ``prepare`` runs once they
    are. ``extra_config``: TOML tables appended to every site config (copied
    into ``workdir`` with the policy). Every process is stopped (killed if need
    be) on the way out."""
    token = secrets.token_urlsafe(24)
    configs: dict[str, Path | None] = dict.fromkeys(("hq", *sites))
    if extra_config:
        shutil.copyfile(POLICY_FILE, workdir / "policy.toml")
        for site in configs:
            configs[site] = workdir / f"{site}.toml"
            configs[site].write_text((SITES_DIR / f"{site}.toml").read_text() + "\n" + extra_config)  # type: ignore[union-attr]
    hq = NodeProcess("hq", workdir, token=token, config=configs["hq"])
    below = {site: NodeProcess(site, workdir, token=token, upstream_url=hq.url, extra_args=("--no-replicate",),
                               config=configs[site])
             for site in sites}

    async def start() -> None:
        await asyncio.to_thread(hq.init)
        await hq.start()
        await asyncio.gather(*(asyncio.to_thread(n.init) for n in below.values()))
        await asyncio.gather(*(n.start() for n in below.values()))
        for node in below.values():
            await node.enroll()
        if prepare is not None:
            await prepare(hq, below)

    try:
        aio.run(start(), timeout=120)
        yield hq, below
    finally:
        async def stop() -> None:
            await asyncio.gather(*(n.stop() for n in (*below.values(), hq)), return_exceptions=True)

        aio.run(stop(), timeout=90)
        for node in (*below.values(), hq):
            node.kill()


class ClusterNode(NodeProcess):
    """A `NodeProcess` whose config is a file written by `write_sites`.

    `NodeProcess` names its data dir and log after its site argument; here that
    argument is a config path, so they are named after the node instead.
    """

    def __init__(self, name: str, config: Path, workdir: Path, **kwargs: Any) -> None:
        super().__init__(str(config), workdir, **kwargs)
        self.name = name
        self.data_dir = workdir / name
        self.log_path = workdir / f"{name}.log"

    @property
    def db_path(self) -> Path:
        return self.data_dir / f"{self.name}.db"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def restart(self) -> None:
        """Start again on the same port and data dir (after `kill` or `stop`)."""
        if self.client.is_closed:
            self.client = httpx.AsyncClient(
                base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=60
            )
        await self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Cluster:
    """HQ and branches (some behind link proxies), all sharing one operator token."""

    def __init__(self, workdir: Path, *, sync: dict[str, Any] | None = None, policy: str = "replica") -> None:
        self.workdir = workdir
        self.token = secrets.token_urlsafe(24)
        self.configs = write_sites(workdir / "sites", sync=sync, policy=policy)
        self.hq = ClusterNode("hq", self.configs["hq"], workdir, token=self.token)
        self.branches: dict[str, ClusterNode] = {}
        self.proxies: dict[str, LinkProxy] = {}

    @property
    def nodes(self) -> list[ClusterNode]:
        return [self.hq, *self.branches.values()]

    async def start_hq(self, *, extra_args: tuple[str, ...] = ()) -> ClusterNode:
        self.hq.extra_args = extra_args
        await asyncio.to_thread(self.hq.init)
        await self.hq.start()
        return self.hq

    def branch(
        self, name: str, *, proxied: bool = False, sync_interval_s: float = 0.5, extra_args: tuple[str, ...] = ()
    ) -> ClusterNode:
        """A branch node (not started); ``proxied`` puts a `LinkProxy` on its way to HQ
        (the proxy starts with `start_branches`)."""
        assert name in self.configs, f"{name} is not enrolled at HQ"
        node = ClusterNode(
            name, self.configs[name], self.workdir, token=self.token, upstream_url=self.hq.url,
            sync_interval_s=sync_interval_s, extra_args=extra_args,
        )
        if proxied:
            self.proxies[name] = LinkProxy("127.0.0.1", self.hq.port)
        self.branches[name] = node
        return node

    async def start_branches(self, *names: str) -> None:
        """Init and start the named branches (all not yet started if none named), concurrently."""
        todo = [self.branches[n] for n in names] if names else [b for b in self.branches.values() if b.proc is None]
        for node in todo:
            proxy = self.proxies.get(node.name)
            if proxy is not None:
                await proxy.start()
                node.upstream_url = proxy.url
        await asyncio.gather(*(asyncio.to_thread(n.init) for n in todo))
        await asyncio.gather(*(n.start() for n in todo))

    async def close(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and close the proxies."""
        results = await asyncio.gather(*(_stop(n) for n in reversed(self.nodes)), return_exceptions=True)
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                await proxy.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def kill_all(self) -> None:
        """Last resort in teardown: SIGKILL whatever still runs."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()


async def _stop(node: ClusterNode) -> None:
    try:
        await asyncio.wait_for(node.stop(), 30)
    finally:
        node.kill()


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
def make_cluster(tmp_path: Path, aio: LoopThread) -> Iterator[ClusterFactory]:
    """``await make_cluster(branches=3, proxied=True)``: HQ and branches, started.

    ``branches`` may be a count or names; ``sync`` sets ``[sync]`` keys of every
    config; ``policy`` as in `write_sites`; ``start=False`` returns the cluster with only HQ running (add and
    start branches with `Cluster.branch` and `Cluster.start_branches`).
    """
    clusters: list[Cluster] = []

    async def make(
        branches: int | tuple[str, ...] = 0,
        *,
        proxied: bool = False,
        sync: dict[str, Any] | None = None,
        sync_interval_s: float = 0.5,
        branch_args: tuple[str, ...] = (),
        start: bool = True,
        policy: str = "replica",
    ) -> Cluster:
        workdir = tmp_path / f"cluster{len(clusters)}"
        cluster = Cluster(workdir, sync=sync, policy=policy)
        clusters.append(cluster)
        names = ENROLLED_BRANCHES[:branches] if isinstance(branches, int) else branches
        await cluster.start_hq()
        for name in names:
            cluster.branch(name, proxied=proxied, sync_interval_s=sync_interval_s, extra_args=branch_args)
        if start and names:
            await cluster.start_branches()
        return cluster

    yield make
    errors = []
    for cluster in clusters:
        try:
            aio.run(cluster.close(), timeout=90)
        except BaseException as exc:  # noqa: BLE001 - still kill the rest
            errors.append(exc)
        finally:
            cluster.kill_all()
    if errors:
        raise errors[0]


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error response (asserts its media type)."""
    assert response.headers.get("content-type", "").startswith("application/problem+json"), (
        response.status_code, response.headers.get("content-type"), response.text[:500],
    )
    body = response.json()
    assert isinstance(body, dict)
    return body
