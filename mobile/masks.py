"""Display masks for the fields a user's role sees masked (the site names them).

The phone holds the keys of a masked field's class (the role reads other fields
of it), so the client masks before showing: the common display rules, as the
API does (server/masking.py): phone 138****1234, name 张*, ID number first and
last character; any other field shows nothing.
"""

from __future__ import annotations

from crypto.plaintext import Plaintext

FULL_MASK = "***"


def mask(field: str, value: Plaintext) -> str:
    """The masked form of ``field``'s value."""
    text = value.reveal()
    if field in ("phone", "second_contact") and len(text) >= 7:
        return f"{text[:3]}****{text[-4:]}"
    if field == "name" and text:
        return text[0] + "*" * max(1, len(text) - 1)
    if field == "id_number" and len(text) >= 2:
        return text[0] + "*" * (len(text) - 2) + text[-1]
    return FULL_MASK
