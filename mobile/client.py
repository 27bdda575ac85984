"""`Phone`: an account manager's phone, a node below its site node.

Enrol once (sign in, make keys, enrol them), then work offline and `sync` when
a signal comes. Every read and write here is local: the inbox, the customer
card and recording results work with the site unreachable; `sync` pushes what
was recorded, pulls what changed, and fetches the scope keys the site holds for
the phone now.

Files under ``data_dir``: ``phone.db`` (the SQLite store, personal fields
sealed as at any node), ``phone.keystore`` (its identity and scope keys, sealed
with the passphrase, `crypto.keystore`) and ``phone.json`` (ids and the site's
URL, no secret).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx
import msgspec

from crypto.keystore import Keystore, create_keystore, open_keystore
from crypto.plaintext import Plaintext
from mobile.errors import EnrolmentError, NotHeldError
from mobile.keys import PhoneKeys, enrolment, open_customer, purge_receipts, take_scope_keys
from mobile.masks import mask
from mobile.transport import SiteTransport
from server.work.calendar import WorkCalendar
from server.work.offer import NOT_OFFERED, offer_check
from server.work.outcomes import callback_edits, result_edits
from sync.edits import Edit
from sync.errors import LinkDownError
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.replicator import Replicator, SyncReport
from sync.schema import OPEN_TASK_STATUSES, CallOutcome
from sync.store.sqlite import SqliteStore, wall_clock_ms

log = logging.getLogger(__name__)

DB_FILE = "phone.db"
KEYSTORE_FILE = "phone.keystore"
PROFILE_FILE = "phone.json"


class Profile(msgspec.Struct, kw_only=True):
    """Who this phone is and where it syncs (no secret)."""

    node_id: str
    site: str
    site_url: str
    user_id: str
    device_id: str
    max_drift_ms: int = 60_000
    #: the customer fields the user's role sees masked (from the site, at each sync)
    masked: list[str] = []


class InboxTask(msgspec.Struct, kw_only=True):
    """One task in the phone's inbox (ids and codes only)."""

    task_id: str
    customer_id: str
    kind: str
    status: str
    due_at_ms: int | None
    priority: int
    attempts: int
    deadline_at_ms: int | None = None
    campaign_id: str | None = None


class Card:
    """A customer as the phone shows it: the plain fields; the personal fields
    opened with the phone's keys (`Plaintext`, masked in repr), or masked for
    those the user's role sees masked; and the reason any other did not open."""

    __slots__ = ("customer_id", "fields", "pii", "masked", "unavailable")

    def __init__(self, customer_id: str, fields: dict[str, Any], pii: dict[str, Plaintext],
                 masked: dict[str, str], unavailable: dict[str, str]) -> None:
        self.customer_id = customer_id
        self.fields = fields
        self.pii = pii
        self.masked = masked
        self.unavailable = unavailable

    def __repr__(self) -> str:
        return (f"Card(customer_id={self.customer_id!r}, pii={sorted(self.pii)}, masked={sorted(self.masked)}, "
                f"unavailable={self.unavailable})")


