"""Merge rules: one pure function per merge type.

A field's replicated state is a `FieldState`: its value in canonical msgpack
(``raw``), the HLC stamp and the origin node of the write that produced it. Every
merge rule is a *join* of two states: commutative, associative and idempotent, so
replaying, duplicating or reordering batches changes nothing.

`merge_field` applies one incoming state to the current one and says what
happened: `Applied` (the stored state changed), `Superseded` (the incoming
state is already covered) or `Refused` (with a reason code).

Registers (``lww``, ``append_only``, ``status_lattice``, ``tombstone``) order
states by a key; ties on (HLC, origin) with different values are corrupt: one node
issued two values under one stamp, so no rule can pick one honestly, and the
change is refused. Values never break ties.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import msgspec

from sync.schema import FieldSpec

#: canonical encoding: deterministic key order, so equal states have equal bytes
_encoder = msgspec.msgpack.Encoder(order="deterministic")
encode_value = _encoder.encode


class FieldState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The replicated state of one field: canonical msgpack value, stamp, origin."""

    raw: bytes
    hlc: int
    origin: str


class Applied(msgspec.Struct, frozen=True):
    """The incoming state changed the stored one; ``state`` is what to store now."""

    state: FieldState


class Superseded(msgspec.Struct, frozen=True):
    """The incoming state is already covered by the stored one (older, or a duplicate)."""


class Refused(msgspec.Struct, frozen=True):
    """The incoming state was not merged; ``reason`` is a stable code."""

    reason: str


Outcome = Applied | Superseded | Refused
Merge = Callable[[FieldState | None, FieldState], Outcome]

SUPERSEDED = Superseded()
CORRUPT = Refused("corrupt")
APPEND_ONLY = Refused("append_only")


class CorruptStateError(ValueError):
    """Two states share (HLC, origin) but hold different values."""


# ---------------------------------------------------------------- registers


def merge_lww(current: FieldState | None, incoming: FieldState) -> Outcome:
    """Last writer wins: the greater (HLC, origin) wins."""
    if current is None:
        return Applied(incoming)
    if incoming.hlc != current.hlc:
        return Applied(incoming) if incoming.hlc > current.hlc else SUPERSEDED
    if incoming.origin != current.origin:
        return Applied(incoming) if incoming.origin > current.origin else SUPERSEDED
    return SUPERSEDED if incoming.raw == current.raw else CORRUPT


def merge_append_only(current: FieldState | None, incoming: FieldState) -> Outcome:
    """Written once: the first write, the smallest (HLC, origin), wins.

    A later write with another value is an edit of an immutable record and is
    refused; an earlier one replaces what was stored, so every node ends with the
    first write whatever order the changes arrive in.
    """
    if current is None:
        return Applied(incoming)
    key_in, key_cur = (incoming.hlc, incoming.origin), (current.hlc, current.origin)
    if key_in == key_cur:
        return SUPERSEDED if incoming.raw == current.raw else CORRUPT
    if key_in < key_cur:
        return Applied(incoming)
    return SUPERSEDED if incoming.raw == current.raw else APPEND_ONLY


def make_merge_lattice(order: tuple[Any, ...], decode: Callable[[bytes], Any]) -> Callable[
    [FieldState | None, FieldState], Outcome
]:
    """A status lattice over ``order`` (declared order, last is top): moves only forward.

    States are ordered by (rank of value, HLC, origin), so a status never moves
    backwards and equal statuses keep the latest stamp.
    """
    rank = {value: i for i, value in enumerate(order)}

    def merge_lattice(current: FieldState | None, incoming: FieldState) -> Outcome:
        if current is None:
            return Applied(incoming)
        if incoming.raw == current.raw:
            key_in, key_cur = (incoming.hlc, incoming.origin), (current.hlc, current.origin)
            return Applied(incoming) if key_in > key_cur else SUPERSEDED
        if incoming.hlc == current.hlc and incoming.origin == current.origin:
            return CORRUPT
        r_in, r_cur = rank[decode(incoming.raw)], rank[decode(current.raw)]
        return Applied(incoming) if r_in > r_cur else SUPERSEDED

    return merge_lattice


_decode_bool = msgspec.msgpack.Decoder(bool).decode
merge_tombstone = make_merge_lattice((False, True), _decode_bool)
merge_tombstone.__doc__ = "Deleted or not: ``True`` beats ``False`` whatever the stamps."


# ---------------------------------------------------------------- add-wins set
#
# An observed-remove set. Per element: the live dots (adds not yet removed) and
# the removed dots. A dot is the (HLC, origin) of one add. A remove tombstones
# only the dots it observed, so an add concurrent with it survives: add wins.
# Wire form: sorted [[element, [live dots], [removed dots]], ...].

SetEntries = dict[Any, tuple[frozenset[tuple[int, str]], frozenset[tuple[int, str]]]]


def decode_set(raw: bytes, decode: Callable[[bytes], Any]) -> SetEntries:
    return {
        elem: (frozenset(map(tuple, live)), frozenset(map(tuple, removed)))
        for elem, live, removed in decode(raw)
    }


