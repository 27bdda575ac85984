"""Rows as the store's tables hold them and as readers get them: WHERE clauses
over schema field names, projections to some columns, and materialization (a
column's stored form back to its value). Pure functions of the schema."""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterable
from typing import Any

import msgspec

from sync.schema import COLLECTIONS, Column

#: list-valued fields: their columns hold JSON arrays
LIST_FIELDS = frozenset(
    (c.name, f.name) for c in COLLECTIONS.values() for f in c.fields.values()
    if typing.get_origin(typing.get_args(f.annotation)[0] if typing.get_args(f.annotation) else f.annotation) is list
)


# the JSON arrays of set members and of IN lists: msgspec's codec, several times the stdlib's speed
json_decode, json_encode = msgspec.json.decode, msgspec.json.encode


def where(spec: Any, equals: dict[str, Any], any_of: tuple[str, ...] = ()) -> tuple[str, list[Any]]:
    """A WHERE clause over schema field names: each of ``equals`` (a collection value
    matches any member), and at least one of ``any_of`` not NULL."""
    unknown = sorted(n for n in (*equals, *any_of) if n not in spec.columns and n != "row_id")
    if unknown:
        raise KeyError(f"{spec.name} has no field {unknown[0]!r}")
    clauses, params = [], []
    for name, value in equals.items():
        if isinstance(value, list | tuple | set | frozenset):
            clauses.append(f"{name} IN (SELECT value FROM json_each(?))")
            params.append(json_encode(sorted(value)).decode())  # text: a BLOB would be read as JSONB
        else:
            clauses.append(f"{name} IS ?")
            params.append(int(value) if isinstance(value, bool) else value)
    if any_of:
        clauses.append("(" + " OR ".join(f"{n} IS NOT NULL" for n in any_of) + ")")
    return " AND ".join(clauses) or "1", params



def conversions(columns: Iterable[Column]) -> tuple[tuple[str, bool], ...]:
    """(name, holds JSON) of the columns whose stored form differs from their
    value: JSON arrays (set members, lists) and booleans stored as integers."""
    out = []
    for c in columns:
        if c.member is not None:
            continue
        if c.field.merge == "add_wins_set" or (c.field.collection, c.field.name) in LIST_FIELDS:
            out.append((c.name, True))
        elif c.sql_type == "INTEGER" and isinstance(c.field.default, bool):
            out.append((c.name, False))
    return tuple(out)


#: each collection's `conversions` over all its columns, worked out once
CONVERTED = {name: conversions(spec.columns.values()) for name, spec in COLLECTIONS.items()}


@functools.lru_cache(maxsize=64)
def projection(collection: str, fields: tuple[str, ...] | None) -> tuple[tuple[str, ...], tuple[tuple[str, bool], ...]]:
    """The columns to select (``row_id`` first) and their `conversions`: every
    column of ``collection``, or ``fields``; raises `KeyError` for a field it lacks."""
    spec = COLLECTIONS[collection]
    if fields is None:
        return ("row_id", *spec.columns), CONVERTED[collection]
    wanted = [f for f in dict.fromkeys(fields) if f != "row_id"]
    unknown = set(wanted) - set(spec.columns)
    if unknown:
        raise KeyError(f"{collection} has no field {sorted(unknown)[0]!r}")
    return ("row_id", *wanted), conversions(spec.columns[f] for f in wanted)


def materialize(converted: tuple[tuple[str, bool], ...], names: Iterable[str], row: Any) -> dict[str, Any]:
    """A row as {column: plain value} (a Struct-valued field appears as its
    members); ``converted``: the `conversions` of its columns."""
    out = dict(zip(names, row))
    for name, is_json in converted:
        value = out[name]
        if is_json:
            if value is not None:
                out[name] = json_decode(value)
        else:
            out[name] = bool(value)
    return out
