"""Sync wire format: changes, messages and the frame that carries them (msgpack).

A `Frame` is what crosses the wire. It states the protocol and schema versions
in the clear, so a node that is behind can say so without reading the body, and
carries one message, optionally zlib-compressed:

    Frame = [protocol, schema, codec, body]
    body  = msgpack(PullRequest | ChangesPage | PushBatch | Ack)

Messages are maps tagged by ``kind``; `Change` records are arrays:

    Change = [collection, row_id, field, value, hlc, origin]

where ``value`` is the field's state in canonical msgpack (see `sync.merge`).
Schema evolution follows msgspec's rules: new fields get defaults and are only
appended; types never change. api_spec/sync-protocol.md documents the format for
client authors; api_spec/sync-wire.schema.json is generated from these Structs.
"""

from __future__ import annotations

import re
import zlib
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sync.errors import MalformedBatchError, OversizedBatchError, VersionMismatchError
from sync.ids import NodeIdStr, WireNodeId, WireRowId
from sync.schema import COLLECTIONS, SCHEMA_VERSION

PROTOCOL_VERSION = 1

CollectionName = Literal["customers", "tasks", "results", "campaigns", "users", "keys", "purge_receipts", "consents"]
assert set(CollectionName.__args__) == set(COLLECTIONS)  # type: ignore[attr-defined]

FieldName = Annotated[str, Meta(min_length=1, max_length=64)]
Stamp = Annotated[int, Meta(ge=0, le=(1 << 63) - 1)]
Seq = Annotated[int, Meta(ge=0)]
StoreId = Annotated[str, Meta(min_length=1, max_length=64)]
ScopeFingerprint = Annotated[str, Meta(max_length=64)]


