"""The demo: HQ and two branches as separate processes on loopback.

1. HQ, branch-a and branch-b start (``outpost serve``), each with its own SQLite
   file; branch-b reaches HQ through a link it is about to lose.
2. HQ seeds the demo customers; both branches sync them down.
3. branch-b's link is cut. HQ and branch-b edit the same customers: the same
   field on some (a conflict: the later write wins everywhere), different fields
   on others (both edits survive); branch-a edits too; tags are added and
   removed on both sides (add wins).
4. The link heals; the branches sync; every node prints the same digest.
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

console = Console()


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
        proxy = await LinkProxy("127.0.0.1", hq.port).start()
        a = NodeProcess("branch-a", base, token=token, upstream_url=hq.url)
        b = NodeProcess("branch-b", base, token=token, upstream_url=proxy.url)
        nodes += [a, b]
        for n in (a, b):
            n.init()
            await n.start()
        console.print(f"started hq :{hq.port}, branch-a :{a.port}, branch-b :{b.port} (via link :{proxy.port})")

        ids = []
        for i in range(customers):
            card = await hq.call("POST", "/customers", json={
                "home_branch": "branch-a" if i % 2 else "branch-b", "star_level": i % 8,
                "segment": "gold" if i % 3 == 0 else "silver", "status": "active",
                "assigned_agent": f"agent-{i % 5}", "tags_add": ["demo"],
            })
            ids.append(card["row_id"])
        for n in (a, b):
            await n.sync_now()
        console.print(f"seeded {customers} customers at HQ; both branches synced them")

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
            for n in (b, a):
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
        same_cards = all(card_same[n.site] == card_same["hq"] for n in nodes)
        if converged and same_cards:
            console.print(f"[bold green]converged: all {len(nodes)} nodes hold digest {digests['hq']['digest'][:16]}")
            return 0
        console.print("[bold red]NOT converged")
        return 1
    finally:
        for n in reversed(nodes):
            await n.stop()
        if proxy is not None:
            await proxy.close()
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)
