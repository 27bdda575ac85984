"""The demo: HQ and two branches as separate processes on loopback.

1. HQ, branch-a and branch-b start (``outpost serve``), each with its own SQLite
   file; branch-b reaches HQ through a link it is about to lose.
2. HQ seeds the demo customers, half at home in each branch, some contracted to
   partner-x; each node syncs down exactly what its scope admits
   (sites/policy.toml): a branch its home customers, partner-x its contracted
   ones, and only the fields its roles see.
3. branch-b's link is cut. HQ and branch-b edit the same customers: the same
   field on some (a conflict: the later write wins everywhere), different fields
   on others (both edits survive); branch-a edits too; tags are added and
   removed on both sides (add wins).
4. The link heals; the nodes sync; every node holds exactly what HQ holds of
   its scope (the same digest).
5. Scope: HQ moves a customer from branch-b to branch-a: it arrives whole at
   branch-a, and branch-b purges it and signs a receipt that HQ keeps.
   partner-x changes a star level it may only read: HQ refuses it and the
   partner converges back.
6. Personal information: every customer carries a name, phone, ID number and
   address, sealed where it was written; the ID number with the person's
   separate consent to it, recorded with the customer. Partner-x opens names and phones of its
   customers and holds no other personal field at all. HQ erases one customer;
   no node can open it any more.
7. A byte search of every database, WAL, log and the captured sync traffic finds
   none of the demo's personal information in plaintext.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sqlite3
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from server.demo_work import work_day
from server.link_proxy import LinkProxy
from server.node_process import NodeProcess
from server.keyring import CUSTOMER_PII
from server.pii_scan import scan

console = Console()

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英")
_DISTRICTS = ("朝阳区建国路", "海淀区中关村大街", "浦东新区世纪大道", "天河区体育西路", "武侯区人民南路")


#: the demo customers' separate consent to the processing of their ID number (PIPL
#: Art. 29), sent with the create that stores the number (server/consents.py)
DEMO_ID_CONSENT = {"id_number_consent": {"channel": "paper"}}


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
                "partners_add": ["partner-x"] if i % 4 == 0 else [], **demo_person(i), **DEMO_ID_CONSENT,
            })
            ids.append(card["row_id"])
        for n in (a, b, x):
            await n.sync_now()
            await n.sync_now()  # the second round brings keys HQ wrapped after the first
        held = {n.site: (await n.digest())["rows"]["customers"] for n in (a, b, x)}
        console.print(f"seeded {customers} customers with personal information at HQ, sealed there; each node "
                      f"synced its scope: branch-a {held['branch-a']}, branch-b {held['branch-b']}, "
                      f"partner-x {held['partner-x']} customers")

        console.rule("cut branch-b off")
        await proxy.cut()
        mine_b = ids[0::2]  # branch-b's customers
        k = max(2, len(mine_b) // 3)
        same, different = mine_b[:k], mine_b[k : 2 * k]
        for row in same:  # same field, both sides: HQ writes first, branch-b later
            await hq.call("PATCH", f"/customers/{row}", json={"star_level": 7, "tags_remove": ["demo"]})
        await asyncio.sleep(0.01)
        for row in same:
            await b.call("PATCH", f"/customers/{row}", json={"star_level": 3, "tags_add": ["callback"]})
        for row in different:  # different fields: both survive
            await hq.call("PATCH", f"/customers/{row}", json={"segment": "platinum"})
            await b.call("PATCH", f"/customers/{row}", json={"assigned_agent": "agent-b9"})
        await a.call("PATCH", f"/customers/{ids[-1]}", json={"tags_add": ["vip"]})
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
        reports: dict[str, dict[str, int]] = {}
        await _sync_all((b, a, x), reports)
        card_same = {n.site: await n.call("GET", f"/customers/{same[0]}") for n in (hq, b)}
        card_diff = {n.site: await n.call("GET", f"/customers/{different[0]}") for n in (hq, b)}
        if not await _converged(hq, (a, b, x), reports):
            return 1
        c = card_same["hq"]
        console.print(f"same field on both sides: star_level = {c['star_level']} everywhere (latest write wins), "
                      f"tags = {c['tags']} (add wins, concurrent remove of 'demo' kept)")
        c = card_diff["hq"]
        console.print(f"different fields: segment = {c['segment']} (HQ) and assigned_agent = {c['assigned_agent']} "
                      f"(branch-b) both kept")
        if _public(card_same["branch-b"]) != _public(card_same["hq"]):
            console.print("[bold red]branch-b shows another card than HQ")
            return 1
        if await _scope(hq, a, b, x, ids, reports) != 0:
            return 1
        if await _audit(hq, a, b, x, ids) != 0:
            return 1
        failed, _ = await work_day(hq, a, ids)
        if failed:
            return 1
        return await _privacy(hq, a, b, x, ids, base)
    finally:
        for n in reversed(nodes):
            await n.stop()
        if proxy is not None:
            await proxy.close()
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)


async def _sync_all(nodes: tuple[NodeProcess, ...], reports: dict[str, dict[str, int]], rounds: int = 2) -> None:
    for _ in range(rounds):  # one node's changes reach HQ, then the others
        for n in nodes:
            r = await n.sync_now()
            prev = reports.get(n.site, {"pushed": 0, "pulled": 0, "conflicts": 0, "purged": 0})
            reports[n.site] = {k: prev[k] + r[k] for k in prev}


async def _converged(hq: NodeProcess, nodes: tuple[NodeProcess, ...], reports: dict[str, dict[str, int]]) -> bool:
    """Each node holds what HQ holds of its scope: the same digest of the work data
    and of the key records HQ addressed to it. Prints the table."""
    table = Table(title="each node against HQ's copy of its scope")
    for col in ("node", "digest", "customers", "pushed", "pulled", "conflicts", "purged"):
        table.add_column(col)
    ok = True
    for n in nodes:
        mine, expected = await n.digest(), await hq.digest(peer=n.site)
        same = mine["digest"] == expected["digest"] and mine["keys_digest"] == expected["keys_digest"]
        ok = ok and same
        r = reports.get(n.site, {})
        table.add_row(n.site, mine["digest"][:16] + ("" if same else " != " + expected["digest"][:16]),
                      str(mine["rows"]["customers"]), *(str(r.get(k, "-")) for k in ("pushed", "pulled", "conflicts",
                                                                                       "purged")))
    console.print(table)
    if not ok:
        console.print("[bold red]NOT converged: a node's copy differs from HQ's copy of its scope")
        return False
    console.print("[bold green]converged: every node holds exactly HQ's rows, fields and key records of its scope")
    return True


async def _scope(hq: NodeProcess, a: NodeProcess, b: NodeProcess, x: NodeProcess, ids: list[str],
                 reports: dict[str, dict[str, int]]) -> int:
    """Step 5: a customer moves branch; partner-x writes what it may only read."""
    console.rule("scope")
    moved = ids[2]  # at home in branch-b
    await hq.call("PATCH", f"/customers/{moved}", json={"home_branch": "branch-a"})
    await _sync_all((a, b), reports, rounds=3)  # HQ's key steward re-wraps its keys for branch-a
    at_a = await a.call("GET", f"/customers/{moved}")
    gone = await b.client.get(f"/customers/{moved}")
    receipts = await hq.call("GET", "/purge-receipts", params={"peer": "branch-b"})
    signed = [r for r in receipts if f"customers/{moved}" in r["rows"] and r["verified"]]
    console.print(f"HQ moved a customer to branch-a: it opens there ({at_a['unavailable'] == []}); branch-b purged it "
                  f"(now {gone.status_code}) and signed a receipt HQ keeps ({len(signed)} verified)")
    if at_a["unavailable"] or gone.status_code != 404 or not signed:
        console.print("[bold red]the move did not carry scope with it")
        return 1
    contracted = ids[0]  # i % 4 == 0: contracted to partner-x
    before = (await hq.call("GET", f"/customers/{contracted}"))["star_level"]
    await x.call("PATCH", f"/customers/{contracted}", json={"star_level": 1 if before != 1 else 2})
    report = await x.sync_now()
    await x.sync_now()
    after_x = (await x.call("GET", f"/customers/{contracted}"))["star_level"]
    after_hq = (await hq.call("GET", f"/customers/{contracted}"))["star_level"]
    console.print(f"partner-x changed a star level it may only read: HQ refused it ({report['refused_upstream']} "
                  f"refused) and the partner converged back ({after_x} = {after_hq} at HQ)")
    if report["refused_upstream"] < 1 or after_x != before or after_hq != before:
        console.print("[bold red]a refused write did not converge back")
        return 1
    return 0


def _public(card: dict[str, object]) -> dict[str, object]:
    """A card without its PII (which each node opens only where it holds the keys)."""
    return {k: v for k, v in card.items() if k not in CUSTOMER_PII and k != "unavailable"}


async def _audit(hq: NodeProcess, a: NodeProcess, b: NodeProcess, x: NodeProcess, ids: list[str]) -> int:
    """The audit trail: every node's chain at HQ, who accessed a customer, an
    export, and an entry edited in branch-a's database caught at HQ."""
    console.rule("audit trail")
    subject = ids[1]  # at home in branch-a
    await a.call("GET", f"/customers/{subject}", params={"purpose": "inbound_call"})
    for n in (a, b, x):
        await n.sync_now()
    report = await hq.call("GET", "/audit/verify")
    chains = ", ".join(f"{c['node']} {c['entries']}" for c in report["chains"])
    console.print(f"HQ holds every node's audit chain and verifies it whole ({report['ok']}): entries {chains}")
    accessed = (await hq.call("GET", f"/audit/customers/{subject}"))["entries"]
    console.print(f"who accessed customer {subject[-6:]}: "
                  + "; ".join(f"{e['node']} {e['actor']} {e['action']} {'/'.join(e['shown']) or '-'}"
                              f"{' for ' + e['purpose'] if e['purpose'] else ''}" for e in accessed[-4:]))
    exported = await hq.call("POST", f"/customers/{subject}/export", json={"requested_by": "data_subject"})
    console.print(f"export for the person: {len(exported['accesses'])} accesses, {len(exported['tasks'])} tasks, "
                  f"their fields in full")
    if not report["ok"] or not accessed:
        console.print("[bold red]the audit chains are not whole at HQ")
        return 1
    for _ in range(2):
        await a.call("GET", f"/customers/{subject}")
    db = sqlite3.connect(a.data_dir / "branch-a.db", timeout=10)
    try:  # what someone with the file might do: hide that they read the card
        db.execute("DROP TRIGGER audit_entries_no_update")
        (seq,) = db.execute("SELECT max(seq) - 1 FROM audit_entries WHERE node = 'branch-a'").fetchone()
        db.execute("UPDATE audit_entries SET action = 'lookup' WHERE node = 'branch-a' AND seq = ?", (seq,))
        db.commit()
    finally:
        db.close()
    await a.sync_now()
    alerts = await hq.call("GET", "/audit/alerts")
    console.print(f"an entry edited in branch-a's database: HQ raised {len(alerts)} alert(s) after the next sync: "
                  + "; ".join(f"{al['node']} entry {al['seq']} {al['kind']}" for al in alerts))
    if not any(al["node"] == "branch-a" and al["seq"] == seq for al in alerts):
        console.print("[bold red]HQ did not notice the edited audit entry")
        return 1
    return 0


