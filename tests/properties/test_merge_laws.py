"""Merge laws for every merge type, on the state a store would keep (raw, hlc, origin)."""

from __future__ import annotations

import pytest
from hypothesis import assume, find, given
from hypothesis import strategies as st

from sync.merge import (
    Applied,
    CorruptStateError,
    FieldState,
    Refused,
    Superseded,
    decode_set,
    encode_set,
    encode_value,
    join,
    join_sets,
    materialize,
    merge_field,
    set_add,
    set_members,
    set_remove,
)
from sync.schema import MERGE_TYPES
from tests.properties.strategies import (
    HLCS,
    ORIGINS,
    REGISTERS,
    REPRESENTATIVES,
    TAGS,
    consistent_states,
    corrupt_pair,
    key,
    stamps,
    tied_pair,
    values,
)

every_type = pytest.mark.parametrize("merge_type", MERGE_TYPES)
registers = pytest.mark.parametrize("merge_type", sorted(REGISTERS))


def test_every_merge_type_has_a_representative() -> None:
    """A merge type added to the schema without a representative here fails."""
    assert set(REPRESENTATIVES) == set(MERGE_TYPES)
    assert all(spec.merge == t for t, spec in REPRESENTATIVES.items())
    assert REGISTERS < set(MERGE_TYPES)


@every_type
@given(data=st.data())
def test_states_are_valid_and_canonical(merge_type: str, data: st.DataObject) -> None:
    """Generated states decode with their field's type and are already canonical."""
    spec = REPRESENTATIVES[merge_type]
    for s in data.draw(consistent_states(spec, 3)):
        assert encode_value(spec.decoder.decode(s.raw)) == s.raw
        assert s.origin in ORIGINS


@every_type
@given(data=st.data())
def test_join_is_commutative(merge_type: str, data: st.DataObject) -> None:
    spec = REPRESENTATIVES[merge_type]
    a, b = data.draw(consistent_states(spec, 2))
    assert key(join(spec, a, b)) == key(join(spec, b, a))


@every_type
@given(data=st.data())
def test_join_is_associative(merge_type: str, data: st.DataObject) -> None:
    spec = REPRESENTATIVES[merge_type]
    a, b, c = data.draw(consistent_states(spec, 3))
    assert key(join(spec, join(spec, a, b), c)) == key(join(spec, a, join(spec, b, c)))


@every_type
@given(data=st.data())
def test_join_is_idempotent(merge_type: str, data: st.DataObject) -> None:
    """Joining a state with itself, or with a state already joined in, changes nothing."""
    spec = REPRESENTATIVES[merge_type]
    a, b = data.draw(consistent_states(spec, 2))
    assert key(join(spec, a, a)) == key(a)
    assert key(join(spec, None, a)) == key(a) == key(join(spec, a, None))
    ab = join(spec, a, b)
    assert key(join(spec, ab, b)) == key(ab) == key(join(spec, ab, a))


@every_type
@given(data=st.data())
def test_applied_never_goes_down(merge_type: str, data: st.DataObject) -> None:
    """An Applied state covers both inputs: merging either again changes nothing."""
    spec = REPRESENTATIVES[merge_type]
    current, incoming = data.draw(consistent_states(spec, 2))
    outcome = merge_field(spec, current, incoming)
    assert not isinstance(outcome, Refused) or (merge_type == "append_only" and outcome.reason == "append_only")
    if not isinstance(outcome, Applied):
        assert key(join(spec, current, incoming)) == key(current)
        return
    new = outcome.state
    assert key(new) != key(current)
    assert isinstance(merge_field(spec, new, incoming), Superseded)
    again = merge_field(spec, new, current)
    if merge_type == "append_only" and current.raw != new.raw:
        assert again == Refused("append_only")  # a later write of another value
    else:
        assert isinstance(again, Superseded)


