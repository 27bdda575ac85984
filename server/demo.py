"""The demo: HQ and two branches as separate processes on loopback.

1. HQ, branch-a and branch-b start (``outpost serve``), each with its own SQLite
   file; branch-b reaches HQ through a link it is about to lose.
2. HQ seeds the demo customers; both branches sync them down.
3. branch-b's link is cut. HQ and branch-b edit the same customers: the same
   field on some (a conflict: the later write wins everywhere), different fields
   on others (both edits survive); branch-a edits too; tags are added and
   removed on both sides (add wins).
4. The link heals; the branches sync; every node prints the same digest.
5. Personal information: every customer carries a name, phone, ID number and
   address, sealed where it was written. Partner-x, contracted for some of them,
   opens names and phones but never an ID number or address (it holds no key for
   them). HQ erases one customer; no node can open it any more.
6. A byte search of every database, WAL, log and the captured sync traffic finds
   none of the demo's personal information in plaintext.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from server.link_proxy import LinkProxy
from server.node_process import NodeProcess
from server.keyring import CUSTOMER_PII
from server.pii_scan import scan

console = Console()

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英")
_DISTRICTS = ("朝阳区建国路", "海淀区中关村大街", "浦东新区世纪大道", "天河区体育西路", "武侯区人民南路")


def demo_person(i: int) -> dict[str, str]:
    """The made-up personal information of demo customer ``i`` (deterministic, so
    a test can search the nodes' files for it)."""
    name = _SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i * 7) % len(_GIVEN)] + _GIVEN[(i * 3 + 1) % len(_GIVEN)]
    phone = f"13{8 + i % 2}{(20_000_000 + i * 7_919) % 100_000_000:08d}"
    id17 = f"11010{5 + i % 4}19{70 + i % 30}{1 + i % 12:02d}{1 + i % 28:02d}{100 + i:03d}"[:17]
    return {
        "name": name,
        "phone": f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}",
        "id_number": id17 + "0123456789X"[i % 11],
        "address": f"{_DISTRICTS[i % len(_DISTRICTS)]}{10 + i}号",
        "email": f"demo.customer{i}@example.cn",
    }


