"""The work API under load: customer card and inbox next to a bare endpoint on the same server (issue 6).

    .venv/bin/python bench/bench_work_api.py [--customers N] [--quick] [--rate R] [--write-rate W] [--profile DIR]

One HQ node (`outpost init`, a real keystore, a real SQLite file) served by
`bench.work_server`: the product app under uvicorn, as ``outpost serve
--no-replicate``, plus one bare route (``GET /bench/bare``, a constant JSON
object) added in that bench module only. Seeded straight into the file before
it serves: ``--customers`` customers (20,000) with ten PII fields each sealed
through HQ's keyring, 5% in the unassigned queue, the rest spread over 200
agents; one to five tasks per customer (open, assigned, in progress, done,
archived) assigned to the customer's agent, 40% of them in one of three active
campaigns; a call history of up to twelve results per customer over the last
year, with a call today for one customer in ten. Ten of the agents are real users of
team ``north`` at HQ (``POST /users``); the load signs in as all ten (``POST
/auth/sign-in``, bearer access tokens), connection n as agent n % 10, each asking
for the cards of its own customers (about 95 of 20,000 each, with about 160 open
tasks among about 60,000), so that a cache keyed by user holds ten users, not one.

Writes meanwhile: during every load, bare included, from the start of its warm-up
to the end of its window, this process records ``--write-rate`` results a second
(default 5; 0: none), each by the next team agent in turn: its inbox (``GET
/work/inbox?limit=50``), then ``POST /tasks/{id}/results`` on one of its tasks,
at random, one it may call now if it has any (a result is taken outside the
calling window too, so the writes do not run dry at night). Each write is sent
on its slot, not after the last one's answer, so a node at saturation still
gets them (at most `WRITES_IN_FLIGHT` at once; a slot finding that many is
dropped). Each write changes a task of the agent's first page and adds to its
customer's results, so the inbox's rows keep changing under the load, and each
figure is printed with the writes made meanwhile. A write that finds its task
closed by another since its inbox read (409 ``impossible_transition``) is
counted as such: that is the API's right answer to two writes at once.

The targets are `TARGETS`, a list of (name, method, path template): a target
whose path is not in the node's OpenAPI document is skipped with a printed
note, never measured as something else. ``--targets`` may also name `PROBES`:
``card-op``, the same cards (of any team agent's customers) with the operator's
token (no user, no team), shows what the signed-in user costs a card.

The load comes from a second process (``bench_work_api.py drive``, fed its
orders on stdin, answering on stdout): 200 agents, each an httpx client with
its own keep-alive connection, one request in flight at a time. One client
process is enough: the server is one event loop on a two-core machine, and the
client used about a third of a core while the bare endpoint was saturated; its
CPU use is printed next to each figure, so a client-bound baseline would show.
``--clients K`` splits the agents over K processes. Also printed: the cores
busy with other work during each load (``others``: on a shared machine, other
people's tests), which the figures depend on. Two regimes, both at 200
connections:

* **saturation** (closed loop): each agent sends its next request as soon as
  the last is answered. Gives requests/s; each target's ratio to the bare
  endpoint's (target: at least 0.50). At zero think time its latencies are
  queue lengths (200 requests always waiting), printed but not judged.
* **offered load** (open loop): each agent sends on a schedule of its own,
  jittered think times averaging 200 / ``--rate`` s, so the node is offered
  ``--rate`` requests/s in all (default: a quarter of the bare endpoint's
  saturation throughput measured just before, so the bare endpoint is at a
  quarter load, and a target meeting the throughput target at most at half),
  the same for every target; think times are capped at 4 s, below uvicorn's
  keep-alive timeout. Latency counts from each request's scheduled time, so a
  request held back behind a slow one counts its wait (no coordinated
  omission). Gives p50/p99 (target: p99 under 50 ms).

Every answer must be 200 and right (the constant; the card of the customer
asked for; an inbox page, its items parsed but not built as objects; JSON),
every write 201 (or 409, its task closed meanwhile) and its inbox 200. Also
printed: the server process's CPU time per request (all its threads) and the
audit entries added per request, both over the load's answered requests only,
though the writes' CPU and audit entries are in them. The script exits non-zero
if a check fails, not if a target is missed (the machine is noisy).

``--profile DIR`` then runs the saturation of each of ``--profile-targets``
once more against a server under cProfile for the measured window only
(``BENCH_PROFILE``, event-loop thread only) and prints the top costs per
request, and the SQL statements and aiosqlite round trips per request (the
writes run there too).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import pstats
import random
import re
import resource
import secrets
import shutil
import signal
import ssl
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_audit_card import cpu_s, person_pii  # noqa: E402
from bench.harness import SEED_CHUNK  # noqa: E402
from bench.work_server import BARE_BODY, BARE_PATH, PROFILE_ENV  # noqa: E402
from crypto.keystore import open_keystore  # noqa: E402
from server.cli import ROOT  # noqa: E402
from server.keyring import Keyring  # noqa: E402
from server.node_process import NodeProcess  # noqa: E402
from sync.edits import Edit  # noqa: E402
from sync.hlc import Clock  # noqa: E402
from sync.ids import new_ulid  # noqa: E402
from sync.schema import OPEN_TASK_STATUSES  # noqa: E402
from sync.store.sqlite import SqliteStore, wall_clock_ms  # noqa: E402

SITE = "hq"
#: the least share of the bare endpoint's throughput a work target must reach
TARGET_RATIO = 0.50
#: the most a work target's p99 may be at the offered load
TARGET_P99_MS = 50.0
CONNECTIONS = 200
TEAM = "north"
TEAM_SIZE = 10
AGENTS = 200
UNASSIGNED_SHARE = 0.05
TASK_STATUSES = ("open", "assigned", "in_progress", "done", "archived")
TASK_WEIGHTS = (20, 25, 5, 40, 10)
TASK_KINDS = ("care", "retention", "survey", "sales", "revisit_installation", "revisit_repair", "complaint", "visit")
#: the campaigns some tasks belong to: (window start, end in minutes, max attempts, retry spacing in minutes)
CAMPAIGNS = ((8 * 60, 21 * 60, 3, 60), (9 * 60, 20 * 60, 5, 240), (8 * 60, 18 * 60, 3, 1440))
CAMPAIGN_SHARE = 0.4
#: each customer's call history: up to this many results over the last year; this share has one today
HISTORY_MAX = 12
TODAY_SHARE = 0.1
OUTCOMES = ("connected", "no_answer", "powered_off", "busy", "success", "callback_requested")
DAY_MS = 86_400_000
#: the longest think time of an agent (open loop): below uvicorn's keep-alive timeout (5 s), so
#: connections stay open between requests. Below 50 requests/s in all (200 / 4 s), more is offered than asked.
MAX_GAP_S = 4.0
#: regime (b)'s offered rate, unless ``--rate``: this share of the bare endpoint's saturation
#: throughput in the same run (a work target meeting TARGET_RATIO runs at most at twice this share)
RATE_OF_BARE = 0.25
#: the writes during every load: the inbox page each reads, then a result of one of these outcomes,
#: lasting this many seconds (at random, both ends included)
WRITE_INBOX = "/work/inbox?limit=50"
WRITE_OUTCOMES = ("no_answer", "busy", "powered_off", "connected")
WRITE_DURATION_S = (5, 300)
#: writes unanswered at once at most (at saturation each waits behind the load's queue)
WRITES_IN_FLIGHT = 20


class Target(msgspec.Struct, frozen=True):
    """One endpoint to load: ``{customer_id}`` in the path is one of the caller's customers.
    ``check`` is what a right answer is: the bare constant, the asked customer's card, an inbox page
    (`_Page`), or any JSON."""

    name: str
    method: str
    path: str
    check: Literal["bare", "card", "page", "json"] = "json"
    #: a work target, judged against the targets (the bare one is the baseline)
    judged: bool = True
    #: whose bearer token: the signed-in agents', or the operator's (no sign-in, no user, no team)
    caller: Literal["agent", "operator"] = "agent"


#: what is measured; adding an endpoint is one line.
TARGETS: tuple[Target, ...] = (
    Target("bare", "GET", BARE_PATH, check="bare", judged=False),
    Target("card", "GET", "/customers/{customer_id}/card", check="card"),
    Target("inbox", "GET", "/work/inbox?limit=50", check="page"),
)
#: measured only when named in ``--targets``: what the signed-in user costs a card; what an inbox
#: costs before its tasks (a page of one)
PROBES: tuple[Target, ...] = (
    Target("card-op", "GET", "/customers/{customer_id}/card", check="card", judged=False, caller="operator"),
    Target("inbox-1", "GET", "/work/inbox?limit=1", check="page", judged=False),
)


# ---------------------------------------------------------------- the load generator (its own process)


class Caller(msgspec.Struct):
    """Who a connection is: its bearer token, and the customers whose cards it asks for."""

    token: str
    customer_ids: list[str]


class DriveSpec(msgspec.Struct, kw_only=True):
    """Orders for one load-generator process."""

    base_url: str
    method: str
    path: str
    check: str
    #: connection n is ``callers[n % len(callers)]``
    callers: list[Caller]
    connections: int
    #: closed: back to back; open: each connection at ``rate_per_s / connections``
    mode: Literal["closed", "open"]
    rate_per_s: float = 0.0
    warmup_s: float
    duration_s: float
    #: wall-clock time (time.time()) when the warm-up starts, so several processes align their windows
    start_at: float
    seed: int


class DriveResult(msgspec.Struct, kw_only=True):
    """What one load-generator process saw."""

    #: latencies (ms) of the requests counted in the window: closed loop, those answered in it;
    #: open loop, those scheduled in it (each waited for)
    latencies_ms: list[float]
    window_s: float
    #: every request answered, warm-up included
    answered: int = 0
    #: requests scheduled inside the window (open loop)
    offered: int = 0
    #: open loop: requests sent more than 10 ms after their scheduled time (their connection was busy)
    late: int = 0
    statuses: dict[str, int] = msgspec.field(default_factory=dict)
    problems: list[str] = msgspec.field(default_factory=list)
    #: this process's CPU seconds over wall seconds, in the window
    client_cpu: float = 0.0


class _Page(msgspec.Struct):
    """An inbox page as the load generator checks it: every byte parsed as JSON, its
    items a list and its delta a string, but each item kept as raw JSON. Building
    50 items' Python objects cost the load generator 0.11 ms an answer, a tenth of its
    cost; at saturation it shares the machine with the node, so that would be measured
    as the node's."""

    items: list[msgspec.Raw]
    delta: str


