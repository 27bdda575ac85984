"""A running node: its config, store, responder and (below HQ) replicator.

Plain objects, no web framework: the app, the CLI and the tests all build a node
the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os

import msgspec

from crypto.identity import NodePublicKeys
from crypto.keystore import Keystore, create_keystore, open_keystore
from server.audit_log import SYSTEM, AuditLog
from server.audit_shipping import AuditShipper
from server.config import ConfigError, NodeEntry, SiteConfig
from server.key_authority import KeyAuthority
from server.peer_scopes import contracted_campaigns, peer_scope
from server.phones import (
    PHONE_ROLE, REGISTER_PATH, PhoneKeys, PhoneNameError, PhoneNodeError, device_of, phone_entry, phone_keys, registration,
)
from server.policy import NodeScopeError, Policy, PolicyError, load_policy
from server.key_steward import KeySteward
from server.keyring import Keyring
from server.purge_receipts import purge_hook
from server.retention import Retention
from server.sessions import Authenticator, DeviceCredential, NotAuthenticatedError, Principal
from server.sync_auth import signer
from server.work_rules import WorkRules, calendar_of, keyring_birthdays
from server.transport import HttpTransport
from sync.audit import AuditDraft
from sync.hlc import Clock
from sync.replicator import Replicator, SyncReport
from sync.errors import LinkDownError, SyncError, UnknownNodeError
from sync.replicator import Route
from sync.responder import Limits, Responder, ServedSession
from sync.scope import PeerScope
from sync.store.sqlite import SqliteStore, wall_clock_ms

log = logging.getLogger(__name__)


#: where a node's keystore passphrase comes from when no one types it
PASSPHRASE_ENV = "OUTPOST_KEYSTORE_PASSPHRASE"
#: scrypt cost of new keystores (tests lower it through the environment)
KDF_COST_ENV = "OUTPOST_KEYSTORE_SCRYPT_N"


def keystore_cost() -> int:
    return int(os.environ.get(KDF_COST_ENV, str(2**15)))


def load_node_policy(config: SiteConfig) -> Policy:
    """The access policy the config names, checked against its registry (a mobile
    node's entry needs its user); raises `ConfigError` naming what is wrong."""
    try:
        policy = load_policy(config.policy_path)
        for entry in config.nodes:
            policy.node_scope(entry)
        if config.role != "hq":
            policy.node_scope(config)
    except PolicyError as exc:
        raise ConfigError(config.path or str(config.policy_path), exc.message) from None
    except NodeScopeError as exc:
        raise ConfigError(config.path, exc.message) from None
    return policy


async def init_node(config: SiteConfig, passphrase: str) -> SqliteStore:
    """Create the node's keystore and database, and enroll the nodes its config
    lists. At HQ, also make the scope keys of every group."""
    policy = load_node_policy(config)
    config.data_path.mkdir(parents=True, exist_ok=True)
    keystore = create_keystore(config.keystore_path, config.node_id, passphrase, n=keystore_cost())
    store = await SqliteStore.create(
        config.db_path, node_id=config.node_id, role=config.role, clock=Clock(wall_clock_ms, config.sync.max_drift_ms)
    )
    await enroll_listed(store, config)
    if config.role == "hq":
        await KeyAuthority(Keyring(store, keystore, hq=config.node_id), config, policy).ensure_scope_keys()
    return store


async def enroll_listed(store: SqliteStore, config: SiteConfig) -> None:
    for entry in config.nodes:
        await store.enroll(entry.node_id, parent=entry.parent or config.node_id, role=entry.role)
    if config.upstream is not None:
        await store.ensure_link(config.upstream.node_id, "upstream")


class Node:
    """Everything one node runs, opened from its config."""

    def __init__(self, config: SiteConfig, store: SqliteStore, keystore: Keystore, policy: Policy) -> None:
        self.config = config
        self.store = store
        #: the access policy in force; `reload_policy` swaps in a new one
        self.policy = policy
        #: nodes being offboarded (server/offboarding.py): their scope is empty
        self.offboarding: set[str] = set()
        #: partner -> the campaigns contracted to it (`refresh_scopes`)
        self.campaigns: dict[str, frozenset[str]] = {}
        self.hq = config.node_id if config.role == "hq" else config.upstream.node_id  # type: ignore[union-attr]
        #: phones enrolled here that may sync here now, by node id (`check_peer` keeps it current)
        self.phones: dict[str, NodeEntry] = {}
        #: phones enrolled here not yet registered with the upstream (`forward_phones`)
        self.unforwarded: set[str] = set()
        self.keyring = Keyring(store, keystore, hq=self.hq)
        #: HQ only: makes, hands out and rotates scope keys; erases customers
        self.authority = KeyAuthority(self.keyring, config, policy) if config.role == "hq" else None
        self.steward = KeySteward(self.keyring, is_hq=config.role == "hq", hq=self.hq)
        #: sign-in, sessions and token checks for the users this node holds
        self.auth = Authenticator(store, keystore, config)
        #: this node's audit log: who did what, chained (server/audit_log.py)
        self.audit = AuditLog(store, reveals_per_day=config.auth.reveals_per_day)
        periods = config.retention_periods
        #: HQ only: purges expired results and closed tasks (server/retention.py)
        self.retention = Retention(store, self.audit, periods) if periods is not None else None
        #: the work rules' calendar (server/work/calendar.py) and the sweep every node runs
        self.calendar = calendar_of(config.work)
        self.work_rules = WorkRules(
            store, self.audit, self.calendar, birthday_of=keyring_birthdays(self.keyring),
            scope=None if config.role == "hq" else policy.node_scope(config), interval_s=config.work.sweep_interval_s,
        )
        self.responder = Responder(
            store,
            Limits(
                max_body_bytes=config.sync.max_body_bytes,
                max_push_changes=max(config.sync.push_limit, 20_000),
                max_page_changes=max(config.sync.page_limit, 20_000),
            ),
            scope_for=self.scope_for,
            on_session=self._audit_served,
        )
        self.transport: HttpTransport | None = None
        self.replicator: Replicator | None = None
        if config.upstream is not None:
            self.transport = HttpTransport(config.upstream.url, peer=config.upstream.node_id,
                                           timeout_s=config.sync.timeout_s,
                                           sign=signer(lambda: keystore.identity, wall_clock_ms))
            self.replicator = Replicator(
                store,
                self._to_upstream,
                upstream=config.upstream.node_id,
                page_limit=config.sync.page_limit,
                push_limit=config.sync.push_limit,
                max_body_bytes=config.sync.max_body_bytes,
                interval_s=config.sync.interval_s,
                backoff_max_s=config.sync.backoff_max_s,
                on_purge=purge_hook(lambda: keystore.identity, wall_clock_ms),
            )
        #: signs this node's chain head and sends the chains it holds upstream
        self.audit_shipper = AuditShipper(store, lambda: keystore.identity, config.audit, wall_clock_ms,
                                          send=None if self.transport is None else self.transport.send)
        self._last_round_failed = False
        self._stop = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._steward_task: asyncio.Task[None] | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._work_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, config: SiteConfig, passphrase: str) -> Node:
        """Open the node's keystore and store (made by `outpost init`); re-reads the
        config's registry. Raises `KeystoreError` (missing file, wrong passphrase)."""
        policy = load_node_policy(config)
        keystore = open_keystore(config.keystore_path, passphrase)
        store = await SqliteStore.open(
            config.db_path, node_id=config.node_id, clock=Clock(wall_clock_ms, config.sync.max_drift_ms)
        )
        try:
            await enroll_listed(store, config)
            node = cls(config, store, keystore, policy)
            records = await store.nodes()
            node.offboarding = {r.node_id for r in records if r.offboarding_ms is not None}
            listed = {e.node_id for e in config.nodes}
            node.unforwarded = {r.node_id for r in records if r.role == "mobile" and r.parent == config.node_id
                                and r.node_id not in listed and r.sign_pub is not None}
            if node.authority is not None:
                await node.authority.ensure_scope_keys()  # groups added to the registry since
        except BaseException:
            await store.close()
            raise
        return node

    def scope_for(self, peer: str) -> PeerScope | None:
        """The scope this node serves to a node below it: one its config lists, or
        a phone enrolled here (None: not a node served here)."""
        entry = next((e for e in self.config.nodes if e.node_id == peer), None) or self.phones.get(peer)
        if entry is None:
            return None
        return peer_scope(entry, self.policy, offboarding=peer in self.offboarding,
                          campaigns=self.campaigns.get(peer, frozenset()))

    # ------------------------------------------------------------ phones (server/phones.py)

    async def check_peer(self, peer: str) -> None:
        """Refuse a node the registry knows that may not sync here: a phone
        registered below another node (HQ knows its branches' phones, which sync
        with their branch) is `UnknownNodeError`; a phone whose user may no longer
        use it (disabled, deleted, revoked, moved) is `NotAuthenticatedError`.
        Keeps the scope of a phone that may sync current (its user's rows)."""
        if any(e.node_id == peer for e in self.config.nodes):
            return
        record = await self.store.node(peer)
        if record is None:
            return  # not known at all: the responder refuses it
        device = device_of(self.config.node_id, peer)
        if record.role != "mobile" or record.parent != self.config.node_id or device is None:
            raise UnknownNodeError(peer)
        try:
            user = await self.auth.device_user(device)
        except NotAuthenticatedError:
            self.phones.pop(peer, None)
            raise
        self.phones[peer] = phone_entry(peer, self.config.node_id, user["row_id"])

    async def enroll_phone(self, principal: Principal, label: str | None, public: NodePublicKeys, *,
                           audit: AuditDraft | None = None) -> DeviceCredential:
        """Enrol a signed-in account manager's phone as a device of theirs and a
        node below this one (``public``: its keys, their possession proven by the
        caller); ``audit`` is committed with its keys in the registry. Raises
        `PhoneNodeError` (not a branch, a malformed or taken id)."""
        site = self.config.node_id
        if self.config.role != "branch":
            raise PhoneNodeError(public.node_id, f"phones sync with their user's branch node, not a {self.config.role} node")
        if principal.site != site:
            raise PhoneNodeError(public.node_id, f"enrol it at the node of your site `{principal.site}`")
        device = device_of(site, public.node_id)
        if device is None:
            raise PhoneNameError(public.node_id, f"a phone's node id here is `{site}.<a new ULID, lowercase>`")
        if await self.store.node(public.node_id) is not None or await self.store.device(device) is not None:
            raise PhoneNodeError(public.node_id, "this node id is taken; draw another ULID")
        credential = await self.auth.enroll_device(principal, label, device_id=device)
        await self.store.enroll(public.node_id, parent=site, role="mobile")
        await self.store.set_node_keys(public.node_id, key_version=public.key_version, sign_pub=public.sign_pub,
                                       kem_pub=public.kem_pub, audit=audit)
        self.phones[public.node_id] = phone_entry(public.node_id, site, principal.user_id)
        self.unforwarded.add(public.node_id)
        log.info("phone.enrolled", extra={"peer": public.node_id, "user_id": principal.user_id})
        return msgspec.structs.replace(credential, node_id=public.node_id)

    async def keys_for_phone(self, peer: str) -> PhoneKeys:
        """The scope keys a phone enrolled here may hold now, wrapped for it."""
        await self.check_peer(peer)
        record = await self.store.node(peer)
        scope = self.scope_for(peer) if peer in self.phones else None
        if record is None or scope is None or record.kem_pub is None:
            raise UnknownNodeError(peer)
        return phone_keys(self.keyring.keystore, self.config.node_id, record, scope.classes,
                          masked=self.policy.masked_fields(PHONE_ROLE, "customers"))

    async def register_phone(self, site: str, public: NodePublicKeys) -> None:
        """Upstream of ``site``: record a phone enrolled there, so the phone's changes
        that the site forwards are taken as from a node below it. Raises
        `UnknownNodeError` (``site`` is no branch enrolled here) or `PhoneNodeError`."""
        record = await self.store.node(site)
        if record is None or record.retired_ms is not None or record.role != "branch" or record.sign_pub is None:
            raise UnknownNodeError(site)
        if device_of(site, public.node_id) is None:
            raise PhoneNameError(public.node_id, f"a phone of `{site}` is named `{site}.<ULID, lowercase>`")
        existing = await self.store.node(public.node_id)
        if existing is not None and (existing.parent != site or existing.role != "mobile"):
            raise PhoneNodeError(public.node_id, "registered below another node")
        await self.store.enroll(public.node_id, parent=site, role="mobile")
        await self.store.set_node_keys(public.node_id, key_version=public.key_version, sign_pub=public.sign_pub,
                                       kem_pub=public.kem_pub)
        log.info("phone.registered", extra={"peer": public.node_id, "parent": site})

    async def forward_phones(self) -> None:
        """Register the phones enrolled here, and not yet upstream, with the upstream.
        Raises `LinkDownError` when it is unreachable; a refusal is logged and
        tried again before the next push."""
        assert self.transport is not None
        for node_id in sorted(self.unforwarded):
            record = await self.store.node(node_id)
            if record is None or record.sign_pub is None:
                self.unforwarded.discard(node_id)
                continue
            body = msgspec.json.encode(registration(record))
            headers = self.transport.sign("register", body) if self.transport.sign is not None else None
            try:
                await self.transport.post(REGISTER_PATH, body, "application/json", headers=headers)
            except LinkDownError:
                raise
            except SyncError as exc:
                log.warning("phone.register refused upstream", extra={"peer": node_id, "code": exc.code})
                continue
            self.unforwarded.discard(node_id)

    async def _to_upstream(self, route: Route, body: bytes) -> bytes:
        """The replicator's transport: the phones enrolled here are registered
        upstream before a push may carry their changes."""
        assert self.transport is not None
        if route == "push" and self.unforwarded:
            await self.forward_phones()
        return await self.transport(route, body)

    async def refresh_scopes(self) -> None:
        """Read what the scopes of the nodes below depend on besides the policy and
        the registry: the campaigns contracted to each partner (before each pull)."""
        if self.config.nodes:
            self.campaigns = await contracted_campaigns(self.store)

    def reload_policy(self) -> Policy:
        """Read the policy file again and put it in force; raises `ConfigError`
        (and changes nothing) when the file is bad. No data is touched here: what
        the new policy hides or shows takes effect on the next request and sync."""
        policy = load_node_policy(self.config)
        self.policy = policy
        if self.authority is not None:
            self.authority.policy = policy
        if self.config.role != "hq":
            self.work_rules.scope = policy.node_scope(self.config)
        log.info("policy.reloaded", extra={"roles": len(policy.roles)})
        return policy

    def start_replication(self) -> None:
        """Sync with the upstream in the background until `close`."""
        if self.replicator is not None and self._loop_task is None:
            self._loop_task = asyncio.create_task(self.replicator.run(self._stop, on_round=self._log_round))

    def start_key_steward(self) -> None:
        """Do the key work that arriving changes call for, in the background until `close`."""
        if self._steward_task is None:
            self._steward_task = asyncio.create_task(self.steward.run(self._stop))

    def start_retention(self) -> None:
        """At HQ, purge expired rows now and every ``[retention] interval_s``, in
        the background until `close` (no-op at any other node)."""
        if self.retention is not None and self._retention_task is None:
            self._retention_task = asyncio.create_task(self.retention.run(self._stop))

    def start_work_rules(self) -> None:
        """Sweep the work rules every ``[work] sweep_interval_s`` (the first one an
        interval after start), in the background until `close` (every node,
        offline too)."""
        if self._work_task is None:
            self._work_task = asyncio.create_task(self.work_rules.run(self._stop))

    def start_audit_checkpoints(self) -> None:
        """Sign the audit chain's head every ``audit.checkpoint_interval_s`` while it moves."""
        if self._checkpoint_task is None:
            self._checkpoint_task = asyncio.create_task(self._checkpoints())

    async def _checkpoints(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.config.audit.checkpoint_interval_s)
            except TimeoutError:
                pass
            try:
                await self.audit_shipper.checkpoint()
            except Exception:  # noqa: BLE001 - the next interval tries again
                log.exception("audit.checkpoint failed")

    async def sync_now(self) -> SyncReport:
        """One sync round, then the key work it calls for, and the audit
        shipment, before returning."""
        if self.replicator is None:
            report = SyncReport()
        else:
            try:
                report = await self.replicator.sync_once()
            except SyncError as exc:
                await self._audit_round(exc)
                raise
            await self._audit_round(report)
            await self._ship_audit()
        await self.steward.run_once()
        return report

    async def _log_round(self, outcome: SyncReport | SyncError) -> None:
        await self._audit_round(outcome)
        if isinstance(outcome, SyncReport) and outcome.pulled:
            self.steward.trigger()
        if isinstance(outcome, SyncReport) and (outcome.pushed or outcome.pulled):
            log.info(
                "sync.round done",
                extra={"pushed": outcome.pushed, "pulled": outcome.pulled, "conflicts": outcome.conflicts},
            )
        if isinstance(outcome, SyncReport):
            await self._ship_audit()

    async def _ship_audit(self) -> None:
        """Send the audit chains upstream; a failure waits for the next round
        (the entries stay, and are sent then)."""
        try:
            await self.audit_shipper.ship()
        except SyncError as exc:
            log.info("audit.ship waiting", extra={"code": exc.code})
        except Exception:  # noqa: BLE001 - the sync loop must go on
            log.exception("audit.ship failed")

    async def _audit_round(self, outcome: SyncReport | SyncError) -> None:
        """A sync round made: recorded when it moved changes, and when the link
        fails after working (not every retry of a link that stays down)."""
        upstream = self.config.upstream.node_id if self.config.upstream is not None else None
        if isinstance(outcome, SyncError):
            if not self._last_round_failed:
                await self.audit.record(SYSTEM, "sync_round", collection="sync", peer=upstream, status=503,
                                        reason=outcome.code)
            self._last_round_failed = True
            return
        self._last_round_failed = False
        if outcome.pushed or outcome.pulled:
            await self.audit.record(SYSTEM, "sync_round", collection="sync", peer=upstream,
                                    counts={"pushed": outcome.pushed, "pulled": outcome.pulled,
                                            "conflicts": outcome.conflicts})

    def _audit_served(self, session: ServedSession) -> AuditDraft:
        return self.audit.draft(session.peer, f"sync_{session.route}", role="node", collection="sync",
                                peer=session.peer, rows=session.refused_rows, counts=session.counts)

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop syncing and purging (a round or batch in flight gets ``grace_s`` to
        finish; an apply cut short rolls back whole) and close the store."""
        self._stop.set()
        for task in (self._loop_task, self._steward_task, self._checkpoint_task, self._retention_task,
                     self._work_task):
            if task is not None:
                try:
                    await asyncio.wait_for(task, grace_s)
                except TimeoutError:
                    pass  # wait_for cancelled it
        if self.transport is not None:
            await self.transport.aclose()
        try:
            await self.audit_shipper.checkpoint()  # the chain's last head, signed
        except Exception:  # noqa: BLE001 - closing goes on; the chain itself is whole
            log.exception("audit.checkpoint failed")
        await self.store.close()
