"""HQ and branch-a as real `outpost serve` processes, and phones as the reference
client (`mobile.Phone`) in the test process, each with its own SQLite file.

The phones reach branch-a through a `LinkProxy` a test cuts to take them
offline. Branch-a syncs with HQ only when asked (``--no-replicate``), so a test
decides when a phone's work travels on to HQ.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mobile import Phone
from server.link_proxy import LinkProxy
from server.node_process import NodeProcess
from sync.edits import Edit
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.conftest import LoopThread, enrolled_nodes

PASSWORD = "correct horse battery staple 7"
PASSPHRASE = "phone passphrase for tests"
HOUR_MS = 3_600_000

#: the demo people of each customer: every personal field the phone may hold
PEOPLE: dict[str, dict[str, str]] = {
    "max_1": {"name": "欧阳明远", "phone": "13912345671", "email": "mingyuan.ouyang@example.cn",
              "address": "浙江省杭州市西湖区文三路77号", "employer": "杭州远航科技", "id_number": "330106198805121234"},
    "max_2": {"name": "司马静怡", "phone": "13912345672", "email": "jingyi.sima@example.cn"},
    "mia_1": {"name": "诸葛云舒", "phone": "13912345673", "email": "yunshu.zhuge@example.cn",
              "address": "浙江省宁波市鄞州区天童路55号"},
    "nobody": {"name": "上官子涵", "phone": "13912345674"},
}
#: each customer's account manager (None: the branch's, no one's phone)
MANAGER = {"max_1": "max", "max_2": "max", "mia_1": "mia", "nobody": None}


class Site:
    """The running deployment, what was seeded, and the phones made so far."""

    def __init__(self, workdir: Path, hq: NodeProcess, branch: NodeProcess, proxy: LinkProxy) -> None:
        self.workdir = workdir
        self.hq = hq
        self.branch = branch
        self.proxy = proxy
        self.users: dict[str, str] = {}
        self.customers: dict[str, str] = {}
        self.tasks: dict[str, str] = {}
        self.phones: list[Phone] = []

    async def enroll(self, username: str, name: str | None = None) -> Phone:
        """A new phone of ``username``, enrolled at branch-a through the proxy."""
        phone = await Phone.enroll(self.workdir / f"phone-{name or username}", self.proxy.url, username, PASSWORD,
                                   passphrase=PASSPHRASE, label=f"phone of {username}", scrypt_n=2**10)
        self.phones.append(phone)
        return phone

    async def branch_sync(self) -> None:
        await self.branch.sync_now()

    async def hq_store(self) -> SqliteStore:
        return await SqliteStore.open(self.hq.data_dir / "hq.db", node_id="hq", clock=Clock(wall_clock_ms, 60_000))

    async def branch_store(self) -> SqliteStore:
        return await SqliteStore.open(self.branch.data_dir / "branch-a.db", node_id="branch-a",
                                      clock=Clock(wall_clock_ms, 60_000))


async def seed(site: Site) -> None:
    hq = site.hq
    for username, role in (("max", "account_manager"), ("mia", "account_manager"), ("rex", "account_manager"),
                           ("ana", "agent")):
        user = await hq.call("POST", "/users", json={"username": username, "role": role, "site": "branch-a",
                                                      "password": PASSWORD})
        site.users[username] = user["row_id"]
    now = wall_clock_ms()
    for key, person in PEOPLE.items():
        body: dict[str, Any] = {"home_branch": "branch-a", "star_level": 5, **person}
        if MANAGER[key] is not None:
            body["account_manager"] = site.users[MANAGER[key]]
        if "id_number" in person:
            body["id_number_consent"] = {"channel": "paper", "at_ms": now - HOUR_MS}
        if key == "max_1":
            body["partners_add"] = ["partner-x"]
        if key == "max_2":
            body["suppression_add"] = ["do_not_call"]
        site.customers[key] = (await hq.call("POST", "/customers", json=body))["row_id"]
    tasks = {  # key: (customer, assignee, due, priority)
        "max_1_due": ("max_1", "max", now - 2 * HOUR_MS, 5),
        "max_1_urgent": ("max_1", "max", now - 2 * HOUR_MS, 8),
        "max_1_later": ("max_1", "max", now + 48 * HOUR_MS, 5),
        "max_2_due": ("max_2", "max", now - HOUR_MS, 5),
        "mia_1_due": ("mia_1", "mia", now - HOUR_MS, 5),
    }
    edits = []
    for key, (customer, assignee, due, priority) in tasks.items():
        row = new_ulid(wall_clock_ms(), os.urandom(10))
        site.tasks[key] = row
        values = {"customer_id": site.customers[customer], "kind": "care", "assignee": site.users[assignee],
                  "site": "branch-a", "status": "assigned", "due_at_ms": due, "priority": priority}
        edits += [Edit("tasks", row, name, "set", value) for name, value in values.items()]
    store = await site.hq_store()
    try:
        await store.write_local(edits)
    finally:
        await store.close()
    await site.branch_sync()


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("mobile")
    holder: list[Site] = []

    async def prepare(hq: NodeProcess, below: dict[str, NodeProcess]) -> None:
        proxy = await LinkProxy("127.0.0.1", below["branch-a"].port).start()
        holder.append(Site(workdir, hq, below["branch-a"], proxy))
        await seed(holder[0])

    with enrolled_nodes(aio, workdir, ("branch-a",), prepare):
        yield holder[0]

        async def close() -> None:
            for phone in holder[0].phones:
                await phone.close()
            await holder[0].proxy.close()

        aio.run(close(), timeout=60)