async def run_demo(*, customers: int = 40, workdir: str | None = None) -> int:
    """Run the scenario; returns 0 when every node converged to one digest."""
    base = Path(workdir).resolve() if workdir else Path(tempfile.mkdtemp(prefix="outpost-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    hq = NodeProcess("hq", base, token=token)
    proxy: LinkProxy | None = None
    nodes = [hq]
    try:
        console.rule("[bold]Outpost demo: HQ + two branches on loopback")
        console.print(f"data and logs in {base}")
        hq.init()
        await hq.start()
        proxy = await LinkProxy("127.0.0.1", hq.port, record=base / "link-branch-b.traffic").start()
        a = NodeProcess("branch-a", base, token=token, upstream_url=hq.url)
        b = NodeProcess("branch-b", base, token=token, upstream_url=proxy.url)
        x = NodeProcess("partner-x", base, token=token, upstream_url=hq.url)
        nodes += [a, b, x]
        for n in (a, b, x):
            n.init()
            await n.start()
            await n.enroll()
        console.print(f"started hq :{hq.port}, branch-a :{a.port}, branch-b :{b.port} (via link :{proxy.port}), "
                      f"partner-x :{x.port}; each enrolled its public keys with HQ")

        ids = []
        for i in range(customers):
            card = await hq.call("POST", "/customers", json={
                "home_branch": "branch-a" if i % 2 else "branch-b", "star_level": i % 8,
                "segment": "gold" if i % 3 == 0 else "silver", "status": "active",
                "assigned_agent": f"agent-{i % 5}", "tags_add": ["demo"],
                "partners_add": ["partner-x"] if i % 4 == 0 else [], **demo_person(i),
            })
            ids.append(card["row_id"])
        for n in (a, b, x):
            await n.sync_now()
            await n.sync_now()  # the second round brings keys HQ wrapped after the first
        console.print(f"seeded {customers} customers with personal information at HQ, sealed there; "
                      "the branches and partner-x synced them")

        console.rule("cut branch-b off")
        await proxy.cut()
        k = max(2, customers // 4)
        same, different = ids[:k], ids[k : 2 * k]
        for i, row in enumerate(same):  # same field, both sides: HQ writes first, branch-b later
            await hq.call("PATCH", f"/customers/{row}", json={"star_level": 7, "tags_remove": ["demo"]})
        await asyncio.sleep(0.01)
        for i, row in enumerate(same):
            await b.call("PATCH", f"/customers/{row}", json={"star_level": 3, "tags_add": ["callback"]})
        for row in different:  # different fields: both survive
            await hq.call("PATCH", f"/customers/{row}", json={"segment": "platinum"})
            await b.call("PATCH", f"/customers/{row}", json={"assigned_agent": "agent-b9"})
        await a.call("PATCH", f"/customers/{ids[-1]}", json={"arpu_fen": 19_900})
        await a.sync_now()
        try:
            await b.sync_now()
            console.print("[red]branch-b synced although its link is cut")
            return 1
        except RuntimeError:
            console.print("branch-b cannot reach HQ: its changes wait, its sync backs off")
        console.print(f"edited {len(same)} customers on both sides (same field: star_level; tags added and removed) "
                      f"and {len(different)} on both sides with different fields")

        console.rule("heal the link")
        await proxy.heal()
        reports = {}
        for _ in range(2):  # branch-b's changes reach HQ, then branch-a
            for n in (b, a, x):
                r = await n.sync_now()
                prev = reports.get(n.site, {"pushed": 0, "pulled": 0, "conflicts": 0})
                reports[n.site] = {k2: prev[k2] + r[k2] for k2 in prev}

        digests = {n.site: await n.digest() for n in nodes}
        card_same = {n.site: await n.call("GET", f"/customers/{same[0]}") for n in nodes}
        card_diff = {n.site: await n.call("GET", f"/customers/{different[0]}") for n in nodes}
        table = Table(title="after healing")
        for col in ("node", "digest", "customers", "pushed", "pulled", "conflicts"):
            table.add_column(col)
        for n in nodes:
            d = digests[n.site]
            r = reports.get(n.site, {})
            table.add_row(n.site, d["digest"][:16], str(d["rows"]["customers"]), str(r.get("pushed", "-")),
                          str(r.get("pulled", "-")), str(r.get("conflicts", "-")))
        console.print(table)
        c = card_same["hq"]
        console.print(f"same field on both sides: star_level = {c['star_level']} everywhere (latest write wins), "
                      f"tags = {c['tags']} (add wins, concurrent remove of 'demo' kept)")
        c = card_diff["hq"]
        console.print(f"different fields: segment = {c['segment']} (HQ) and assigned_agent = {c['assigned_agent']} "
                      f"(branch-b) both kept")
        converged = len({d["digest"] for d in digests.values()}) == 1
        keys_match = all([
            (await hq.digest(peer=n.site))["keys_digest"] == digests[n.site]["keys_digest"] for n in (a, b, x)
        ])
        same_cards = all(_public(card_same[n.site]) == _public(card_same["hq"]) for n in nodes)
        if not (converged and keys_match and same_cards):
            console.print(f"[bold red]NOT converged (work data {converged}, keys {keys_match}, cards {same_cards})")
            return 1
        console.print(f"[bold green]converged: all {len(nodes)} nodes hold digest {digests['hq']['digest'][:16]}; "
                      "each branch holds exactly the key records HQ addressed to it")
        return await _privacy(hq, a, b, x, ids, base)
    finally:
        for n in reversed(nodes):
            await n.stop()
        if proxy is not None:
            await proxy.close()
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)


def _public(card: dict[str, object]) -> dict[str, object]:
    """A card without its PII (which each node opens only where it holds the keys)."""
    return {k: v for k, v in card.items() if k not in CUSTOMER_PII and k != "unavailable"}


async def _privacy(hq: NodeProcess, a: NodeProcess, b: NodeProcess, x: NodeProcess, ids: list[str], base: Path) -> int:
    """Steps 5 and 6: what the partner opens, an erasure, and the byte search."""
    console.rule("personal information")
    shared = ids[0]  # i % 4 == 0: contracted to partner-x
    at_x = await x.call("GET", f"/customers/{shared}")
    at_a = await a.call("GET", f"/customers/{ids[1]}")
    console.print(f"partner-x opens name and phone of its contracted customer ({at_x['name'] is not None}, "
                  f"{at_x['phone'] is not None}); unavailable there: {', '.join(at_x['unavailable'])}")
    if at_x["id_number"] is not None or "id_number" not in at_x["unavailable"]:
        console.print("[bold red]partner-x opened an ID number")
        return 1
    found = await a.call("POST", "/customers/lookup", json={"field": "phone", "value": at_a["phone"]})
    console.print(f"branch-a finds a caller by phone through the blind index: {len(found['matches'])} match")
    erased = ids[2]
    report = await hq.call("POST", f"/customers/{erased}/erase", json={"reason": "demo: the person asked"})
    for n in (a, b, x):
        await n.sync_now()
    cards = [await n.call("GET", f"/customers/{erased}") for n in (hq, a, b)]
    console.print(f"HQ erased one customer: {report['data_keys_shredded']} data keys shredded, "
                  f"{len(report['rotations'])} scope keys rotated; its name now reads "
                  f"{sorted({str(c['name']) for c in cards})} at hq, branch-a and branch-b")
    if any(c["name"] is not None or not c["deleted"] for c in cards):
        console.print("[bold red]the erased customer is still readable")
        return 1
    for n in (hq, a, b, x):  # stop them so every byte they wrote is on disk
        await n.stop()
    files = sorted(p for p in base.rglob("*") if p.is_file())
    values = [v for i in range(len(ids)) for v in demo_person(i).values()]
    hits = scan(files, values)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    if hits:
        console.print(f"[bold red]plaintext PII found in {sorted({str(p) for p, _ in hits})}")
        return 1
    console.print(f"[bold green]no plaintext PII: searched {len(files)} files ({size_mb:.1f} MB: databases, WALs, "
                  f"keystores, logs, the captured sync traffic) for {len(values)} demo values")
    return 0