_json = msgspec.json.Decoder()
_page = msgspec.json.Decoder(_Page)


def _problem(check: str, customer_id: str | None, response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"status {response.status_code}"
    if check == "page":
        try:
            _page.decode(response.content)
        except msgspec.DecodeError:
            return "not an inbox page"
        return None
    try:
        body = _json.decode(response.content)
    except msgspec.DecodeError:
        return "not JSON"
    if check == "bare" and body != BARE_BODY:
        return "not the bare constant"
    card = body.get("customer", body) if isinstance(body, dict) else None  # the card view may nest the customer
    if check == "card" and (not isinstance(card, dict) or card.get("row_id") != customer_id):
        return f"not the card of {customer_id}"
    return None


async def drive(spec: DriveSpec) -> DriveResult:
    """``spec.connections`` agents, each its own httpx client and keep-alive connection, and its caller."""
    now = time.perf_counter
    result = DriveResult(latencies_ms=[], window_s=spec.duration_s)
    statuses: Counter[str] = Counter()
    callers = [spec.callers[n % len(spec.callers)] for n in range(spec.connections)]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    tls = ssl.create_default_context()  # one for all (plain HTTP here): each client would load the CA bundle
    clients = [httpx.AsyncClient(base_url=spec.base_url, headers={"authorization": f"Bearer {c.token}"},
                                 limits=limits, timeout=60, verify=tls) for c in callers]
    templated = "{customer_id}" in spec.path
    mean_gap_s = spec.connections / spec.rate_per_s if spec.mode == "open" else 0.0
    # think times uniform over mean +- 50%, the mean kept under the cap if it can be
    high_gap_s = min(1.5 * mean_gap_s, MAX_GAP_S)
    low_gap_s = min(max(0.0, 2 * mean_gap_s - high_gap_s), high_gap_s)
    await asyncio.sleep(max(0.0, spec.start_at - time.time()))
    start = now()
    window_start, window_end = start + spec.warmup_s, start + spec.warmup_s + spec.duration_s
    cpu_marks: dict[str, float] = {}

    async def mark_cpu() -> None:
        await asyncio.sleep(max(0.0, window_start - now()))
        cpu_marks["start"] = time.process_time()
        await asyncio.sleep(max(0.0, window_end - now()))
        cpu_marks["end"] = time.process_time()

    async def agent(n: int, client: httpx.AsyncClient, caller: Caller) -> None:
        rnd = random.Random(spec.seed * 100_000 + n)
        due = start + rnd.uniform(0, mean_gap_s)  # open loop: the next scheduled send
        while True:
            if spec.mode == "open":
                if due >= window_end:
                    return
                wait = due - now()
                if wait > 0:
                    await asyncio.sleep(wait)
                scheduled = due
                due += rnd.uniform(low_gap_s, high_gap_s)
            else:
                scheduled = now()
                if scheduled >= window_end:
                    return
            customer_id = rnd.choice(caller.customer_ids) if templated else None
            path = spec.path.format(customer_id=customer_id) if templated else spec.path
            sent = now()
            response = await client.request(spec.method, path)
            done = now()
            result.answered += 1
            statuses[str(response.status_code)] += 1
            if spec.mode == "open":
                if window_start <= scheduled < window_end:
                    result.offered += 1
                    result.late += sent - scheduled > 0.010
                    result.latencies_ms.append((done - scheduled) * 1000)
            elif window_start <= done <= window_end:  # throughput: answers in the window, whenever sent
                result.latencies_ms.append((done - sent) * 1000)
            problem = _problem(spec.check, customer_id, response)
            if problem is not None and len(result.problems) < 10:
                result.problems.append(f"{spec.method} {path}: {problem}")

    try:
        await asyncio.gather(mark_cpu(), *(agent(n, c, who) for n, (c, who) in enumerate(zip(clients, callers))))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    result.statuses = dict(statuses)
    result.client_cpu = (cpu_marks["end"] - cpu_marks["start"]) / spec.duration_s
    return result


def drive_main() -> None:
    """``bench_work_api.py drive``: a `DriveSpec` on stdin, a `DriveResult` on stdout."""
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=DriveSpec)
    sys.stdout.buffer.write(msgspec.json.encode(asyncio.run(drive(spec))))


