"""Blind index: normalisation equivalences, value-free errors, 20-bit keyed index values."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crypto.blind_index
from crypto.blind_index import INDEX_BITS, blind_index, normalize_id_number, normalize_phone
from crypto.errors import NormalizeError
from crypto.keys import new_key

KEY = new_key()
MOBILE = "13800138000"
ID_18 = "11010519491231002X"


@pytest.mark.parametrize(
    "text",
    [
        "13800138000", "+86 138-0013-8000", "+8613800138000", "0086 138 0013 8000", "8613800138000",
        "(+86) 138.0013.8000", "138 0013 8000", "\t138-0013-8000 ", "＋８６ １３８００１３８０００",
        "+86 0086 138 0013 8000",
    ],
)
def test_mobile_forms_normalise_alike(text: str) -> None:
    assert normalize_phone(text) == MOBILE


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("010-6552-9988", "01065529988"), ("+86 10 6552 9988", "01065529988"), ("0086 (10) 65529988", "01065529988"),
        ("+86 010 6552 9988", "01065529988"), ("0755-8888-8888", "075588888888"), ("+86 755 8888 8888", "075588888888"),
        ("95588", "95588"), ("6552-9988", "65529988"),
    ],
)
def test_fixed_lines_normalise_to_domestic_form(text: str, normal: str) -> None:
    assert normalize_phone(text) == normal


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "1234", "1" * 16, "138-0013-800O", "+1 415 555 0100", "138 0013 8000 ext 12", "13800138000#",
        "١٣٨٠٠١٣٨٠٠٠",  # Arabic-Indic digits: digits, but not ASCII
    ],
)
def test_bad_phones_raise_without_echoing_the_input(text: str) -> None:
    with pytest.raises(NormalizeError) as caught:
        normalize_phone(text)
    assert caught.value.kind == "phone"
    message = str(caught.value)
    assert message.startswith("cannot normalise phone: expected ")
    if text.strip():
        assert text.strip() not in message


@pytest.mark.parametrize("text", [ID_18, "110105 19491231 002x", "110105-19491231-002X", "１１０１０５１９４９１２３１００２ｘ"])
def test_id_number_forms_normalise_alike(text: str) -> None:
    assert normalize_id_number(text) == ID_18


def test_old_15_digit_id_numbers() -> None:
    assert normalize_id_number("110105 491231 002") == "110105491231002"


@pytest.mark.parametrize(
    "text",
    ["", "11010519491231002", "1101051949123100XX", "X10105194912310021", "11010519491231002Y", "11010549123100X"],
)
def test_bad_id_numbers_raise_without_echoing_the_input(text: str) -> None:
    with pytest.raises(NormalizeError) as caught:
        normalize_id_number(text)
    assert caught.value.kind == "id_number"
    if text:
        assert text not in str(caught.value)


def error_messages() -> set[str]:
    messages = set()
    for normalize, bad in ((normalize_phone, ("x", "1")), (normalize_id_number, ("x",))):
        for text in bad:
            with pytest.raises(NormalizeError) as caught:
                normalize(text)
            messages.add(str(caught.value))
    return messages


MESSAGES = error_messages()


@given(st.text(max_size=30) | st.from_regex(r"\A(\+86|0086|86)*[0-9 ()\-.xX]{4,22}\Z"))
def test_normalisers_return_a_fixed_point_or_a_fixed_message(text: str) -> None:
    for normalize in (normalize_phone, normalize_id_number):
        try:
            normal = normalize(text)
        except NormalizeError as error:
            assert str(error) in MESSAGES  # the message never depends on the input
        else:
            assert normal.isascii() and normalize(normal) == normal


def test_index_is_20_bits_and_deterministic() -> None:
    values = [normalize_phone(f"138{i:08d}") for i in range(2000)]
    indexes = [blind_index(KEY, "phone", v) for v in values]
    assert all(0 <= i < 2**INDEX_BITS for i in indexes)
    assert indexes == [blind_index(KEY, "phone", v) for v in values]
    # 2000 values over 2^20 index values: about 1.9 colliding pairs expected
    assert len(set(indexes)) >= 1990
    assert max(indexes) >= 2**(INDEX_BITS - 1)  # the top bit is used


def test_equivalent_inputs_share_an_index() -> None:
    assert blind_index(KEY, "phone", normalize_phone("+86 138-0013-8000")) == blind_index(KEY, "phone", MOBILE)


def test_another_key_gives_other_indexes() -> None:
    other = new_key()
    values = [f"139{i:08d}" for i in range(200)]
    same = sum(blind_index(KEY, "phone", v) == blind_index(other, "phone", v) for v in values)
    assert same <= 2  # 200 / 2^20 expected


def test_kind_separates_equal_digits() -> None:
    values = [f"{i:015d}" for i in range(200)]
    same = sum(blind_index(KEY, "phone", v) == blind_index(KEY, "id_number", v) for v in values)
    assert same <= 2


def test_blind_index_refuses_what_it_cannot_index() -> None:
    with pytest.raises(ValueError, match="kind must be one of phone, id_number"):
        blind_index(KEY, "email", "a@example.com")
    with pytest.raises(ValueError, match="normalize_phone first"):
        blind_index(KEY, "phone", "+86 138-0013-8000")
    with pytest.raises(ValueError, match="32 bytes"):
        blind_index(KEY[:16], "phone", MOBILE)


def test_known_answer() -> None:
    import hashlib
    import hmac

    key = bytes(range(32))
    digest = hmac.new(key, b"phone\x00" + MOBILE.encode(), hashlib.sha256).digest()
    assert blind_index(key, "phone", MOBILE) == (digest[0] << 12 | digest[1] << 4 | digest[2] >> 4)


def test_docstring_examples() -> None:
    result = doctest.testmod(crypto.blind_index)
    assert result.failed == 0 and result.attempted > 0