@registers
@given(data=st.data())
def test_shared_stamp_with_two_values_is_corrupt(merge_type: str, data: st.DataObject) -> None:
    """Same (hlc, origin), different values: refused in both directions, join raises."""
    spec = REPRESENTATIVES[merge_type]
    a, b = data.draw(corrupt_pair(spec))
    assert merge_field(spec, a, b) == Refused("corrupt")
    assert merge_field(spec, b, a) == Refused("corrupt")
    with pytest.raises(CorruptStateError):
        join(spec, a, b)


@pytest.mark.parametrize("merge_type", ["add_wins_set", "counter"])
@given(data=st.data())
def test_merged_types_join_contents_under_a_shared_stamp(merge_type: str, data: st.DataObject) -> None:
    """A set or counter state carries the greatest stamp merged into it, so two
    different contents legitimately share one: they are joined, not refused."""
    spec = REPRESENTATIVES[merge_type]
    a, b = data.draw(consistent_states(spec, 2))
    assume(a.raw != b.raw)
    top = max((a.hlc, a.origin), (b.hlc, b.origin))
    a2, b2 = FieldState(a.raw, *top), FieldState(b.raw, *top)
    assert not isinstance(merge_field(spec, a2, b2), Refused)
    joined = join(spec, a2, b2)
    assert joined is not None and (joined.hlc, joined.origin) == top
    assert joined.raw == join(spec, a, b).raw  # type: ignore[union-attr]


@given(pair=tied_pair(REPRESENTATIVES["lww"]))
def test_lww_tie_goes_to_greater_origin_whatever_the_values(pair: tuple[FieldState, FieldState]) -> None:
    spec = REPRESENTATIVES["lww"]
    a, b = pair
    winner = max(a, b, key=lambda s: s.origin)
    assert key(join(spec, a, b)) == key(join(spec, b, a)) == key(winner)


@registers
@given(data=st.data())
def test_values_never_break_ties(merge_type: str, data: st.DataObject) -> None:
    """Swapping the values of two tied states (same hlc, other origins) keeps the
    winning stamp, except where the value *is* the order (a lattice's rank)."""
    spec = REPRESENTATIVES[merge_type]
    a, b = data.draw(tied_pair(spec))
    swapped_a, swapped_b = FieldState(b.raw, a.hlc, a.origin), FieldState(a.raw, b.hlc, b.origin)
    win = join(spec, a, b)
    win_swapped = join(spec, swapped_a, swapped_b)
    assert win is not None and win_swapped is not None
    if merge_type in ("lww", "append_only") or a.raw == b.raw:
        assert win.origin == win_swapped.origin
        expected = max if merge_type != "append_only" else min
        assert win.origin == expected(a.origin, b.origin)
    else:  # status lattice and tombstone: the higher value wins whatever the origin
        assert win.raw == win_swapped.raw


@given(first=stamps, later=stamps, v1=values(REPRESENTATIVES["append_only"]), v2=values(REPRESENTATIVES["append_only"]))
def test_append_only_first_write_wins(
    first: tuple[int, str], later: tuple[int, str], v1: object, v2: object
) -> None:
    """The smallest (hlc, origin) stays; a later different value is refused."""
    assume(first < later)
    spec = REPRESENTATIVES["append_only"]
    a, b = FieldState(encode_value(v1), *first), FieldState(encode_value(v2), *later)
    assert merge_field(spec, b, a) == Applied(a)
    if a.raw != b.raw:
        assert merge_field(spec, a, b) == Refused("append_only")
    else:
        assert isinstance(merge_field(spec, a, b), Superseded)
    assert key(join(spec, a, b)) == key(join(spec, b, a)) == key(a)