# ---------------------------------------------------------------- the node


class WorkServer(NodeProcess):
    """HQ served by `bench.work_server` (the app plus ``GET /bench/bare``)."""

    def __init__(self, workdir: Path, *, token: str, passphrase: str, profile_path: Path | None = None) -> None:
        super().__init__(SITE, workdir, token=token, passphrase=passphrase)
        self.profile_path = profile_path

    async def start(self) -> None:
        env = self.env
        if self.profile_path is not None:
            env[PROFILE_ENV] = str(self.profile_path)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.work_server", self._site_arg, *self._args()],
                                     stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"work server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if (await self.client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:  # not listening yet
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"work server did not answer /health within 30 s; see {self.log_path}")

    async def sign_in(self, username: str, password: str) -> str:
        """A fresh access token (10 minutes) of one user."""
        response = await self.client.post("/auth/sign-in", json={"username": username, "password": password},
                                          headers={"authorization": ""})
        if response.status_code != 200:
            raise RuntimeError(f"sign-in of {username}: {response.status_code} {response.text}")
        return str(response.json()["access_token"])

    async def api_paths(self) -> set[str]:
        """The node's API paths, each parameter written ``{}``."""
        spec = await self.call("GET", "/docs/openapi.json")
        return {_shape(path) for path in spec["paths"]}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0]).rstrip("/") or "/"


