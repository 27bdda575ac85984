"""A do-not-call and a consent withdrawal win every merge (issue 6, item 3).

Through the real edit and merge code (`sync.edits.edit_state`, `sync.merge`), on
the real fields (``customers.suppression``, the ``consents`` record):

* **Suppression is add-wins.** Three nodes add and remove suppression reasons,
  replace the whole set (an import does: ``set``), and merge each other's states
  in any order. A reason is present at the end exactly when one of its adds was
  observed by no remove, whichever node removed and why: a rule or an import
  that did not see an add cannot take it away. The states themselves, delivered
  in any order and any number of times, join to the same bytes.
* **A remove that observed the add does take the reason off.** That is the
  decision, and it is right: lifting a do-not-call (or a marketing consent given
  again, `server.consents.suppression_edits`) is the person's own request,
  recorded after the do-not-call was seen. A remove can only tombstone the add
  dots its node held, so it never reaches an add it had not seen.
* **A consent record is never lost or changed by a merge.** Records written at
  any node, delivered in any order with duplicates, each arrive whole with the
  values written; a later write of another value to a record (flipping a
  withdrawal to a grant) never stands, whatever order it arrives in.
"""

from __future__ import annotations

import random
import typing
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.edits import Edit, edit_state
from sync.hlc import pack
from sync.merge import Applied, FieldState, Refused, encode_value, join, materialize, merge_field
from sync.schema import COLLECTIONS, ConsentChannel, ConsentPurpose, Suppression

SUPPRESSION = COLLECTIONS["customers"].fields["suppression"]
CONSENT = COLLECTIONS["consents"].fields
NODES = ("hq", "branch-a", "branch-b")
REASONS: tuple[str, ...] = typing.get_args(Suppression)
ROW = "01M84BWR790000000000000001"

_op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(NODES), st.sampled_from(REASONS)),
    st.tuples(st.just("remove"), st.sampled_from(NODES), st.sampled_from(REASONS)),
    st.tuples(st.just("set"), st.sampled_from(NODES), st.frozensets(st.sampled_from(REASONS))),
    st.tuples(st.just("merge"), st.sampled_from(NODES), st.sampled_from(NODES)),
)


class World:
    """Three nodes' suppression states, and what each node has observed: the add
    dots it knows of, for the ground truth a remove is judged by."""

    def __init__(self) -> None:
        self.state: dict[str, FieldState | None] = dict.fromkeys(NODES)
        self.known: dict[str, set[tuple[str, tuple[int, str]]]] = {n: set() for n in NODES}
        self.adds: set[tuple[str, tuple[int, str]]] = set()
        self.observed_by_removes: set[tuple[str, tuple[int, str]]] = set()
        #: every state a node held: what a batch may carry, any number of times
        self.sent: list[FieldState] = []
        self.step = 0

    def _write(self, node: str, edit: Edit) -> None:
        self.step += 1
        stamp = pack(1_000 + self.step, 0)
        before = self.state[node]
        live_before = self._live(node, before)
        self.state[node] = edit_state(SUPPRESSION, before, edit, stamp, node)
        live_after = self._live(node, self.state[node])
        for reason in live_after - live_before:  # an add: a fresh dot
            self.adds.add((reason, (stamp, node)))
            self.known[node].add((reason, (stamp, node)))
        for reason in live_before - live_after:  # a remove observes every add of it the node knows
            self.observed_by_removes.update(d for d in self.known[node] if d[0] == reason)
        self.sent.append(self.state[node])  # type: ignore[arg-type]

    @staticmethod
    def _live(node: str, state: FieldState | None) -> frozenset[str]:
        return frozenset() if state is None else materialize(SUPPRESSION, state.raw)

    def apply(self, op: tuple[Any, ...]) -> None:
        kind, node, arg = op
        if kind == "add":
            # a re-add of a present reason adds a fresh dot too (edit_state does)
            self.step += 1
            stamp = pack(1_000 + self.step, 0)
            self.state[node] = edit_state(SUPPRESSION, self.state[node], Edit("customers", ROW, "suppression", "add", arg),
                                          stamp, node)
            self.adds.add((arg, (stamp, node)))
            self.known[node].add((arg, (stamp, node)))
            self.sent.append(self.state[node])  # type: ignore[arg-type]
        elif kind == "remove":
            self._write(node, Edit("customers", ROW, "suppression", "remove", arg))
        elif kind == "set":
            self._write(node, Edit("customers", ROW, "suppression", "set", sorted(arg)))
        else:
            source, target = node, arg
            incoming = self.state[source]
            if incoming is None or source == target:
                return
            self.state[target] = join(SUPPRESSION, self.state[target], incoming)
            self.known[target] |= self.known[source]
            self.sent.append(self.state[target])  # type: ignore[arg-type]

    def expected(self) -> frozenset[str]:
        """Present: a reason with an add no remove observed."""
        return frozenset(reason for reason, dot in self.adds - self.observed_by_removes)


def fold(states: list[FieldState]) -> FieldState | None:
    out: FieldState | None = None
    for state in states:
        out = join(SUPPRESSION, out, state)
    return out


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(_op, max_size=30), seed=st.randoms(use_true_random=False), dupes=st.integers(0, 10))
def test_a_reason_is_present_iff_some_add_was_observed_by_no_remove(ops: list, seed: random.Random,
                                                                    dupes: int) -> None:
    world = World()
    for op in ops:
        world.apply(op)
    if not world.sent:
        return
    final = fold(world.sent)
    assert final is not None
    assert materialize(SUPPRESSION, final.raw) == world.expected()
    # any delivery: reordered, duplicated; the same bytes at the end
    shuffled = list(world.sent) + [seed.choice(world.sent) for _ in range(dupes)]
    seed.shuffle(shuffled)
    again = fold(shuffled)
    assert again == final
    # and every node, after receiving everything, holds it too
    for node in NODES:
        assert fold([s for s in (world.state[node],) if s is not None] + shuffled) == final


