"""Search files for plaintext personal information, byte by byte.

Used by the demo to show what its nodes left on disk and on the wire. Besides
the raw bytes of every file it searches the inflated contents of every zlib
stream found in them (sync frames are compressed), and each needle in UTF-8 and,
for numbers, as bare digits.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from pathlib import Path

_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


def needle_forms(values: Iterable[str]) -> set[bytes]:
    """Each value in UTF-8, and its digits alone when it holds at least 6."""
    out: set[bytes] = set()
    for value in values:
        out.add(value.encode())
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 6:
            out.add(digits.encode())
    return out


def inflated(data: bytes) -> list[bytes]:
    """The contents of every zlib stream that starts somewhere in ``data``."""
    out = []
    for header in _ZLIB_HEADERS:
        start = data.find(header)
        while start != -1:
            try:
                d = zlib.decompressobj()
                body = d.decompress(data[start:], 64 * 1024 * 1024)
                if body:
                    out.append(body)
            except zlib.error:
                pass
            start = data.find(header, start + 1)
    return out


def scan(paths: Iterable[Path], values: Iterable[str]) -> list[tuple[Path, str]]:
    """(file, which needle) for every needle found in any file or stream in it."""
    needles = needle_forms(values)
    hits: list[tuple[Path, str]] = []
    for path in paths:
        data = path.read_bytes()
        for blob in [data, *inflated(data)]:
            for needle in needles:
                if needle in blob:
                    hits.append((path, "digits" if needle.isdigit() else "text"))
    return hits