# ---------------------------------------------------------------- seeding


class Seeded(msgspec.Struct, kw_only=True):
    customers: int
    tasks: int
    results: int = 0
    #: each team agent's customers, and its open tasks (``bench.agent00`` first)
    own_customers: list[list[str]]
    own_open_tasks: list[int]


async def create_team(node: WorkServer, password: str) -> list[str]:
    """Team ``north``'s agents at HQ, through the API; their user ids."""
    ids = []
    for n in range(TEAM_SIZE):
        user = await node.call("POST", "/users", json={
            "username": f"bench.agent{n:02d}", "role": "agent", "site": SITE, "team": TEAM, "password": password})
        ids.append(user["row_id"])
    return ids


async def seed(node: NodeProcess, customers: int, team: list[str]) -> Seeded:
    """Customers (plain fields and sealed PII), their tasks (some in one of the
    `CAMPAIGNS`) and their call history (results), straight into HQ's file,
    SEED_CHUNK customers to a transaction. The first agents are ``team``, the ones signed in."""
    rnd = random.Random(6)
    now_ms = wall_clock_ms()
    agents = team + [f"agent-{n:03d}" for n in range(len(team), AGENTS)]
    keystore = open_keystore(node.data_dir / f"{SITE}.keystore", node.passphrase)
    store = await SqliteStore.open(node.data_dir / f"{SITE}.db", node_id=SITE, clock=Clock(wall_clock_ms, 60_000))
    keyring = Keyring(store, keystore, hq=SITE)
    seeded = Seeded(customers=customers, tasks=0, own_customers=[[] for _ in team], own_open_tasks=[0] * len(team))
    member = {user_id: n for n, user_id in enumerate(team)}
    try:
        batch: list[Edit] = []
        campaigns = [new_ulid(now_ms, rnd.randbytes(10)) for _ in CAMPAIGNS]
        for campaign_id, (start, end, attempts, spacing) in zip(campaigns, CAMPAIGNS):
            batch += [Edit("campaigns", campaign_id, f, value=v) for f, v in {
                "status": "active", "window_start_min": start, "window_end_min": end, "max_attempts": attempts,
                "retry_spacing_min": spacing}.items()]
        for i in range(customers):
            row_id = new_ulid(now_ms - customers + i, rnd.randbytes(10))
            agent = None if rnd.random() < UNASSIGNED_SHARE else agents[rnd.randrange(AGENTS)]
            plain: dict[str, Any] = {
                "home_branch": ("branch-a", "branch-b")[i % 2], "star_level": rnd.randrange(8),
                "segment": rnd.choice(("gold", "silver", "bronze")), "arpu_fen": rnd.randrange(2_000, 50_000),
                "status": "active", "assigned_agent": agent, "account_manager": f"am-{rnd.randrange(50):02d}",
                "sales_rep": f"rep-{rnd.randrange(120):03d}",
            }
            batch += [Edit("customers", row_id, f, value=v) for f, v in plain.items()]
            batch += await keyring.seal_edits(row_id, plain, person_pii(i))
            own = member.get(agent or "")
            if own is not None:
                seeded.own_customers[own].append(row_id)
            for _ in range(rnd.randint(1, 5)):
                task_id = new_ulid(now_ms, rnd.randbytes(10))
                status = rnd.choices(TASK_STATUSES, TASK_WEIGHTS)[0]
                if agent is None and status == "assigned":
                    status = "open"
                due_ms = now_ms + rnd.randrange(-7 * DAY_MS, 21 * DAY_MS)
                task = {"customer_id": row_id, "kind": rnd.choice(TASK_KINDS), "assignee": agent, "site": SITE,
                        "status": status, "due_at_ms": due_ms, "deadline_at_ms": due_ms + 2 * DAY_MS,
                        "priority": rnd.randrange(10)}
                if rnd.random() < CAMPAIGN_SHARE:
                    task["campaign_id"] = rnd.choice(campaigns)
                batch += [Edit("tasks", task_id, f, value=v) for f, v in task.items()]
                seeded.tasks += 1
                if own is not None and status in OPEN_TASK_STATUSES:
                    seeded.own_open_tasks[own] += 1
            history = [now_ms - rnd.randrange(DAY_MS, 365 * DAY_MS) for _ in range(rnd.randint(0, HISTORY_MAX))]
            if rnd.random() < TODAY_SHARE:
                history.append(now_ms - rnd.randrange(4 * 3_600_000))
            for at_ms in history:  # the customer's calls so far, on its last task
                result = {"task_id": task_id, "customer_id": row_id, "outcome": rnd.choice(OUTCOMES),
                          "duration_s": rnd.randrange(5, 600), "agent": agent or agents[0], "site": SITE,
                          "recorded_at_ms": at_ms}
                result_id = new_ulid(at_ms, rnd.randbytes(10))
                batch += [Edit("results", result_id, f, value=v) for f, v in result.items()]
                seeded.results += 1
            if (i + 1) % SEED_CHUNK == 0:
                await store.write_local(batch)
                batch = []
        if batch:
            await store.write_local(batch)
    finally:
        await store.close()
    return seeded