class Change(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The state of one field of one row, as written at ``origin`` at ``hlc``.

    ``row_id`` and ``origin`` formats are checked by `sync.protocol.validate_changes`.
    """

    collection: CollectionName
    row_id: WireRowId
    field: FieldName
    value: msgspec.Raw
    hlc: Stamp
    origin: WireNodeId


CHANGE_FIELDS = ("collection", "row_id", "field", "value", "hlc", "origin")


class PullRequest(msgspec.Struct, tag="pull", tag_field="kind", frozen=True, kw_only=True):
    """Downstream asks for the upstream's field states stored after ``since``,
    reading rows after ``cursor`` (see `sync.protocol` for the two numbers)."""

    node: NodeIdStr
    store_id: StoreId | None = None
    since: Seq = 0
    cursor: Seq = 0
    limit: Annotated[int, Meta(ge=1, le=50_000)] = 5_000
    #: the requester's own store, so the upstream notices a rebuilt downstream
    node_store_id: StoreId | None = None
    #: the scope fingerprint of the last page the requester stored (see `ChangesPage.scope`)
    scope: ScopeFingerprint = ""
    #: the first request of a sync round: put the priority changes not yet
    #: delivered (suppression reasons, consent records) ahead of the page
    priority: bool = False


class RowDrop(msgspec.Struct, frozen=True, array_like=True):
    """A row the receiver must drop before storing the page's changes.

    ``purge``: the row left the receiver's scope; it deletes the row and its key
    records, and signs a purge receipt. ``reset``: the upstream refused the
    receiver's write to the row; it drops the row's states it has already pushed
    (keeping newer local writes) and gets the row whole again in this run.
    """

    collection: CollectionName
    row_id: WireRowId
    kind: Literal["purge", "reset"]


class ChangesPage(msgspec.Struct, tag="changes", tag_field="kind", frozen=True, kw_only=True):
    """One bounded page of changes. Pass ``since`` and ``cursor`` back to continue;
    when ``more`` is false the run is complete and ``cursor`` becomes the next ``since``."""

    node: NodeIdStr
    store_id: StoreId
    changes: list[Change]
    since: Seq
    cursor: Seq
    high: Seq
    more: bool
    now_ms: Stamp
    #: rows to drop first (only from an upstream that scopes rows)
    drops: list[RowDrop] = []
    #: the fingerprint of the scope this page was cut for; the requester sends it
    #: back, and a different one makes the upstream rescan every row for it
    scope: ScopeFingerprint = ""


class PushBatch(msgspec.Struct, tag="push", tag_field="kind", frozen=True, kw_only=True):
    """Downstream's own field states stored after ``since``, in its rows numbered
    (``from_seq``, ``to_seq``]; ``more`` is false on the last batch of a run."""

    node: NodeIdStr
    store_id: StoreId
    since: Seq
    from_seq: Seq
    to_seq: Seq
    changes: list[Change]
    more: bool = False


class RefusedChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A change of a push that was not merged: its index in the batch and a reason code."""

    index: int
    reason: str


class Ack(msgspec.Struct, tag="ack", tag_field="kind", frozen=True, kw_only=True):
    """Upstream's answer to a push: it now holds the batch, and records the sender's
    run as (``acked_since``, ``acked_through``)."""

    node: NodeIdStr
    store_id: StoreId
    acked_since: Seq
    acked_through: Seq
    applied: int
    superseded: int
    refused: list[RefusedChange] = []
    now_ms: Stamp = 0
    conflicts: int = 0


Message = PullRequest | ChangesPage | PushBatch | Ack

Codec = Literal["none", "zlib"]


class Frame(msgspec.Struct, frozen=True, array_like=True):
    """The envelope of every sync message; versions are readable without the body."""

    protocol: int
    schema: int
    codec: Codec
    body: bytes


_frame_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(Frame)
_message_decoder = msgspec.msgpack.Decoder(Message)
_message_encoder = msgspec.msgpack.Encoder()

#: frames smaller than this are not worth compressing
COMPRESS_MIN_BYTES = 1024


def encode_frame(message: Message, *, compress: bool = True, level: int = 1) -> bytes:
    body = _message_encoder.encode(message)
    codec: Codec = "none"
    if compress and len(body) >= COMPRESS_MIN_BYTES:
        body = zlib.compress(body, level)
        codec = "zlib"
    return _frame_encoder.encode(Frame(PROTOCOL_VERSION, SCHEMA_VERSION, codec, body))


_PATH = re.compile(r"\$\.changes\[(\d+)\]\[(\d+)\]")
_QUOTED = re.compile(r"""(Invalid enum value|Object contains unknown field|Invalid value) ['"`][^'"`]*['"`]""")


def describe_validation_error(exc: Exception, prefix: str = "") -> tuple[str, str]:
    """A value-free message and the JSON path of a msgspec decoding error.

    Array-like `Change` indices become field names (``$.changes[3][4]`` ->
    ``$.changes[3].hlc``), and enum and literal errors drop the value they echo.
    """
    text = str(exc)
    text = _QUOTED.sub(lambda m: m.group(1), text)
    text = _PATH.sub(
        lambda m: f"$.changes[{m.group(1)}].{CHANGE_FIELDS[int(m.group(2))] if int(m.group(2)) < len(CHANGE_FIELDS) else m.group(2)}",
        text,
    )
    reason, sep, where = text.rpartition(" - at `")
    if not sep:
        return text, prefix or "$"
    where = where.rstrip("`")
    if prefix:
        where = prefix + where[1:]
    return reason, where


def decode_frame(data: bytes, *, max_body_bytes: int) -> tuple[Message, int]:
    """Decode a frame into its message and the sender's schema version.

    Versions and size are checked before the body is read.
    Raises `VersionMismatchError` for a protocol or schema this node cannot read,
    `OversizedBatchError` when the body inflates beyond ``max_body_bytes``, and
    `MalformedBatchError` (with a JSON path) for anything that does not decode.
    """
    try:
        frame = _frame_decoder.decode(data)
    except msgspec.DecodeError as exc:
        reason, where = describe_validation_error(exc)
        raise MalformedBatchError(f"Not a sync frame: {reason}", where) from None
    if frame.protocol != PROTOCOL_VERSION:
        raise VersionMismatchError("protocol", PROTOCOL_VERSION, frame.protocol)
    if frame.schema > SCHEMA_VERSION:
        raise VersionMismatchError("schema", SCHEMA_VERSION, frame.schema)
    body = frame.body
    if frame.codec == "zlib":
        inflater = zlib.decompressobj()
        try:
            body = inflater.decompress(body, max_body_bytes)
        except zlib.error:
            raise MalformedBatchError("Compressed body is corrupt or truncated", "$[3]") from None
        if inflater.unconsumed_tail:
            raise OversizedBatchError("body after decompression (bytes)", max_body_bytes + 1, max_body_bytes)
        if not inflater.eof:
            raise MalformedBatchError("Compressed body is truncated", "$[3]")
    elif len(body) > max_body_bytes:
        raise OversizedBatchError("body (bytes)", len(body), max_body_bytes)
    try:
        return _message_decoder.decode(body), frame.schema
    except msgspec.DecodeError as exc:
        reason, where = describe_validation_error(exc)
        raise MalformedBatchError(reason, where) from None