@settings(max_examples=200, deadline=None)
@given(
    reason=st.sampled_from(REASONS),
    remover=st.sampled_from(NODES[1:]),
    how=st.sampled_from(("remove", "set_empty", "set_other")),
    before=st.lists(st.tuples(st.sampled_from(("add", "remove")), st.sampled_from(REASONS)), max_size=5),
    adder_first=st.booleans(),
)
def test_an_add_survives_a_concurrent_rule_or_import_removal(reason: str, remover: str, how: str,
                                                             before: list, adder_first: bool) -> None:
    """From a shared base, HQ adds ``reason`` (a do-not-call) while another node,
    not having seen it, takes ``reason`` off by a rule (``remove``) or by an
    import that replaces the set: the reason is there after the merge, in either
    order, at both nodes."""
    base: FieldState | None = None
    for i, (kind, r) in enumerate(before):
        base = edit_state(SUPPRESSION, base, Edit("customers", ROW, "suppression", kind, r), pack(900, i), "hq")
    edit = {
        "remove": Edit("customers", ROW, "suppression", "remove", reason),
        "set_empty": Edit("customers", ROW, "suppression", "set", []),
        "set_other": Edit("customers", ROW, "suppression", "set", [r for r in REASONS if r != reason]),
    }[how]
    stamps = (pack(1_000, 0), pack(1_000, 1)) if adder_first else (pack(1_000, 1), pack(1_000, 0))
    added = edit_state(SUPPRESSION, base, Edit("customers", ROW, "suppression", "add", reason), stamps[0], "hq")
    removed = edit_state(SUPPRESSION, base, edit, stamps[1], remover)
    for a, b in ((added, removed), (removed, added)):
        merged = join(SUPPRESSION, a, b)
        assert merged is not None and reason in materialize(SUPPRESSION, merged.raw)


def test_a_remove_that_observed_the_add_lifts_it() -> None:
    """The decision, as an example: the person asks to lift the do-not-call at a
    branch that holds it; the lift wins over the add it saw, everywhere."""
    added = edit_state(SUPPRESSION, None, Edit("customers", ROW, "suppression", "add", "do_not_call"), pack(1_000, 0), "hq")
    lifted = edit_state(SUPPRESSION, added, Edit("customers", ROW, "suppression", "remove", "do_not_call"),
                        pack(1_001, 0), "branch-a")
    for a, b in ((added, lifted), (lifted, added)):
        merged = join(SUPPRESSION, a, b)
        assert merged is not None and materialize(SUPPRESSION, merged.raw) == frozenset()
    # a new do-not-call after the lift is a new add: it stands against the old lift
    again = edit_state(SUPPRESSION, added, Edit("customers", ROW, "suppression", "add", "do_not_call"), pack(1_002, 0), "hq")
    merged = join(SUPPRESSION, lifted, again)
    assert merged is not None and materialize(SUPPRESSION, merged.raw) == frozenset({"do_not_call"})


# ---------------------------------------------------------------- consents

_record = st.fixed_dictionaries({
    "purpose": st.sampled_from(typing.get_args(ConsentPurpose)),
    "granted": st.booleans(),
    "channel": st.sampled_from(typing.get_args(ConsentChannel)),
    "at_ms": st.integers(1_600_000_000_000, 1_800_000_000_000),
    "site": st.sampled_from(NODES),
})


@settings(max_examples=200, deadline=None)
@given(records=st.lists(_record, min_size=1, max_size=8), flips=st.lists(st.integers(0, 7), max_size=6),
       seed=st.randoms(use_true_random=False), dupes=st.integers(0, 20))
def test_a_consent_record_is_never_lost_or_changed_by_a_merge(records: list[dict[str, Any]], flips: list[int],
                                                              seed: random.Random, dupes: int) -> None:
    """Each record is a row of its own (a fresh id), written once at its node; a
    later write of the opposite ``granted`` to a record (a withdrawal flipped to
    a grant, or back) travels too. Whatever the order and the duplicates, every
    record ends with the values written first: a flip arriving after the record
    is refused, one arriving before it gives way to it."""
    batches: list[tuple[str, str, FieldState]] = []  # (row, field, state)
    written: dict[str, dict[str, Any]] = {}
    for i, record in enumerate(records):
        row = f"01M84BWR79000000000000K{i:03d}"
        values = {"customer_id": ROW, "recorded_by": "u1", **record}
        written[row] = values
        for name, value in values.items():
            batches.append((row, name, FieldState(encode_value(value), pack(2_000 + i, 0), record["site"])))
    for j, target in enumerate(flips):
        if target >= len(records):
            continue
        row = f"01M84BWR79000000000000K{target:03d}"
        value = not written[row]["granted"]
        batches.append((row, "granted", FieldState(encode_value(value), pack(3_000 + j, 0), seed.choice(NODES))))
    delivery = batches + [seed.choice(batches) for _ in range(dupes)]
    seed.shuffle(delivery)
    held: dict[tuple[str, str], FieldState] = {}
    for row, name, state in delivery:
        outcome = merge_field(CONSENT[name], held.get((row, name)), state)
        if isinstance(outcome, Applied):
            held[(row, name)] = outcome.state
        elif isinstance(outcome, Refused):
            assert outcome.reason == "append_only"
    for row, values in written.items():
        for name, value in values.items():
            assert materialize(CONSENT[name], held[(row, name)].raw) == value, (row, name)