def encode_set(entries: SetEntries) -> bytes:
    return encode_value(
        [
            (elem, sorted(live), sorted(removed))
            for elem, (live, removed) in sorted(entries.items())
        ]
    )


def set_members(entries: SetEntries) -> frozenset[Any]:
    """The elements present: those with at least one live dot."""
    return frozenset(elem for elem, (live, _) in entries.items() if live)


def join_sets(a: SetEntries, b: SetEntries) -> SetEntries:
    out: SetEntries = {}
    for elem in a.keys() | b.keys():
        live_a, rem_a = a.get(elem, (frozenset(), frozenset()))
        live_b, rem_b = b.get(elem, (frozenset(), frozenset()))
        removed = rem_a | rem_b
        out[elem] = ((live_a | live_b) - removed, removed)
    return out


def set_add(entries: SetEntries, elem: Any, dot: tuple[int, str]) -> SetEntries:
    """Add ``elem`` with a fresh dot (the local write's stamp and node)."""
    out = dict(entries)
    live, removed = out.get(elem, (frozenset(), frozenset()))
    out[elem] = (live | {dot}, removed)
    return out


def set_remove(entries: SetEntries, elem: Any) -> SetEntries:
    """Remove ``elem``: tombstone every dot observed here, and only those."""
    out = dict(entries)
    live, removed = out.get(elem, (frozenset(), frozenset()))
    out[elem] = (frozenset(), removed | live)
    return out


def _max_stamp(a: FieldState, b: FieldState) -> tuple[int, str]:
    return max((a.hlc, a.origin), (b.hlc, b.origin))


def _make_merge_join(join_raw: Callable[[bytes, bytes], bytes]) -> Merge:
    """A merge for states that are joins of contributions (sets, counters): the
    contents join, the stamp is the greater of the two."""

    def merge_join(current: FieldState | None, incoming: FieldState) -> Outcome:
        if current is None:
            return Applied(incoming)
        if incoming.raw == current.raw:
            if (incoming.hlc, incoming.origin) > (current.hlc, current.origin):
                return Applied(incoming)
            return SUPERSEDED
        joined = join_raw(current.raw, incoming.raw)
        hlc, origin = _max_stamp(current, incoming)
        if joined == current.raw and (hlc, origin) == (current.hlc, current.origin):
            return SUPERSEDED
        return Applied(FieldState(joined, hlc, origin))

    return merge_join


def make_merge_set(decode: Callable[[bytes], Any]) -> Merge:
    return _make_merge_join(lambda a, b: encode_set(join_sets(decode_set(a, decode), decode_set(b, decode))))


# ---------------------------------------------------------------- per-node counter
# Each node owns its own count and only ever raises it; the value is the sum.
# Wire form: {node: count}.


def counter_value(counts: dict[str, int]) -> int:
    return sum(counts.values())


def join_counters(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {node: max(a.get(node, 0), b.get(node, 0)) for node in a.keys() | b.keys()}


def counter_add(counts: dict[str, int], node: str, by: int = 1) -> dict[str, int]:
    if by < 0:
        raise ValueError("a counter only grows; record a correction as its own field")
    out = dict(counts)
    out[node] = out.get(node, 0) + by
    return out


def make_merge_counter(decode: Callable[[bytes], Any]) -> Merge:
    return _make_merge_join(lambda a, b: encode_value(join_counters(decode(a), decode(b))))


# ---------------------------------------------------------------- dispatch


@functools.cache
def merge_for(spec: FieldSpec) -> Merge:
    """The merge function of a field, from its declared merge type (built once per field)."""
    decode = spec.decoder.decode
    match spec.merge:
        case "lww":
            return merge_lww
        case "append_only":
            return merge_append_only
        case "status_lattice":
            assert spec.lattice is not None
            return make_merge_lattice(spec.lattice, decode)
        case "tombstone":
            return merge_tombstone
        case "add_wins_set":
            return make_merge_set(decode)
        case "counter":
            return make_merge_counter(decode)
    raise AssertionError(f"no merge for {spec.merge}")


def merge_field(spec: FieldSpec, current: FieldState | None, incoming: FieldState) -> Outcome:
    """Merge one incoming field state into the current one (pure; no I/O)."""
    return merge_for(spec)(current, incoming)


def join(spec: FieldSpec, a: FieldState | None, b: FieldState | None) -> FieldState | None:
    """The state after merging ``a`` and ``b`` in either order.

    Raises `CorruptStateError` when they share a stamp and origin but differ.
    """
    if b is None:
        return a
    outcome = merge_field(spec, a, b)
    if isinstance(outcome, Applied):
        return outcome.state
    if isinstance(outcome, Refused) and outcome.reason == "corrupt":
        raise CorruptStateError(f"{spec.collection}.{spec.name}: two values under one stamp")
    return a


def materialize(spec: FieldSpec, raw: bytes) -> Any:
    """The plain value of a field state: set members, counter sum, or the value itself."""
    value = spec.decoder.decode(raw)
    if spec.merge == "add_wins_set":
        return frozenset(elem for elem, live, _ in value if live)
    if spec.merge == "counter":
        return counter_value(value)
    return value
