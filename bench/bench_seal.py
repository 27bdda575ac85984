"""Field sealing: seal and open 1,000,000 PII values with `crypto.seal`, next to bare AES-GCM.

    python3 run.py bench               # or: .venv/bin/python bench/bench_seal.py [--customers N]

100,000 customers x 10 PII fields (names, phones, ID numbers, addresses, ...: 8
to 40 bytes of UTF-8 each). Each customer's `DataKey` is built once, as a node
does when it loads a customer's keys; the `FieldContext` of every field is built
before the clock starts (about 70 ns each, on the caller's side).

The baseline, measured in the same run on the same values and the same
per-customer ``AESGCM`` objects: bare ``AESGCM.encrypt`` with a fresh 12-byte
nonce from ``os.urandom`` and a fixed short AAD, storing ``nonce + ciphertext``;
bare ``decrypt`` splits the nonce off again. That is the least any sealing must
do. Outpost adds the header, the per-field AAD and the checks on open.
Ratio = Outpost's time per field / the baseline's (target <= 1.5). Each phase
runs ``--rounds`` times, interleaved; the best round counts.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crypto.keys import DataKey  # noqa: E402
from crypto.seal import FieldContext, open_field, seal_field  # noqa: E402

FIELDS = 10
BARE_AAD = b"customers"
TARGET = 1.5

Item = tuple[DataKey, FieldContext, bytes]

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
_PLACES = ["北京市朝阳区建国路", "上海市浦东新区世纪大道", "广州市天河区天河路", "成都市武侯区人民南路",
           "杭州市西湖区文三路", "武汉市洪山区珞喻路", "西安市雁塔区长安南路", "南京市鼓楼区中山北路"]
_EMPLOYERS = ["中国移动通信集团", "华为技术有限公司", "国家电网", "招商银行股份有限公司", "个体经营", "某某科技有限公司"]
_POSITIONS = ["客户经理", "高级工程师", "财务主管", "销售代表", "退休人员", "中学教师"]
_NOTES = ["prefers calls after 18:00", "投诉过宽带故障，已处理", "VIP, speak Cantonese", "请勿在午休时间来电",
          "moved to new address", "家中有老人，需上门服务"]
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def pii_values(rnd: random.Random) -> list[tuple[str, bytes]]:
    """The 10 PII fields of one customer, as the UTF-8 bytes that get sealed."""
    name = rnd.choice(_SURNAMES) + "".join(rnd.choices(_GIVEN, k=rnd.randint(2, 3)))
    values = [
        ("name", name),
        ("phone", f"1{rnd.choice('3456789')}{rnd.randrange(10**9):09d}"),
        ("second_contact", rnd.choice(["0", "1"]) + f"{rnd.randrange(10**10):010d}"),
        ("id_number", f"{rnd.randrange(110000, 659000)}{rnd.randint(1940, 2005)}{rnd.randint(1, 12):02d}"
                      f"{rnd.randint(1, 28):02d}{rnd.randrange(1000):03d}{rnd.choice('0123456789X')}"),
        ("birthday", f"{rnd.randint(1940, 2005)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"),
        ("address", f"{rnd.choice(_PLACES)}{rnd.randint(1, 999)}号"),
        ("employer", rnd.choice(_EMPLOYERS)),
        ("position", rnd.choice(_POSITIONS)),
        ("email", f"user{rnd.randrange(10**6)}@{rnd.choice(['qq.com', '163.com', 'example.cn'])}"),
        ("notes", rnd.choice(_NOTES)),
    ]
    return [(field, text.encode()) for field, text in values]


def workload(customers: int, seed: int = 7) -> list[Item]:
    """(key, context, value) for every field of every customer; one DataKey per customer."""
    rnd = random.Random(seed)
    items: list[Item] = []
    for _ in range(customers):
        row_id = "".join(rnd.choices(_CROCKFORD, k=26))
        key = DataKey(os.urandom(32), 1)
        for field, value in pii_values(rnd):
            items.append((key, FieldContext("customers", row_id, field, 1), value))
    return items


def ours_seal(items: list[Item]) -> tuple[float, list[bytes]]:
    out: list[bytes] = []
    append, seal = out.append, seal_field
    start = time.perf_counter()
    for key, ctx, value in items:
        append(seal(key, ctx, value))
    return time.perf_counter() - start, out


def bare_seal(items: list[Item]) -> tuple[float, list[bytes]]:
    out: list[bytes] = []
    append, urandom, aad = out.append, os.urandom, BARE_AAD
    start = time.perf_counter()
    for key, _ctx, value in items:
        nonce = urandom(12)
        append(nonce + key.cipher.encrypt(nonce, value, aad))
    return time.perf_counter() - start, out


def ours_open(items: list[Item], sealed: list[bytes]) -> tuple[float, list[bytes]]:
    out: list[bytes] = []
    append, open_ = out.append, open_field
    start = time.perf_counter()
    for (key, ctx, _value), s in zip(items, sealed):
        append(open_(key, ctx, s))
    return time.perf_counter() - start, out


def bare_open(items: list[Item], sealed: list[bytes]) -> tuple[float, list[bytes]]:
    out: list[bytes] = []
    append, aad = out.append, BARE_AAD
    start = time.perf_counter()
    for (key, _ctx, _value), s in zip(items, sealed):
        append(key.cipher.decrypt(s[:12], s[12:], aad))
    return time.perf_counter() - start, out


def line(label: str, n: int, seconds: float) -> str:
    return f"  {label:<38} {n / seconds:>12,.0f} fields/s  ({seconds / n * 1e9:,.0f} ns/field)"


def ratio_line(label: str, ours: float, bare: float) -> str:
    ratio = ours / bare
    return f"  {label:<38} {ratio:>12.2f}x  (target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each phase; the best counts")
    args = parser.parse_args()
    items = workload(args.customers)
    n = len(items)
    sizes = [len(value) for _, _, value in items]
    values = [value for _, _, value in items]
    times: dict[str, list[float]] = {"bare_seal": [], "ours_seal": [], "bare_open": [], "ours_open": []}
    for _ in range(args.rounds):
        seconds, bare_sealed = bare_seal(items)
        times["bare_seal"].append(seconds)
        seconds, ours_sealed = ours_seal(items)
        times["ours_seal"].append(seconds)
        seconds, bare_opened = bare_open(items, bare_sealed)
        times["bare_open"].append(seconds)
        seconds, ours_opened = ours_open(items, ours_sealed)
        times["ours_open"].append(seconds)
        assert bare_opened == values and ours_opened == values, "a value did not round-trip"
        del bare_sealed, ours_sealed, bare_opened, ours_opened
    t = {name: min(seconds) for name, seconds in times.items()}
    print(f"seal: {args.customers:,} customers x {FIELDS} fields = {n:,} values of {min(sizes)}-{max(sizes)} bytes "
          f"(mean {sum(sizes) / n:.1f}), best of {args.rounds}")
    print(line("bare AESGCM.encrypt (nonce + ct)", n, t["bare_seal"]))
    print(line("outpost seal_field", n, t["ours_seal"]))
    print(line("bare AESGCM.decrypt (split nonce)", n, t["bare_open"]))
    print(line("outpost open_field", n, t["ours_open"]))
    print(ratio_line("ratio seal: outpost / bare", t["ours_seal"], t["bare_seal"]))
    print(ratio_line("ratio open: outpost / bare", t["ours_open"], t["bare_open"]))


if __name__ == "__main__":
    main()