def audit_entries(db: Path) -> int:
    """This node's entries in its audit chain."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (n,) = conn.execute("SELECT count(*) FROM audit_entries WHERE node = ?", (SITE,)).fetchone()
        return int(n)
    finally:
        conn.close()


# ---------------------------------------------------------------- the writes during a load


class Writes(msgspec.Struct, kw_only=True):
    """What the writer did during one load."""

    #: seconds it ran: the load's warm-up and window
    span_s: float
    #: results recorded (201)
    made: int = 0
    #: writes skipped: the agent's inbox page was empty
    skipped: int = 0
    #: slots dropped: `WRITES_IN_FLIGHT` writes were still unanswered
    dropped: int = 0
    #: writes refused (409) because another write closed their task after their inbox read
    closed: int = 0
    problems: list[str] = msgspec.field(default_factory=list)


async def write_during(node: WorkServer, agents: list[str], rate: float, start_at: float, span_s: float,
                       seed: int) -> Writes:
    """``rate`` results a second for ``span_s`` from ``start_at`` (time.time()), each by the next of ``agents``
    (their tokens) on a task of its inbox page, at random: one it may call now if it has any, else any (a
    result is taken outside the calling window too); skipped if the page is empty. Each write is sent on its
    slot, not after the last one's answer, so a node at saturation still gets them; a slot finding
    `WRITES_IN_FLIGHT` unanswered is dropped, not made up."""
    writes = Writes(span_s=span_s)
    if rate <= 0:
        return writes
    rnd = random.Random(seed)

    async def write(client: httpx.AsyncClient, token: str) -> None:
        headers = {"authorization": f"Bearer {token}"}
        inbox = await client.get(WRITE_INBOX, headers=headers)
        if inbox.status_code != 200:
            writes.problems.append(f"writer: GET {WRITE_INBOX}: {_failure(inbox)}")
            return
        items = _json.decode(inbox.content)["items"]
        tasks = [item["task"]["row_id"] for item in items if item["offer"]["available"]] or [
            item["task"]["row_id"] for item in items]
        if not tasks:
            writes.skipped += 1
            return
        path = f"/tasks/{rnd.choice(tasks)}/results"
        body = {"outcome": rnd.choice(WRITE_OUTCOMES), "duration_s": rnd.randint(*WRITE_DURATION_S)}
        response = await client.post(path, json=body, headers=headers)
        if response.status_code == 201:
            writes.made += 1
        elif response.status_code == 409 and _problem_body(response).get("code") == "impossible_transition":
            writes.closed += 1  # another write closed the task after this one read the inbox: the right answer
        else:
            writes.problems.append(f"writer: POST {path}: {_failure(response)}")

    turns = itertools.cycle(agents)
    in_flight: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=WRITES_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=node.url, timeout=60, limits=limits) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        start = time.perf_counter()
        for slot in range(math.ceil(span_s * rate)):
            await asyncio.sleep(max(0.0, start + slot / rate - time.perf_counter()))
            if len(in_flight) >= WRITES_IN_FLIGHT:
                writes.dropped += 1
                continue
            task = asyncio.create_task(write(client, next(turns)))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    return writes


def _problem_body(response: httpx.Response) -> dict[str, Any]:
    """A refusal's problem document, or {} when its body is not a JSON object."""
    try:
        body = _json.decode(response.content)
    except msgspec.DecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _failure(response: httpx.Response) -> str:
    """A refusal's status, and its problem's title and detail (value-free by the API's rule): no body."""
    body = _problem_body(response)
    said = [str(body[k]) for k in ("title", "detail") if k in body]
    return f"status {response.status_code}" + (f" ({': '.join(said)})" if said else "")


# ---------------------------------------------------------------- one load


class Load(msgspec.Struct, kw_only=True):
    """One target under one regime: the load generators' results merged, the server's side, and the writes."""

    target: str
    mode: str
    results: list[DriveResult]
    writes: Writes
    server_cpu_s: float
    audit_added: int
    #: CPU seconds the load generators used, start to end
    clients_cpu_s: float = 0.0
    #: cores busy on the machine with work of neither the server nor the load generators
    #: (other people's tests on a shared machine; this process)
    others_cores: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return sorted(x for r in self.results for x in r.latencies_ms)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.results[0].window_s

    @property
    def answered(self) -> int:
        return sum(r.answered for r in self.results)

    @property
    def client_cpu(self) -> float:
        return sum(r.client_cpu for r in self.results)

    @property
    def late_share(self) -> float:
        return sum(r.late for r in self.results) / max(1, sum(r.offered for r in self.results))

    def percentile_ms(self, q: float) -> float:
        ordered = self.latencies
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def problems(self) -> list[str]:
        out = [p for r in self.results for p in r.problems]
        return out[:10] + self.writes.problems[:10]


