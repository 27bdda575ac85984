"""``GET /reports/kpi`` and ``outpost report`` against HQ as a real `outpost serve`
process on loopback (the repository's site config and policy).

Users are defined through HQ's API; results and complaint tickets are written
into HQ's file by a second process on the same store (as `outpost sync` is), so
a complaint's archived time is the stamp its write gets now. The figures are
worked out by hand below.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from server.cli import ROOT
from server.node_process import NodeProcess
from server.work.kpi import KpiRow
from sync.edits import Edit
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.store.sqlite import SqliteStore, wall_clock_ms
from tests.conftest import LoopThread, problem

pytestmark = pytest.mark.system

SHANGHAI = ZoneInfo("Asia/Shanghai")
PASSWORD = "kpi report passphrase 9"
#: username -> (role, site, team)
USERS = {
    "boss": ("hq_admin", "hq", None),
    "sup-a": ("supervisor", "branch-a", None),
    "ana": ("agent", "branch-a", "north"),
    "bo": ("agent", "branch-a", "south"),
    "di": ("agent", "branch-b", "north"),
    "aud": ("auditor", "hq", None),
}
HOUR_MS = 3_600_000


def at(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI).timestamp()) * 1000


class Hq:
    def __init__(self, node: NodeProcess, ids: dict[str, str], day1: date, day2: date, last: date) -> None:
        self.node, self.ids, self.day1, self.day2, self.last = node, ids, day1, day2, last
        self.tokens: dict[str, str] = {}

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.node.token}"}

    def as_user(self, username: str) -> dict[str, str]:
        if username not in self.tokens:
            r = httpx.post(f"{self.node.url}/auth/sign-in", json={"username": username, "password": PASSWORD},
                           timeout=30)
            assert r.status_code == 200, r.text
            self.tokens[username] = r.json()["access_token"]
        return {"authorization": f"Bearer {self.tokens[username]}"}

    def get(self, headers: dict[str, str], **params: str) -> httpx.Response:
        query = {"from": str(self.day1), "to": str(self.last), **params}
        return httpx.get(f"{self.node.url}/reports/kpi", params=query, headers=headers, timeout=60)

    def rows(self, headers: dict[str, str] | None = None, **params: str) -> list[KpiRow]:
        r = self.get(headers or self.admin, **params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        return msgspec.convert(r.json(), list[KpiRow])


async def seed(node: NodeProcess, ids: dict[str, str], day1: date, day2: date) -> None:
    store = await SqliteStore.open(node.data_dir / "hq.db", node_id="hq", clock=Clock(wall_clock_ms, 60_000))
    now = wall_clock_ms()

    def row_id() -> str:
        return new_ulid(wall_clock_ms(), os.urandom(10))

    def result(agent: str, site: str, when: int, outcome: str | None, **more: Any) -> list[Edit]:
        rid = row_id()
        values = {"agent": ids[agent], "site": site, "recorded_at_ms": when, "outcome": outcome,
                  "task_id": row_id(), "customer_id": row_id(), **more}
        return [Edit("results", rid, f, "set", v) for f, v in values.items() if v is not None]

    def complaint(owner: str, site: str, deadline_at_ms: int) -> list[Edit]:
        rid = row_id()
        values = {"kind": "complaint", "first_responder": ids[owner], "site": site,
                  "deadline_at_ms": deadline_at_ms, "customer_id": row_id(), "status": "archived"}
        return [Edit("tasks", rid, f, "set", v) for f, v in values.items()]

    edits = [
        # ana (branch-a, north), day 1: 4 attempts, 3 connected, 1 success with an order, 2 long calls
        *result("ana", "branch-a", at(day1, 9), "no_answer", duration_s=25),
        *result("ana", "branch-a", at(day1, 10), "connected", duration_s=30, satisfaction=4),
        *result("ana", "branch-a", at(day1, 11), "success", duration_s=60, order_id="ord-1", satisfaction=5),
        *result("ana", "branch-a", at(day1, 12), "refused", duration_s=12),
        # bo (branch-a, south), day 1: 2 attempts, none connected; a visit report with a score
        *result("bo", "branch-a", at(day1, 9), "busy"),
        *result("bo", "branch-a", at(day1, 10), "powered_off"),
        *result("bo", "branch-a", at(day1, 15), None, satisfaction=2),
        # di (branch-b, north), day 2: one success without an order, one order refused
        *result("di", "branch-b", at(day2, 0), "success", duration_s=40),
        *result("di", "branch-b", at(day2, 1), "refused", duration_s=20, order_id="ord-2"),
        # before the period: left out
        *result("ana", "branch-a", at(day1, 0) - 1, "success", duration_s=99),
        # complaints archived now: ana's on time, di's late
        *complaint("ana", "branch-a", now + 24 * HOUR_MS),
        *complaint("di", "branch-b", now - HOUR_MS),
    ]
    try:
        await store.write_local(edits)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def hq(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[Hq]:
    workdir = tmp_path_factory.mktemp("kpi")
    node = NodeProcess("hq", workdir, token=secrets.token_urlsafe(24))
    today = datetime.now(SHANGHAI).date()
    day1, day2 = today - timedelta(days=3), today - timedelta(days=2)
    ids: dict[str, str] = {}

    async def start() -> None:
        node.init()
        await node.start()
        for username, (role, site, team) in USERS.items():
            made = await node.call("POST", "/users", json={"username": username, "role": role, "site": site,
                                                          "team": team, "password": PASSWORD})
            ids[username] = made["row_id"]
        await seed(node, ids, day1, day2)

    try:
        aio.run(start(), timeout=120)
        # the last day reaches past now, so the complaints archived now are in the period
        yield Hq(node, ids, day1, day2, today + timedelta(days=1))
    finally:
        aio.run(node.stop(), timeout=60)
        node.kill()


def test_site_rows_hold_the_hand_counted_figures(hq: Hq) -> None:
    rows = hq.rows(by="site")
    a1 = next(r for r in rows if r.key == "branch-a" and r.day == hq.day1)
    # ana 4 attempts + bo 2; connected: ana's connected, success, refused
    assert (a1.attempts, a1.connected, a1.conversions, a1.long_calls, a1.talk_s) == (6, 3, 1, 2, 102)
    assert a1.connect_rate == 3 / 6 and a1.conversion_rate == 1 / 3 and a1.long_call_share == 2 / 3
    assert a1.aht_s == 34.0
    assert (a1.orders, a1.orders_succeeded, a1.order_success_rate) == (1, 1, 1.0)
    assert (a1.satisfaction_n, a1.satisfaction) == (3, 11 / 3)
    assert a1.complaints_archived == 0 and a1.complaint_timeliness is None
    b2 = next(r for r in rows if r.key == "branch-b" and r.day == hq.day2)
    assert (b2.attempts, b2.connected, b2.conversions, b2.long_calls) == (2, 2, 1, 2)
    assert (b2.orders, b2.orders_succeeded, b2.order_success_rate) == (1, 0, 0.0)
    assert b2.satisfaction is None
    complaints = {r.key: (r.complaints_archived, r.complaint_timeliness) for r in rows if r.complaints_archived}
    assert complaints == {"branch-a": (1, 1.0), "branch-b": (1, 0.0)}
    assert sum(r.attempts for r in rows) == 8  # the call before the period is not counted


def test_agent_and_team_rows(hq: Hq) -> None:
    agents = {(r.key, r.day): r for r in hq.rows(by="agent")}
    ana = agents[(hq.ids["ana"], hq.day1)]
    assert (ana.site, ana.attempts, ana.connected, ana.conversion_rate) == ("branch-a", 4, 3, 1 / 3)
    bo = agents[(hq.ids["bo"], hq.day1)]
    assert (bo.attempts, bo.connect_rate, bo.conversion_rate, bo.satisfaction) == (2, 0.0, None, 2.0)
    teams = {(r.key, r.site, r.day): r.attempts for r in hq.rows(by="team") if r.attempts}
    # north at branch-a and north at branch-b are two teams
    assert teams == {("north", "branch-a", hq.day1): 4, ("south", "branch-a", hq.day1): 2,
                     ("north", "branch-b", hq.day2): 2}
    north = hq.rows(by="site", team="north")
    assert {(r.key, r.attempts) for r in north if r.attempts} == {("branch-a", 4), ("branch-b", 2)}


def test_hq_admin_reads_what_the_operator_reads(hq: Hq) -> None:
    assert hq.rows(hq.as_user("boss"), by="team") == hq.rows(by="team")


def test_a_supervisor_reads_their_own_sites_rows_only(hq: Hq) -> None:
    sup = hq.as_user("sup-a")
    rows = hq.rows(sup, by="agent")
    assert rows and {r.site for r in rows} == {"branch-a"}
    assert hq.rows(sup, by="site", site="branch-a") == [r for r in hq.rows(by="site") if r.site == "branch-a"]
    other = hq.get(sup, by="site", site="branch-b")
    assert other.status_code == 403
    assert problem(other)["code"] == "not_permitted" and "branch-a" in problem(other)["detail"]


@pytest.mark.parametrize("username", ["ana", "aud"])
def test_other_roles_are_refused_and_the_refusal_is_recorded(hq: Hq, username: str) -> None:
    refused = hq.get(hq.as_user(username), by="site")
    assert refused.status_code == 403 and problem(refused)["code"] == "not_permitted"
    entries = httpx.get(f"{hq.node.url}/audit/actors/{hq.ids[username]}", headers=hq.admin, timeout=30).json()
    assert any(e["action"] == "kpi_report" and e["status"] == 403 for e in entries["entries"])


def test_no_credential_is_a_401(hq: Hq) -> None:
    assert hq.get({}, by="site").status_code == 401
    assert hq.get({"authorization": "Bearer wrong"}, by="site").status_code == 401


def test_csv_by_format_or_accept_holds_the_json_rows(hq: Hq) -> None:
    rows = hq.rows(by="agent")
    for response in (hq.get(hq.admin, by="agent", format="csv"),
                     hq.get({**hq.admin, "accept": "text/csv"}, by="agent")):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        parsed = list(csv.DictReader(io.StringIO(response.text)))
        assert [(p["key"], p["day"], int(p["attempts"]), p["conversion_rate"]) for p in parsed] == [
            (r.key, str(r.day), r.attempts, "" if r.conversion_rate is None else repr(r.conversion_rate))
            for r in rows]
    assert hq.get({**hq.admin, "accept": "application/json"}, by="agent").headers["content-type"].startswith(
        "application/json")


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"from": "2026-11-30", "to": "2026-11-01"}, 400, "give a `from` on or before `to`"),
    ({"from": "2025-01-01", "to": "2026-01-02"}, 400, "at most 366"),
    ({"from": "2026-13-01", "to": "2026-12-01"}, 400, "`from` is no calendar day: give YYYY-MM-DD"),
    ({"from": "2026-11-01", "to": "2026-02-30"}, 400, "`to` is no calendar day"),
    ({"from": "yesterday", "to": "2026-12-01"}, 400, "`from` is no calendar day"),
    ({"to": "2026-12-01"}, 400, "'from'"),
    ({"by": "planet"}, 400, "`by` is one of agent, team, site"),
    ({"site": "Not A Site!"}, 400, "matching regex"),
    ({"format": "xml"}, 400, "`format` is `json` or `csv`"),
])
def test_bad_input_is_a_400_saying_what_to_fix(hq: Hq, params: dict[str, str], status: int, says: str) -> None:
    query = {"from": str(hq.day1), "to": str(hq.last), **params}
    if "from" not in params and "to" in params:
        del query["from"]
    response = httpx.get(f"{hq.node.url}/reports/kpi", params=query, headers=hq.admin, timeout=30)
    assert response.status_code == status, response.text
    body = problem(response)
    assert says in body["detail"] + str(body.get("errors", "")), body
    for value in ("planet", "Not A Site!", "yesterday", "xml"):  # no value echoed
        assert value not in response.text


def outpost(hq: Hq, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**hq.node.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)


def test_outpost_report_prints_a_table_and_writes_the_csv(hq: Hq, tmp_path: Path) -> None:
    out = tmp_path / "kpi.csv"
    done = outpost(hq, "report", "hq", "--port", str(hq.node.port), "--by", "site", "--from", str(hq.day1),
                   "--to", str(hq.last), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    assert "branch-a" in done.stdout and "branch-b" in done.stdout and "50.0%" in done.stdout  # a1's connect rate
    parsed = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    rows = hq.rows(by="site")
    assert [(p["key"], p["day"], int(p["attempts"]), int(p["complaints_archived"])) for p in parsed] == [
        (r.key, str(r.day), r.attempts, r.complaints_archived) for r in rows]
    assert f"wrote {len(rows)} rows" in done.stdout


def test_outpost_report_refuses_bad_input_in_one_line(hq: Hq) -> None:
    bad_date = outpost(hq, "report", "hq", "--port", str(hq.node.port), "--from", "2026-11-31", "--to", "2026-12-01")
    assert bad_date.returncode == 2 and "--from" in bad_date.stderr
    backwards = outpost(hq, "report", "hq", "--port", str(hq.node.port), "--from", "2026-12-01", "--to", "2026-11-01")
    assert backwards.returncode == 1 and "Traceback" not in backwards.stderr
    assert "answered 400" in backwards.stderr and "`from`" in backwards.stderr
