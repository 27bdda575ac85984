"""A decrypted PII value that does not print itself.

Like a web framework's ``SecretString``: ``repr``, ``str`` and f-strings show
``Plaintext('***')``, so a value that reaches a log line, an exception message or
a traceback's locals shows nothing. Only `Plaintext.reveal` gives the text.
"""

from __future__ import annotations

MASK = "Plaintext('***')"


class Plaintext:
    """A str that prints as ``Plaintext('***')``; compares and hashes by value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Plaintext wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def to_bytes(self) -> bytes:
        """UTF-8, the form that is sealed."""
        return self._value.encode()

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Plaintext):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Plaintext, self._value))