async def run_load(node: WorkServer, target: Target, callers: list[Caller], agents: list[str],
                   args: argparse.Namespace, *, mode: Literal["closed", "open"], seed: int) -> Load:
    """``args.clients`` load-generator processes at once, ``CONNECTIONS`` agents among them taking ``callers`` in
    turn, and the writes of ``agents`` (their tokens) meanwhile."""
    assert node.proc is not None
    clients = args.clients
    start_at = time.time() + 3.0  # time to start Python and make the clients
    sizes = [CONNECTIONS // clients + (k < CONNECTIONS % clients) for k in range(clients)]
    firsts = [sum(sizes[:k]) % len(callers) for k in range(clients)]  # each process's callers go on from the last's
    specs = [DriveSpec(base_url=node.url, method=target.method, path=target.path, check=target.check,
                       callers=callers[first:] + callers[:first], connections=size, mode=mode,
                       rate_per_s=(args.rate or 0.0) / clients, warmup_s=args.warmup_s, duration_s=args.duration_s,
                       start_at=start_at, seed=seed * 10 + k)
             for k, (size, first) in enumerate(zip(sizes, firsts))]
    db = node.data_dir / f"{SITE}.db"
    audit_before, cpu_before = audit_entries(db), cpu_s(node.proc.pid)
    children_before, busy_before, wall_before = children_cpu_s(), machine_busy_s(), time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "drive"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, cwd=ROOT) for _ in specs]
    window = (start_at + args.warmup_s, start_at + args.warmup_s + args.duration_s)
    writing = asyncio.create_task(write_during(node, agents, args.write_rate, start_at,
                                               args.warmup_s + args.duration_s, seed))
    profiling = [asyncio.create_task(_profile_window(node, *window))] if node.profile_path else []
    talks = [asyncio.to_thread(p.communicate, msgspec.json.encode(spec)) for p, spec in zip(procs, specs)]
    outs = (await asyncio.gather(*talks, *profiling))[:len(procs)]
    writes = await writing
    server_cpu = cpu_s(node.proc.pid) - cpu_before
    clients_cpu = children_cpu_s() - children_before
    others = (machine_busy_s() - busy_before - server_cpu - clients_cpu) / (time.perf_counter() - wall_before)
    for p in procs:
        if p.returncode != 0:
            raise RuntimeError(f"load generator exited with {p.returncode}")
    results = [msgspec.json.decode(out, type=DriveResult) for out, _ in outs]
    return Load(target=target.name, mode=mode, results=results, writes=writes, server_cpu_s=server_cpu,
                audit_added=audit_entries(db) - audit_before, clients_cpu_s=clients_cpu, others_cores=max(0.0, others))


async def _profile_window(node: WorkServer, start: float, end: float) -> None:
    """cProfile on in the server for the measured window (`bench.work_server`), its stats written after."""
    assert node.proc is not None and node.profile_path is not None
    await asyncio.sleep(max(0.0, start - time.time()))
    node.proc.send_signal(signal.SIGUSR1)
    await asyncio.sleep(max(0.0, end - time.time()))
    node.proc.send_signal(signal.SIGUSR2)
    while not node.profile_path.exists():
        await asyncio.sleep(0.1)


def children_cpu_s() -> float:
    """CPU seconds of this process's children that have been waited for (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has been busy since boot (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def describe(load: Load) -> str:
    statuses = Counter[str]()
    for r in load.results:
        statuses.update(r.statuses)
    line = (f"{load.rps:>8,.0f} req/s  p50 {load.percentile_ms(0.5):>7.1f} ms  "
            f"p99 {load.percentile_ms(0.99):>7.1f} ms  "
            f"server CPU {load.server_cpu_s / max(1, load.answered) * 1000:.2f} ms/req  "
            f"client CPU {load.client_cpu:.0%}  audit {load.audit_added / max(1, load.answered):.2f}/req  "
            f"answered {load.answered:,}  others {load.others_cores:.2f} cores")
    if load.mode == "open":
        line += f"  late {load.late_share:.1%}"
    line += f"  writes {load.writes.made:,} ({load.writes.made / load.writes.span_s:.1f}/s)"
    if load.writes.skipped:
        line += f", {load.writes.skipped:,} skipped"
    if load.writes.dropped:
        line += f", {load.writes.dropped:,} dropped"
    if load.writes.closed:
        line += f", {load.writes.closed:,} found their task closed"
    if set(statuses) != {"200"}:
        line += f"  statuses {dict(statuses)}"
    return line


# ---------------------------------------------------------------- profile


def print_profile(path: Path, requests: int, top: int = 25) -> None:
    """The event loop's top costs per request: own time overall, and cumulative time in our packages."""
    stats = pstats.Stats(str(path))
    rows = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}

    def name(key: tuple[str, int, str]) -> str:
        file, line, func = key
        for marker in ("/site-packages/", str(ROOT) + "/", "/lib/python3"):
            if marker in file:
                file = file.split(marker, 1)[1]
                break
        return f"{file}:{line}({func})"

    total = sum(tt for _, _, tt, _, _ in rows.values())

    def calls(file_end: str, func: str) -> float:
        return sum(v[1] for k, v in rows.items() if k[0].endswith(file_end) and k[2] == func) / requests

    print(f"    {requests:,} requests answered in the profiled window; event-loop thread "
          f"{total / requests * 1e6:,.0f} us/request under cProfile (async functions: calls count resumptions)")
    print(f"    SQL statements per request (aiosqlite cursors): {calls('aiosqlite/cursor.py', '__init__'):.2f}; "
          f"round trips to aiosqlite's thread: {calls('aiosqlite/core.py', 'set_result'):.2f}")
    print(f"    {'own us/req':>10} {'cum us/req':>10} {'calls/req':>9}  function (own time, top {top})")
    for key, (_, nc, tt, ct, _) in sorted(rows.items(), key=lambda kv: -kv[1][2])[:top]:
        print(f"    {tt / requests * 1e6:>10.1f} {ct / requests * 1e6:>10.1f} {nc / requests:>9.2f}  {name(key)}")
    ours = [(k, v) for k, v in rows.items() if any(f"{ROOT}/{pkg}/" in k[0] for pkg in ("server", "sync", "crypto"))]
    print(f"    {'own us/req':>10} {'cum us/req':>10} {'calls/req':>9}  function (ours, by cumulative time, top {top})")
    for key, (_, nc, tt, ct, _) in sorted(ours, key=lambda kv: -kv[1][3])[:top]:
        print(f"    {tt / requests * 1e6:>10.1f} {ct / requests * 1e6:>10.1f} {nc / requests:>9.2f}  {name(key)}")


