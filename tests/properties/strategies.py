"""Hypothesis strategies for field states, one representative field per merge type.

Stamps come from a small pool of HLC values and origins, so that equal stamps,
and equal HLCs under different origins, are common. `consistent_states` never
pairs one (hlc, origin) with two values (a corrupt pair, on which no join law
can hold); `corrupt_pair` builds exactly that pair, for the tests that expect
it to be refused. Sets and counters are built only by local operations and
joins from the empty state, so every state they yield is reachable.
"""

from __future__ import annotations

import typing
from typing import Any

from hypothesis import strategies as st

from sync.hlc import Clock, pack
from sync.merge import (
    FieldState,
    counter_add,
    encode_set,
    encode_value,
    join_counters,
    join_sets,
    set_add,
    set_remove,
)
from sync.schema import COLLECTIONS, CallOutcome, FieldSpec

ORIGINS = ("branch-a", "branch-b", "hq")
HLCS = (pack(1_000, 0), pack(1_000, 1), pack(1_000, 2), pack(1_001, 0))
TAGS = ("vip", "gold", "churn-risk")

#: one field per merge type; a test fails if a merge type has none
REPRESENTATIVES: dict[str, FieldSpec] = {
    "lww": COLLECTIONS["customers"].fields["star_level"],
    "add_wins_set": COLLECTIONS["customers"].fields["tags"],
    "status_lattice": COLLECTIONS["tasks"].fields["status"],
    "counter": COLLECTIONS["tasks"].fields["attempts"],
    "append_only": COLLECTIONS["results"].fields["outcome"],
    "tombstone": COLLECTIONS["customers"].fields["deleted"],
}
#: merge types that order whole values by a key; a shared stamp with two values is corrupt
REGISTERS = frozenset({"lww", "append_only", "status_lattice", "tombstone"})

_VALUES: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("customers", "star_level"): st.integers(0, 7),
    ("tasks", "status"): st.sampled_from(COLLECTIONS["tasks"].fields["status"].lattice or ()),
    ("results", "outcome"): st.none() | st.sampled_from(typing.get_args(CallOutcome)),
    ("customers", "deleted"): st.booleans(),
}

stamps = st.tuples(st.sampled_from(HLCS), st.sampled_from(ORIGINS))


def values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Plain values the register field ``spec`` accepts."""
    return _VALUES[(spec.collection, spec.name)]


@st.composite
def _register_states(draw: st.DrawFn, spec: FieldSpec, n: int) -> list[FieldState]:
    world: dict[tuple[int, str], bytes] = {}  # one value per stamp: never corrupt
    out = []
    for _ in range(n):
        hlc, origin = draw(stamps)
        if (hlc, origin) not in world:
            world[(hlc, origin)] = encode_value(draw(values(spec)))
        out.append(FieldState(world[(hlc, origin)], hlc, origin))
    return out


_set_op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(ORIGINS), st.sampled_from(TAGS)),
    st.tuples(st.just("remove"), st.sampled_from(ORIGINS), st.sampled_from(TAGS)),
    st.tuples(st.just("join"), st.sampled_from(ORIGINS), st.sampled_from(ORIGINS)),
)
_counter_op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(ORIGINS), st.integers(1, 3)),
    st.tuples(st.just("join"), st.sampled_from(ORIGINS), st.sampled_from(ORIGINS)),
)


@st.composite
def _replicated_states(draw: st.DrawFn, spec: FieldSpec, n: int) -> list[FieldState]:
    """Replay random local operations and joins at a few nodes, each with its own
    HLC on one frozen wall clock (so concurrent writes share HLC values); pick
    ``n`` of the states the nodes passed through."""
    is_set = spec.merge == "add_wins_set"
    ops = draw(st.lists(_set_op if is_set else _counter_op, min_size=1, max_size=10))
    clocks = {o: Clock(lambda: 1_000, 10**9) for o in ORIGINS}
    content: dict[str, Any] = {o: {} for o in ORIGINS}
    state: dict[str, FieldState | None] = {o: None for o in ORIGINS}
    seen: list[FieldState] = []
    for kind, node, arg in ops:
        if kind == "join":
            other = state[arg]
            if other is None or arg == node:
                continue
            clocks[node].observe(other.hlc)
            join = join_sets if is_set else join_counters
            content[node] = join(content[node], content[arg])
            mine = state[node]
            hlc, origin = max((other.hlc, other.origin), (mine.hlc, mine.origin)) if mine else (other.hlc, other.origin)
        else:
            hlc, origin = clocks[node].send(), node
            if is_set:
                content[node] = (
                    set_add(content[node], arg, (hlc, node)) if kind == "add" else set_remove(content[node], arg)
                )
            else:
                content[node] = counter_add(content[node], node, arg)
        raw = encode_set(content[node]) if is_set else encode_value(content[node])
        state[node] = FieldState(raw, hlc, origin)
        seen.append(state[node])
    if not seen:  # only no-op joins: one fresh write
        hlc = clocks["hq"].send()
        seen.append(
            FieldState(encode_set(set_add({}, TAGS[0], (hlc, "hq"))), hlc, "hq")
            if is_set
            else FieldState(encode_value({"hq": 1}), hlc, "hq")
        )
    return [draw(st.sampled_from(seen)) for _ in range(n)]


def consistent_states(spec: FieldSpec, n: int) -> st.SearchStrategy[list[FieldState]]:
    """``n`` states of ``spec`` (repeats allowed) with no corrupt pair among them."""
    if spec.merge in REGISTERS:
        return _register_states(spec, n)
    return _replicated_states(spec, n)


@st.composite
def corrupt_pair(draw: st.DrawFn, spec: FieldSpec) -> tuple[FieldState, FieldState]:
    """Two states of a register field under one (hlc, origin) with different values."""
    hlc, origin = draw(stamps)
    a, b = draw(st.lists(values(spec), min_size=2, max_size=2, unique_by=encode_value))
    return FieldState(encode_value(a), hlc, origin), FieldState(encode_value(b), hlc, origin)


@st.composite
def tied_pair(draw: st.DrawFn, spec: FieldSpec) -> tuple[FieldState, FieldState]:
    """Two register states under one HLC and different origins, values drawn freely."""
    hlc = draw(st.sampled_from(HLCS))
    o1, o2 = draw(st.lists(st.sampled_from(ORIGINS), min_size=2, max_size=2, unique=True))
    v1, v2 = draw(values(spec)), draw(values(spec))
    return FieldState(encode_value(v1), hlc, o1), FieldState(encode_value(v2), hlc, o2)


def key(state: FieldState | None) -> tuple[bytes, int, str] | None:
    """What a store keeps of a state: compared by (raw, hlc, origin)."""
    return None if state is None else (state.raw, state.hlc, state.origin)
