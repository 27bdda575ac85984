"""Keyed blind index for lookups by phone or ID number, without plaintext.

The index value of a number is the first ``INDEX_BITS`` = 20 bits of
HMAC-SHA256(index key, kind || 0x00 || normalised value), stored next to the
sealed field. A lookup normalises the number it is given, computes its index
value and fetches the rows that carry it.

Why 20 bits, with the figures:

- False candidates. A lookup matches every other row whose value lands on the
  same index value: on average N / 2^20 of N rows (2^20 = 1,048,576). That is
  0.095 at 100,000 rows, 0.95 at a million and 9.5 at ten million. The caller
  opens each candidate's sealed field and compares the real value, so a false
  candidate costs one AES-GCM open and never a wrong answer.
- Nothing to read off. Every index value stands for many numbers: the 10^10
  (about 2^33.2) eleven-digit mobile numbers starting with 1 spread over 2^20
  values, about 9,500 per value; 18-character ID numbers (some 3,000 region
  codes x 36,500 birth dates in a century x 1,000 sequence numbers, about
  1.1 x 10^11 or 2^36.7) about 100,000 per value. Even someone holding the
  index key, who can hash every possible number, learns only a set of some
  thousands of candidates per row, not the number. With a million rows, 61% of
  all index values are taken, so checking a guessed number against the index
  says little too.

The limit: the set shrinks with anything else known about the number. A masked
phone (138****1234) leaves 10^4 candidates, and 10^4 / 2^20 is 0.01: the mask,
the index value and the index key together give the number. The index key must
therefore stay with the nodes that may read full numbers anyway, never with a
node that only sees them masked.

The ``kind`` prefix keeps a phone and an ID number with the same digits on
unrelated index values.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from crypto.errors import NormalizeError
from crypto.keys import KEY_BYTES

INDEX_BITS = 20
KINDS = ("phone", "id_number")
PHONE_MIN_DIGITS = 5
PHONE_MAX_DIGITS = 15

_PHONE_SEPARATORS = str.maketrans("", "", " \t-.()")
_ID_SEPARATORS = str.maketrans("", "", " \t-")


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def normalize_phone(text: str) -> str:
    """The digits of a phone number, in domestic form.

    Full-width characters become ASCII (NFKC); spaces, dashes, dots and
    parentheses go. A mobile number in international form (``+86``, ``0086`` or
    ``86`` before 11 digits starting with 1) loses the country code; a fixed line
    in international form (``+86 10 ...``) gets the domestic trunk 0 instead
    (``010...``). The result is 5 to 15 ASCII digits, or `NormalizeError`.

    >>> normalize_phone("+86 138-0013-8000")
    '13800138000'
    >>> normalize_phone("+86 (10) 6552 9988") == normalize_phone("010-6552-9988")
    True
    """
    digits = unicodedata.normalize("NFKC", text).translate(_PHONE_SEPARATORS)
    # each step shortens the string; repeating it makes the result a fixed point
    while (shorter := _drop_country_code(digits)) != digits:
        digits = shorter
    if not _ascii_digits(digits):
        raise NormalizeError(
            "phone", "expected digits, with only spaces, dashes, dots, parentheses and a leading +86 or 0086 besides"
        )
    if not PHONE_MIN_DIGITS <= len(digits) <= PHONE_MAX_DIGITS:
        raise NormalizeError(
            "phone",
            f"expected {PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS} digits after removing +86, spaces and dashes",
        )
    return digits


def _drop_country_code(digits: str) -> str:
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            rest = digits[len(prefix):]
            is_mobile = len(rest) == 11 and rest.startswith("1")
            return rest if is_mobile or rest.startswith("0") else "0" + rest
    if len(digits) == 13 and digits.startswith("861"):
        return digits[2:]
    return digits


def normalize_id_number(text: str) -> str:
    """A resident ID number without spaces or dashes, check character X in upper case.

    18 characters (17 digits and a digit or X) or the old 15 digits, else
    `NormalizeError`. The check character is not verified, and a 15-digit
    number is not converted to its 18-character form: the two index differently.
    """
    value = unicodedata.normalize("NFKC", text).translate(_ID_SEPARATORS).upper()
    if len(value) == 18 and _ascii_digits(value[:17]) and (value[17] == "X" or _ascii_digits(value[17])):
        return value
    if len(value) == 15 and _ascii_digits(value):
        return value
    raise NormalizeError("id_number", "expected 18 characters (17 digits and a digit or X) or 15 digits")


_NORMALIZERS = {"phone": normalize_phone, "id_number": normalize_id_number}


def blind_index(key: bytes, kind: str, normalized: str) -> int:
    """The ``INDEX_BITS``-bit index value of ``normalized``, a value already passed
    through its kind's normaliser (ValueError if it is not in normal form, so a
    lookup never misses for want of normalising)."""
    normalize = _NORMALIZERS.get(kind)
    if normalize is None:
        raise ValueError(f"blind index kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if len(key) != KEY_BYTES:
        raise ValueError(f"an index key is {KEY_BYTES} bytes, got {len(key)}")
    if normalize(normalized) != normalized:
        raise ValueError(f"{kind} is not normalised; pass it through normalize_{kind} first")
    digest = hmac.new(key, kind.encode() + b"\x00" + normalized.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - INDEX_BITS)
