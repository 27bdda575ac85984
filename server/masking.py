"""Display masks for personal information: what a role with `masked` access sees.

One pure function per kind of value. Each keeps a fixed, small part of the value
and replaces the rest; what it keeps never depends on the hidden part, so two
values that differ only there mask the same (the property tests check exactly
that). A mask never raises: input it cannot read (empty, too short, not a phone
number, not a string at all) masks to `FULL_MASK`, and no mask is longer than
`MAX_MASK_CHARS`.

=============  ======================  ==========================================
rule           example                 keeps
=============  ======================  ==========================================
phone          ``138****1234``         the number normalised as for the blind index
                                       (``+86``, spaces, dashes go); 11 digits or
                                       more: the first 3 and the last 4; 8 to 10
                                       digits (a local fixed line): the last 4
name           ``张*``                 the first character and one ``*``, however
                                       long the name (the mask does not tell the
                                       name's length)
ID number      ``1****************X``  the first and last character, one ``*`` per
                                       character between (18 -> 1 + 16 + 1); other
                                       documents of 6 to 32 letters and digits
                                       alike
e-mail         ``z***@example.com``    the first character of the local part
                                       (none if it has only one) and the domain
address        ``广东省深圳市南山区***``  the prefix up to the district (区, 县, 旗 or
                                       a county-level 市) after the city (市,
                                       自治州, 盟), or up to the city if no
                                       district follows closely; an address
                                       without that shape, or with nothing
                                       after it, is masked whole
birthday       ``1985-**-**``          the year only
=============  ======================  ==========================================

Masks are for display. A masked value is still personal information in the
eyes of the log rules: it is never logged (STYLE.md, logging without PII).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from types import MappingProxyType

from crypto.blind_index import normalize_id_number, normalize_phone
from crypto.errors import NormalizeError
from crypto.plaintext import Plaintext

#: what a value masks to when no part of it may be kept
FULL_MASK = "***"
#: no mask is longer than this
MAX_MASK_CHARS = 64

#: a city-level marker must start within this many characters of an address
_CITY_WITHIN = 16
#: a district-level marker must follow the city marker within this many characters
_DISTRICT_WITHIN = 8
#: 州 alone is no marker: it ends 苏州, 杭州 and 广州 as often as 自治州
_CITY_MARKERS = ("市", "自治州", "盟")
_DISTRICT_MARKERS = "区县旗市"
_ID_SEPARATORS = str.maketrans("", "", " \t-")
_BIRTHDAY = re.compile(
    r"((?:19|20)[0-9]{2})(?:[-/.年][0-9]{1,2}[-/.月][0-9]{1,2}日?|[0-9]{4})"
)
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")

Value = str | Plaintext | None


def _text(value: object) -> str | None:
    """The text to mask, stripped and NFKC-normalised, or None if there is none."""
    if isinstance(value, Plaintext):
        value = value.reveal()
    if not isinstance(value, str):
        return None
    text = unicodedata.normalize("NFKC", value).strip()
    return text or None


def _bounded(masked: str) -> str:
    return masked if len(masked) <= MAX_MASK_CHARS else FULL_MASK


def mask_phone(value: Value) -> str:
    """``138****1234``: first 3 and last 4 digits of an 11- to 15-digit number,
    the last 4 of an 8- to 10-digit one; anything else masks whole.

    >>> mask_phone("+86 138-0013-8000")
    '138****8000'
    """
    text = _text(value)
    if text is None:
        return FULL_MASK
    try:
        digits = normalize_phone(text)
    except NormalizeError:
        return FULL_MASK
    n = len(digits)
    if n >= 11:
        return _bounded(digits[:3] + "*" * (n - 7) + digits[-4:])
    if n >= 8:
        return "*" * (n - 4) + digits[-4:]
    return FULL_MASK


def mask_name(value: Value) -> str:
    """``张*``: the first character and a single ``*``; a one-character name masks whole.

    >>> mask_name("欧阳娜娜")
    '欧*'
    """
    text = _text(value)
    if text is None or len(text) < 2:
        return FULL_MASK
    return text[0] + "*"


def mask_id_number(value: Value) -> str:
    """First and last character with one ``*`` for each between.

    >>> mask_id_number("11010519491231002X")
    '1****************X'
    """
    text = _text(value)
    if text is None:
        return FULL_MASK
    try:
        number = normalize_id_number(text)
    except NormalizeError:
        # another document (passport, permit): letters and digits only
        number = text.translate(_ID_SEPARATORS).upper()
        if not (6 <= len(number) <= 32 and number.isascii() and number.isalnum()):
            return FULL_MASK
    return number[0] + "*" * (len(number) - 2) + number[-1]


def mask_email(value: Value) -> str:
    """``z***@example.com``: the local part's first character (if it has more than
    one) and the domain; anything not shaped like an address masks whole.

    >>> mask_email("zhang.san@example.com")
    'z***@example.com'
    """
    text = _text(value)
    if text is None or text.count("@") != 1:
        return FULL_MASK
    local, domain = text.split("@")
    if not local or any(c.isspace() for c in local) or _EMAIL_DOMAIN.fullmatch(domain) is None:
        return FULL_MASK
    kept = local[0] if len(local) > 1 else ""
    return _bounded(f"{kept}***@{domain.lower()}")


def mask_address(value: Value) -> str:
    """The prefix down to the district, then ``***``.

    The prefix ends at the first district marker (区, 县, 旗, or 市 for a
    county-level city) within a few characters after the first city marker
    (市, 自治州, 盟) near the start, or at the city marker if no district follows
    closely. A prefix holding a digit or a space is a street address, not a
    region; an address with no city marker near its start, or nothing after the
    prefix, masks whole.

    >>> mask_address("广东省深圳市南山区科技园南路88号")
    '广东省深圳市南山区***'
    """
    text = _text(value)
    if text is None:
        return FULL_MASK
    found = [i + len(m) - 1 for m in _CITY_MARKERS if 0 <= (i := text.find(m, 0, _CITY_WITHIN + len(m) - 1))]
    if not found:
        return FULL_MASK
    city = min(found)  # the index of the city marker's last character
    end = city + 1
    for i in range(city + 1, min(len(text), city + 1 + _DISTRICT_WITHIN)):
        if text[i] in _DISTRICT_MARKERS:
            end = i + 1
            break
    prefix = text[:end]
    if any(c.isdigit() for c in prefix) or any(c.isspace() for c in prefix) or end == len(text):
        return FULL_MASK
    return prefix + FULL_MASK


def mask_birthday(value: Value) -> str:
    """``1985-**-**``: the year of a date written YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD
    or YYYY年M月D日; anything else masks whole.

    >>> mask_birthday("1985年3月7日")
    '1985-**-**'
    """
    text = _text(value)
    if text is None:
        return FULL_MASK
    match = _BIRTHDAY.fullmatch(text)
    if match is None:
        return FULL_MASK
    return f"{match.group(1)}-**-**"


#: (collection, field) -> its mask; a field without one cannot be `masked` in a policy
MASKS: Mapping[tuple[str, str], Callable[[Value], str]] = MappingProxyType({
    ("customers", "name"): mask_name,
    ("customers", "phone"): mask_phone,
    ("customers", "second_contact"): mask_phone,
    ("customers", "email"): mask_email,
    ("customers", "id_number"): mask_id_number,
    ("customers", "birthday"): mask_birthday,
    ("customers", "address"): mask_address,
})


def has_mask(collection: str, field: str) -> bool:
    return (collection, field) in MASKS


def mask_field(collection: str, field: str, value: Value) -> str:
    """The masked form of ``collection.field``'s value (`FULL_MASK` for a field with
    no masking rule: masking never shows more than nothing)."""
    mask = MASKS.get((collection, field))
    return FULL_MASK if mask is None else mask(value)