# ---------------------------------------------------------------- the run


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="outpost-bench-work-"))
    try:
        yield path
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"  (kept {path})")


async def sign_in_team(node: WorkServer, password: str) -> list[str]:
    """A fresh access token of each team agent, ``bench.agent00`` first (for the callers and the writes),
    each used once before the load: the node checks a new token once (a few thread trips), and the load
    should find the agents at work, not 200 connections waiting on ten first checks (up to 2.7 s while
    the load filled the event loop, which the window caught)."""
    tokens = [await node.sign_in(f"bench.agent{n:02d}", password) for n in range(TEAM_SIZE)]
    for token in tokens:
        response = await node.client.get("/work/inbox?limit=1", headers={"authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise RuntimeError(f"an agent's first inbox: {response.status_code}")
    return tokens


def callers_of(target: Target, operator: str, agents: list[str], seeded: Seeded) -> list[Caller]:
    """A target's callers: each team agent (its token) with its own customers, or the operator with all of theirs."""
    if target.caller == "operator":
        return [Caller(operator, [c for own in seeded.own_customers for c in own])]
    return [Caller(token, own) for token, own in zip(agents, seeded.own_customers)]


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


async def run(args: argparse.Namespace) -> int:
    token, passphrase, password = secrets.token_urlsafe(24), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    problems: list[str] = []
    with workdir() as work:
        setup_start = time.perf_counter()
        node = WorkServer(work, token=token, passphrase=passphrase)
        node.init()
        await node.start()
        try:
            team = await create_team(node, password)
        finally:
            await node.stop()
        seeded = await seed(node, args.customers, team)
        node = WorkServer(work, token=token, passphrase=passphrase)
        await node.start()
        try:
            await node.sync_now()  # HQ's key pass over the seeded rows, so none runs while measured
            paths = await node.api_paths()
            targets = [t for t in (*TARGETS, *PROBES) if t.name in args.targets]
            skipped = [t for t in targets if t.path != BARE_PATH and _shape(t.path) not in paths]
            targets = [t for t in targets if t not in skipped]
            own = [len(c) for c in seeded.own_customers]
            print(f"work API under load: HQ holding {seeded.customers:,} customers x 10 sealed PII fields and "
                  f"{seeded.tasks:,} tasks and {seeded.results:,} results; signed in as the {TEAM_SIZE} agents "
                  f"bench.agent00-{TEAM_SIZE - 1:02d} of team {TEAM} (of {AGENTS} agents), connection n as agent "
                  f"n % {TEAM_SIZE}, with {min(own)}-{max(own)} customers and {min(seeded.own_open_tasks)}-"
                  f"{max(seeded.own_open_tasks)} open tasks each; {args.write_rate:g} results/s written meanwhile "
                  f"by them in turn; {CONNECTIONS} connections from {args.clients} load-generator process(es); "
                  f"{args.rounds} round(s) of {args.warmup_s:g} s warm-up + {args.duration_s:g} s measured "
                  f"(setup {time.perf_counter() - setup_start:.0f} s)", flush=True)
            for t in skipped:
                print(f"  SKIPPED {t.name}: {t.method} {t.path} is not in this node's API (no figure)", flush=True)
            results: dict[tuple[str, str], list[Load]] = {}
            for mode in ("closed", "open"):
                if mode == "open" and args.rate is None:
                    args.rate = RATE_OF_BARE * statistics.median(x.rps for x in results[("bare", "closed")])
                for round_no in range(args.rounds):
                    order = targets if round_no % 2 == 0 else targets[::-1]
                    for target in order:
                        agents = await sign_in_team(node, password)
                        load = await run_load(node, target, callers_of(target, token, agents, seeded), agents, args,
                                              mode=mode, seed=round_no)
                        results.setdefault((target.name, mode), []).append(load)
                        problems += [f"{target.name} {mode} round {round_no + 1}: {p}" for p in load.problems]
                        print(f"  round {round_no + 1} {'saturation' if mode == 'closed' else 'offered':<10} "
                              f"{target.name:<6} {describe(load)}", flush=True)
            report(targets, skipped, results, args)
        finally:
            await node.stop()
        if args.profile:
            for target in (t for t in targets if t.name in args.profile_targets):
                prof = Path(args.profile).resolve() / f"work-{target.name}.prof"
                prof.unlink(missing_ok=True)
                node = WorkServer(work, token=token, passphrase=passphrase, profile_path=prof)
                await node.start()
                try:
                    await node.sync_now()  # the key steward's first pass over every customer, before the window
                    agents = await sign_in_team(node, password)
                    load = await run_load(node, target, callers_of(target, token, agents, seeded), agents, args,
                                          mode="closed", seed=99)
                finally:
                    await node.stop()
                print(f"\n  profile of {target.name} ({target.method} {target.path}) at saturation, "
                      f"under cProfile: {describe(load)}")
                print_profile(prof, len(load.latencies))
    for problem in problems:
        print(f"  FAILED: {problem}")
    return 1 if problems else 0


def report(targets: list[Target], skipped: list[Target], results: dict[tuple[str, str], list[Load]],
           args: argparse.Namespace) -> None:
    def med(loads: list[Load], f: Any) -> float:
        return statistics.median(f(x) for x in loads)

    print(f"\n  (a) saturation: {CONNECTIONS} connections back to back, median of {args.rounds} round(s); "
          f"latencies here are queue lengths, not judged")
    print(f"  {'target':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'srv ms/req':>10} {'client CPU':>10} "
          f"{'others':>6} {'vs bare':>8}   target")
    bare = med(results[("bare", "closed")], lambda x: x.rps) if ("bare", "closed") in results else None
    for t in targets:
        loads = results[(t.name, "closed")]
        rps = med(loads, lambda x: x.rps)
        ratio = f"{rps / bare:>8.2f}" if bare else f"{'-':>8}"
        judged = (f">= {TARGET_RATIO:.2f} of bare: {verdict(rps / bare >= TARGET_RATIO)}" if t.judged and bare
                  else _unjudged(t))
        print(f"  {t.name:<7} {rps:>8,.0f} {med(loads, lambda x: x.percentile_ms(0.5)):>8.1f} "
              f"{med(loads, lambda x: x.percentile_ms(0.99)):>8.1f} "
              f"{med(loads, lambda x: x.server_cpu_s / max(1, x.answered) * 1000):>10.2f} "
              f"{med(loads, lambda x: x.client_cpu):>10.0%} {med(loads, lambda x: x.others_cores):>6.2f} "
              f"{ratio}   {judged}")
    print(f"\n  (b) offered load: {CONNECTIONS} connections, {args.rate:,.0f} req/s in all "
          f"({args.rate / CONNECTIONS:g} req/s per connection, jittered think time), the same for every target; "
          f"latency from each request's scheduled time; req/s is what was offered; median of {args.rounds} round(s)")
    print(f"  {'target':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'srv ms/req':>10} {'late':>6} {'others':>6}   "
          f"target")
    for t in targets:
        loads = results[(t.name, "open")]
        p99 = med(loads, lambda x: x.percentile_ms(0.99))
        judged = f"p99 < {TARGET_P99_MS:g} ms: {verdict(p99 < TARGET_P99_MS)}" if t.judged else _unjudged(t)
        print(f"  {t.name:<7} {med(loads, lambda x: x.rps):>8,.0f} {med(loads, lambda x: x.percentile_ms(0.5)):>8.1f} "
              f"{p99:>8.1f} {med(loads, lambda x: x.server_cpu_s / max(1, x.answered) * 1000):>10.2f} "
              f"{med(loads, lambda x: x.late_share):>6.1%} {med(loads, lambda x: x.others_cores):>6.2f}   {judged}")
    for t in skipped:
        print(f"  {t.name:<7} skipped: {t.method} {t.path} is not in this node's API yet (no figure)")


def _unjudged(target: Target) -> str:
    return "(baseline)" if target.path == BARE_PATH else "(probe)"


def main() -> None:
    if sys.argv[1:2] == ["drive"]:
        drive_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each target per regime, alternating order")
    parser.add_argument("--duration-s", type=float, default=8.0, help="measured seconds per load")
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--rate", type=float, help="offered requests/s in all, regime (b) "
                        f"(default: {RATE_OF_BARE:g} of the bare endpoint's saturation throughput in this run)")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes sharing the connections")
    parser.add_argument("--write-rate", type=float, default=5.0,
                        help="results recorded per second during every load, by the team agents in turn (0: none)")
    parser.add_argument("--targets", default=",".join(t.name for t in TARGETS),
                        help=f"names, comma-separated, of {', '.join(t.name for t in (*TARGETS, *PROBES))}")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 customers, 1 round, 3 s windows")
    parser.add_argument("--profile", metavar="DIR", help="then profile each target's saturation, stats to DIR")
    parser.add_argument("--profile-targets", default="card,inbox", help="names, comma-separated")
    args = parser.parse_args()
    args.targets = args.targets.split(",")
    if args.rate is None and "bare" not in args.targets:
        parser.error("--rate is needed without the bare target")
    args.profile_targets = args.profile_targets.split(",")
    if args.quick:
        args.customers, args.rounds, args.duration_s, args.warmup_s = 2_000, 1, 3.0, 1.0
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