@pytest.mark.parametrize("merge_type", ["status_lattice", "tombstone"])
@given(data=st.data())
def test_lattice_never_moves_backwards(merge_type: str, data: st.DataObject) -> None:
    """The joined value has the greater rank whatever the stamps (delete wins)."""
    spec = REPRESENTATIVES[merge_type]
    order = spec.lattice if spec.lattice is not None else (False, True)
    current, incoming = data.draw(consistent_states(spec, 2))
    rank = {v: i for i, v in enumerate(order)}
    r_cur, r_in = rank[spec.decoder.decode(current.raw)], rank[spec.decoder.decode(incoming.raw)]
    joined = join(spec, current, incoming)
    assert joined is not None and rank[spec.decoder.decode(joined.raw)] == max(r_cur, r_in)
    if r_in < r_cur:
        assert isinstance(merge_field(spec, current, incoming), Superseded)


def _set_state(entries: dict, hlc: int, origin: str) -> FieldState:
    return FieldState(encode_set(entries), hlc, origin)


@given(
    history=st.lists(st.tuples(st.booleans(), st.sampled_from(TAGS), stamps), max_size=6),
    elem=st.sampled_from(TAGS),
    add_stamp=stamps,
    remove_stamp=stamps,
)
def test_add_wins_over_concurrent_remove(history: list, elem: str, add_stamp: tuple, remove_stamp: tuple) -> None:
    """From a shared base, one node removes ``elem`` while another adds it with a
    fresh dot: the element survives the join, in either order. A remove that had
    seen the add does remove it."""
    spec = REPRESENTATIVES["add_wins_set"]
    base: dict = {}
    for is_add, tag, dot in history:
        base = set_add(base, tag, dot) if is_add else set_remove(base, tag)
    fresh = (max(HLCS) + 1, add_stamp[1])  # newer than every dot of the base
    added = set_add(base, elem, fresh)
    removed = set_remove(base, elem)
    a, r = _set_state(added, *fresh), _set_state(removed, *remove_stamp)
    for joined in (join(spec, a, r), join(spec, r, a)):
        assert joined is not None and elem in materialize(spec, joined.raw)
    seen_then_removed = _set_state(set_remove(added, elem), fresh[0] + 1, remove_stamp[1])
    joined = join(spec, a, seen_then_removed)
    assert joined is not None and elem not in materialize(spec, joined.raw)


@given(data=st.data())
def test_set_members_are_the_dots_no_side_removed(data: st.DataObject) -> None:
    """An element is present after a join iff some add dot is live and removed on neither side."""
    spec = REPRESENTATIVES["add_wins_set"]
    a, b = data.draw(consistent_states(spec, 2))
    ea, eb = decode_set(a.raw, spec.decoder.decode), decode_set(b.raw, spec.decoder.decode)
    removed = {e: ea.get(e, (set(), set()))[1] | eb.get(e, (set(), set()))[1] for e in ea.keys() | eb.keys()}
    expected = {e for e in removed if (ea.get(e, (set(), set()))[0] | eb.get(e, (set(), set()))[0]) - removed[e]}
    joined = join(spec, a, b)
    assert joined is not None
    assert materialize(spec, joined.raw) == expected == set_members(join_sets(ea, eb))


@given(data=st.data())
def test_counter_is_sum_of_per_node_maxima(data: st.DataObject) -> None:
    spec = REPRESENTATIVES["counter"]
    states = data.draw(consistent_states(spec, 3))
    joined = None
    for s in states:
        joined = join(spec, joined, s)
    counts = [spec.decoder.decode(s.raw) for s in states]
    nodes = set().union(*counts)
    assert joined is not None
    assert materialize(spec, joined.raw) == sum(max(c.get(n, 0) for c in counts) for n in nodes)
    assert all(materialize(spec, joined.raw) >= materialize(spec, s.raw) for s in states)


@every_type
def test_strategies_generate_ties(merge_type: str) -> None:
    """The stamp pools are small enough that equal HLCs under different origins occur."""
    spec = REPRESENTATIVES[merge_type]
    a, b = find(consistent_states(spec, 2), lambda s: s[0].hlc == s[1].hlc and s[0].origin != s[1].origin)
    assert a.hlc == b.hlc and a.origin != b.origin