async def _privacy(hq: NodeProcess, a: NodeProcess, b: NodeProcess, x: NodeProcess, ids: list[str], base: Path) -> int:
    """Steps 6 and 7: what the partner opens, an erasure, and the byte search."""
    console.rule("personal information")
    shared = ids[0]  # i % 4 == 0: contracted to partner-x
    at_x = await x.call("GET", f"/customers/{shared}")
    at_a = await a.call("GET", f"/customers/{ids[1]}")
    absent = [f for f in ("email", "id_number", "address") if at_x[f] is None and f not in at_x["unavailable"]]
    console.print(f"partner-x opens name and phone of its contracted customer ({at_x['name'] is not None}, "
                  f"{at_x['phone'] is not None}); it holds no {', '.join(absent)} at all")
    if len(absent) != 3:
        console.print("[bold red]partner-x holds personal information its policy hides")
        return 1
    found = await a.call("POST", "/customers/lookup", json={"field": "phone", "value": at_a["phone"]})
    console.print(f"branch-a finds a caller by phone through the blind index: {len(found['matches'])} match")
    erased = ids[4]  # at home in branch-b
    report = await hq.call("POST", f"/customers/{erased}/erase", json={"requested_by": "data_subject", "basis": "subject_request"})
    for n in (a, b, x):
        await n.sync_now()
    cards = [await n.call("GET", f"/customers/{erased}") for n in (hq, b)]
    console.print(f"HQ erased one customer: {report['data_keys_shredded']} data keys shredded, "
                  f"{len(report['rotations'])} scope keys rotated; its name now reads "
                  f"{sorted({str(c['name']) for c in cards})} at hq and at its branch")
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