class Phone:
    """One enrolled phone: its store, keystore and link to its site."""

    def __init__(self, data_dir: Path, profile: Profile, store: SqliteStore, keystore: Keystore) -> None:
        self.data_dir = data_dir
        self.profile = profile
        self.store = store
        self.keystore = keystore
        self.transport = SiteTransport(profile.site_url, site=profile.site, identity=lambda: keystore.identity,
                                       now_ms=wall_clock_ms)
        self.replicator = Replicator(store, self.transport, upstream=profile.site,
                                     on_purge=purge_receipts(lambda: keystore.identity, wall_clock_ms))
        #: the work rules' calendar (customers without a zone of their own: Asia/Shanghai)
        self.calendar = WorkCalendar()

    @property
    def node_id(self) -> str:
        return self.profile.node_id

    @property
    def user_id(self) -> str:
        return self.profile.user_id

    # ------------------------------------------------------------ enrolment

    @classmethod
    async def enroll(cls, data_dir: str | os.PathLike[str], site_url: str, username: str, password: str, *,
                     passphrase: str, label: str | None = None, scrypt_n: int = 2**15,
                     timeout_s: float = 30.0) -> Phone:
        """Enrol a new phone at ``site_url`` as the account manager ``username``:
        make its keystore (sealed with ``passphrase``) and node id, sign in, enrol
        its public keys, create its store. Raises `EnrolmentError` when the site
        refuses (nothing is left behind then), `LinkDownError` when it is unreachable."""
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        base = site_url.rstrip("/")
        async with httpx.AsyncClient(base_url=base, timeout=timeout_s) as client:
            health = await _call(client, "health", "GET", "/health")
            site = str(health["node_id"])
            node_id = f"{site}.{new_ulid(wall_clock_ms(), os.urandom(10)).lower()}"
            keystore = create_keystore(path / KEYSTORE_FILE, node_id, passphrase, n=scrypt_n)
            try:
                pair = await _call(client, "sign_in", "POST", "/auth/sign-in",
                                   json={"username": username, "password": password})
                body: dict[str, Any] = {"phone_keys": enrolment(keystore.identity)}
                if label is not None:
                    body["label"] = label
                credential = await _call(client, "enroll", "POST", "/devices/enroll", json=body,
                                         headers={"authorization": f"Bearer {pair['access_token']}"})
            except BaseException:
                (path / KEYSTORE_FILE).unlink(missing_ok=True)
                raise
        profile = Profile(node_id=node_id, site=site, site_url=base, user_id=str(credential["user_id"]),
                          device_id=str(credential["device_id"]))
        store = await SqliteStore.create(path / DB_FILE, node_id=node_id, role="mobile",
                                         clock=Clock(wall_clock_ms, profile.max_drift_ms))
        await store.ensure_link(site, "upstream")
        (path / PROFILE_FILE).write_bytes(msgspec.json.encode(profile))
        log.info("phone.enrolled", extra={"node": node_id, "site": site})
        return cls(path, profile, store, keystore)

    @classmethod
    async def open(cls, data_dir: str | os.PathLike[str], *, passphrase: str) -> Phone:
        """Open an enrolled phone (no network). Raises `KeystoreError` for a wrong passphrase."""
        path = Path(data_dir)
        profile = msgspec.json.decode((path / PROFILE_FILE).read_bytes(), type=Profile)
        keystore = open_keystore(path / KEYSTORE_FILE, passphrase)
        store = await SqliteStore.open(path / DB_FILE, node_id=profile.node_id,
                                       clock=Clock(wall_clock_ms, profile.max_drift_ms))
        return cls(path, profile, store, keystore)

    async def close(self) -> None:
        await self.transport.aclose()
        await self.store.close()

    # ------------------------------------------------------------ sync

    async def sync(self) -> SyncReport:
        """Push what was recorded here, pull until caught up, then fetch the scope
        keys the site holds for this phone now (destroying those rotated away).
        Raises `LinkDownError` when the site is unreachable (nothing is lost: the
        next sync sends it), or the site's refusal (a revoked user: HTTP 401)."""
        report = await self.replicator.sync_once()
        await self.refresh_keys()
        return report

    async def refresh_keys(self) -> tuple[int, int]:
        """Fetch and take this phone's scope keys (signed ``POST /devices/keys``)."""
        body = msgspec.json.encode({"phone": self.node_id})
        answer = msgspec.json.decode(await self.transport.post("/devices/keys", "keys", body, "application/json"),
                                     type=PhoneKeys)
        taken = take_scope_keys(self.keystore, answer)
        if sorted(answer.masked) != self.profile.masked:
            self.profile = msgspec.structs.replace(self.profile, masked=sorted(answer.masked))
            (self.data_dir / PROFILE_FILE).write_bytes(msgspec.json.encode(self.profile))
        return taken

    async def pending(self) -> int:
        """Changes recorded here that the site has not acknowledged yet."""
        link = await self.store.link(self.profile.site)
        assert link is not None
        page = await self.store.changes_after(link.push_since, link.push_cursor, limit=100_000,
                                              exclude_src=self.profile.site)
        return len(page.changes)

    # ------------------------------------------------------------ reading, offline

    async def inbox(self, now_ms: int, *, horizon_ms: int = 0) -> list[InboxTask]:
        """The user's tasks to work now: open (open, assigned, in progress), due by
        ``now_ms + horizon_ms`` (or undated), of customers held here, that the work
        rules offer (`server.work.offer.offer_check`, as the site's inbox: not a
        suppressed customer, attempts left); in the site inbox's order: by due
        time (undated last), then priority (9 first), then id."""
        out = []
        for task in await self._rows("tasks", assignee=self.user_id, status=list(OPEN_TASK_STATUSES), deleted=False):
            due = task["due_at_ms"]
            if due is not None and due > now_ms + horizon_ms:
                continue
            customer = await self.store.read_row("customers", task["customer_id"]) if task["customer_id"] else None
            if customer is None or customer["deleted"]:
                continue
            campaign = await self.store.read_row("campaigns", task["campaign_id"]) if task["campaign_id"] else None
            results = await self._rows("results", customer_id=customer["row_id"], deleted=False)
            refusal = offer_check(task, customer, campaign, results, now_ms=now_ms, calendar=self.calendar)
            if refusal is not None and refusal.code in NOT_OFFERED:
                continue
            out.append(InboxTask(task_id=task["row_id"], customer_id=task["customer_id"], kind=task["kind"],
                                 status=task["status"], due_at_ms=due, priority=task["priority"],
                                 attempts=task["attempts"], deadline_at_ms=task["deadline_at_ms"],
                                 campaign_id=task["campaign_id"]))
        out.sort(key=lambda t: (t.due_at_ms is None, t.due_at_ms or 0, -t.priority, t.task_id))
        return out

    async def customers(self) -> list[str]:
        """The ids of the customers held here."""
        return [row["row_id"] for row in await self._rows("customers", deleted=False)]

    async def card(self, customer_id: str) -> Card:
        """A customer held here, its personal fields opened with this phone's keys."""
        row = await self.store.read_row("customers", customer_id)
        if row is None or row["deleted"]:
            raise NotHeldError("customers", customer_id)
        opened, unavailable = open_customer(self.keystore, row)
        hidden = set(self.profile.masked)
        pii = {f: v for f, v in opened.items() if f not in hidden}
        masked = {f: mask(f, v) for f, v in opened.items() if f in hidden}
        plain = {name: value for name, value in row.items() if not isinstance(value, bytes)}
        return Card(customer_id, plain, pii, masked, unavailable)

    # ------------------------------------------------------------ writing, offline

    async def record_result(self, task_id: str, outcome: CallOutcome | None, duration_s: int, *, now_ms: int,
                            callback_at_ms: int | None = None, order_id: str | None = None,
                            satisfaction: int | None = None, refusal_reason: str | None = None) -> str:
        """Record the result of a call (``outcome``) or visit (None) on one of the
        user's tasks, here, and what the work rules say it causes
        (`server.work.outcomes.result_edits`: another attempt at another time slot,
        the task done or archived, suppression, a callback task...), in one local
        write. The result's ``agent`` is the user, its ``site`` the phone's site.
        Returns the result's id. Raises `NotHeldError` for a task (or its
        customer) not held here, and `InvalidEditError` (nothing written) for a
        value the schema refuses."""
        task = await self.store.read_row("tasks", task_id)
        if task is None or task["deleted"] or task["assignee"] != self.user_id:
            raise NotHeldError("tasks", task_id)
        customer = await self.store.read_row("customers", task["customer_id"]) if task["customer_id"] else None
        if customer is None or customer["deleted"]:
            raise NotHeldError("customers", str(task["customer_id"]))
        campaign = await self.store.read_row("campaigns", task["campaign_id"]) if task["campaign_id"] else None
        history = await self._rows("results", customer_id=customer["row_id"], deleted=False)
        result_id = new_ulid(now_ms, os.urandom(10))
        values: dict[str, Any] = {
            "task_id": task_id, "customer_id": customer["row_id"], "outcome": outcome, "duration_s": duration_s,
            "agent": self.user_id, "site": self.profile.site, "recorded_at_ms": now_ms,
            "callback_at_ms": callback_at_ms, "order_id": order_id, "satisfaction": satisfaction,
            "refusal_reason": refusal_reason,
        }
        present = {name: value for name, value in values.items() if value is not None}
        edits = [Edit("results", result_id, name, "set", value) for name, value in present.items()]
        edits += result_edits(result_id, present, task, customer, campaign, history, now_ms=now_ms,
                              calendar=self.calendar, site=self.profile.site)
        await self.store.write_local(edits)
        return result_id

    async def schedule_callback(self, customer_id: str, at_ms: int, *, now_ms: int, task_id: str | None = None) -> str:
        """A task calling a customer held here back at ``at_ms``, assigned to the
        user (`server.work.outcomes.callback_edits`; ``task_id``: the task it
        follows up, whose kind and campaign it takes). Returns the task's id."""
        customer = await self.store.read_row("customers", customer_id)
        if customer is None or customer["deleted"]:
            raise NotHeldError("customers", customer_id)
        kind, campaign = "care", None
        if task_id is not None:
            origin = await self.store.read_row("tasks", task_id)
            if origin is None or origin["assignee"] != self.user_id:
                raise NotHeldError("tasks", task_id)
            kind, campaign = origin["kind"], origin["campaign_id"]
        edits = callback_edits(customer, at_ms, by=self.user_id, site=self.profile.site, now_ms=now_ms, kind=kind,
                               campaign_id=campaign)
        await self.store.write_local(edits)
        return edits[0].row_id

    async def _rows(self, collection: str, **equals: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = ""
        while rows := await self.store.find_rows(collection, limit=5_000, after=after, **equals):
            out.extend(rows)
            after = rows[-1]["row_id"]
        return out


async def _call(client: httpx.AsyncClient, step: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One enrolment step; `EnrolmentError` with the site's status and problem code."""
    try:
        response = await client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise LinkDownError(str(client.base_url), type(exc).__name__) from None
    if response.status_code not in (200, 201):
        try:
            code = str(response.json().get("code", "unknown"))
        except (ValueError, AttributeError):
            code = "unreadable"
        raise EnrolmentError(step, response.status_code, code)
    answer = response.json()
    if not isinstance(answer, dict):
        raise EnrolmentError(step, response.status_code, "unreadable")
    return answer
