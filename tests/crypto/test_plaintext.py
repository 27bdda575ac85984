"""Plaintext: the wrapper that never prints its value."""

from __future__ import annotations

import traceback

import pytest

from crypto.plaintext import Plaintext

SECRET = "13800138000"


def test_repr_and_str_are_masked() -> None:
    p = Plaintext(SECRET)
    assert repr(p) == str(p) == f"{p}" == f"{p!r}" == "Plaintext('***')"
    assert SECRET not in f"{p:>30}"
    assert SECRET not in repr([p, {"phone": p}])


def test_masked_in_an_exception_message_and_traceback_locals() -> None:
    p = Plaintext(SECRET)
    try:
        raise ValueError(f"cannot use {p} here")
    except ValueError as error:
        assert str(error) == "cannot use Plaintext('***') here"
        text = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    assert "Plaintext('***')" in text
    assert SECRET not in text


def test_reveal_and_bytes() -> None:
    p = Plaintext("张三")
    assert p.reveal() == "张三"
    assert p.to_bytes() == "张三".encode()


def test_equality_and_hash_by_value() -> None:
    assert Plaintext(SECRET) == Plaintext(SECRET)
    assert Plaintext(SECRET) != Plaintext("13900139000")
    assert Plaintext(SECRET) != SECRET  # never equal to a bare str
    assert len({Plaintext(SECRET), Plaintext(SECRET)}) == 1


def test_only_wraps_str_and_has_no_dict() -> None:
    with pytest.raises(TypeError, match="wraps a str, not bytes"):
        Plaintext(SECRET.encode())  # type: ignore[arg-type]
    assert not hasattr(Plaintext(SECRET), "__dict__")
