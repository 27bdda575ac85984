"""Display masks: the documented examples, odd input, and the properties that make
a mask safe: what it keeps never depends on what it hides, it is deterministic,
and it is bounded."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, strategies as st

from crypto.plaintext import Plaintext
from server.masking import (
    FULL_MASK,
    MASKS,
    MAX_MASK_CHARS,
    mask_address,
    mask_birthday,
    mask_email,
    mask_field,
    mask_id_number,
    mask_name,
    mask_phone,
)

DIGITS = "0123456789"


@pytest.mark.parametrize(("value", "masked"), [
    ("13812341234", "138****1234"),
    ("+86 138-1234-1234", "138****1234"),
    ("0086 138 1234 1234", "138****1234"),
    ("8613812341234", "138****1234"),
    ("１３８１２３４１２３４", "138****1234"),  # full-width digits
    ("010-6552-9988", "010****9988"),  # a fixed line with its area code
    ("+86 (10) 6552 9988", "010****9988"),
    ("6552 9988", "****9988"),  # a local number: the last 4 only
    ("123456789012345", "123********2345"),
    ("1234567", FULL_MASK),  # too short to keep anything
    ("12345", FULL_MASK),
    ("call me", FULL_MASK),
    ("", FULL_MASK),
    ("   ", FULL_MASK),
])
def test_phone(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(("value", "masked"), [
    ("张三", "张*"),
    ("欧阳娜娜", "欧*"),  # one star, whatever the length
    (" 李四 ", "李*"),
    ("John Smith", "J*"),
    ("🙂" * 40, "🙂*"),
    ("张", FULL_MASK),  # keeping the first character would keep it all
    ("", FULL_MASK),
])
def test_name(value: str, masked: str) -> None:
    assert mask_name(value) == masked


@pytest.mark.parametrize(("value", "masked"), [
    ("11010519491231002X", "1" + "*" * 16 + "X"),
    ("11010519491231002x", "1" + "*" * 16 + "X"),
    ("110105 19491231 002X", "1" + "*" * 16 + "X"),
    ("110105194912310", "1" + "*" * 13 + "0"),
    ("E12345678", "E*******8"),  # a passport
    ("AB12", FULL_MASK),
    ("1101051949123100£X", FULL_MASK),
    ("", FULL_MASK),
])
def test_id_number(value: str, masked: str) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(("value", "masked"), [
    ("zhang.san@Example.com", "z***@example.com"),
    ("a@b.cn", "***@b.cn"),
    ("no at sign", FULL_MASK),
    ("a@@b.com", FULL_MASK),
    ("x@localhost", FULL_MASK),
    ("zhang san@example.com", FULL_MASK),
    ("@example.com", FULL_MASK),
    ("", FULL_MASK),
])
def test_email(value: str, masked: str) -> None:
    assert mask_email(value) == masked


@pytest.mark.parametrize(("value", "masked"), [
    ("广东省深圳市南山区科技园南路88号", "广东省深圳市南山区***"),
    ("北京市朝阳区建国路88号", "北京市朝阳区***"),
    ("上海市浦东新区世纪大道100号", "上海市浦东新区***"),
    ("新疆维吾尔自治区乌鲁木齐市天山区解放路1号", "新疆维吾尔自治区乌鲁木齐市天山区***"),
    ("江苏省苏州市昆山市玉山镇人民路1号", "江苏省苏州市昆山市***"),
    ("江苏省昆山市玉山镇人民路1号", "江苏省昆山市***"),  # no district close after the city
    ("湖北省恩施土家族苗族自治州恩施市舞阳大街1号", "湖北省恩施土家族苗族自治州恩施市***"),
    ("内蒙古自治区锡林郭勒盟锡林浩特市额尔敦路", "内蒙古自治区锡林郭勒盟锡林浩特市***"),
    ("北京朝阳区建国路88号", FULL_MASK),  # no city marker: not a shape we trust
    ("北京市朝阳区", FULL_MASK),  # nothing beyond the prefix
    ("12市3区建国路", FULL_MASK),  # digits in the prefix: a street, not a region
    ("1600 Amphitheatre Pkwy", FULL_MASK),
    ("", FULL_MASK),
])
def test_address(value: str, masked: str) -> None:
    assert mask_address(value) == masked


@pytest.mark.parametrize(("value", "masked"), [
    ("1985-03-07", "1985-**-**"),
    ("1985/3/7", "1985-**-**"),
    ("19850307", "1985-**-**"),
    ("1985年3月7日", "1985-**-**"),
    ("85-03-07", FULL_MASK),
    ("March 7", FULL_MASK),
    ("", FULL_MASK),
])
def test_birthday(value: str, masked: str) -> None:
    assert mask_birthday(value) == masked


@pytest.mark.parametrize("mask", sorted(set(MASKS.values()), key=lambda m: m.__name__))
@pytest.mark.parametrize("odd", [None, b"13812341234", 13812341234, "", " \t\n", "\x00", "*"])
def test_odd_input_masks_whole(mask: object, odd: object) -> None:
    assert mask(odd) == FULL_MASK  # type: ignore[operator]


@pytest.mark.parametrize("mask", [mask_phone, mask_id_number, mask_email, mask_address, mask_birthday])
@pytest.mark.parametrize("odd", ["\u0301\u0301", "🙂" * 40, "1" * 500, "@" * 3, "区" * 200])
def test_text_of_the_wrong_shape_masks_whole(mask: object, odd: str) -> None:
    assert mask(odd) == FULL_MASK  # type: ignore[operator]


def test_plaintext_is_masked_like_its_text() -> None:
    assert mask_phone(Plaintext("13812341234")) == "138****1234"
    assert mask_field("customers", "second_contact", Plaintext("13812341234")) == "138****1234"


def test_a_field_without_a_rule_masks_whole() -> None:
    assert mask_field("customers", "notes", "anything at all") == FULL_MASK
    assert mask_field("tasks", "category", "x") == FULL_MASK


# ---------------------------------------------------------------- properties

any_text = st.text(max_size=300)
ALL_MASKS = st.sampled_from(sorted(set(MASKS.values()), key=lambda m: m.__name__))
#: how many characters other than ``*`` and the fixed punctuation each mask may keep
KEEPS = {
    mask_phone: 7, mask_name: 1, mask_id_number: 2, mask_birthday: 4,
    mask_address: 24, mask_email: MAX_MASK_CHARS - 4,
}


@given(ALL_MASKS, any_text)
def test_never_raises_is_bounded_and_deterministic(mask, value: str) -> None:  # type: ignore[no-untyped-def]
    masked = mask(value)
    assert isinstance(masked, str) and 1 <= len(masked) <= MAX_MASK_CHARS
    assert mask(value) == masked
    assert "*" in masked  # a mask always shows that something is hidden


@given(ALL_MASKS, any_text)
def test_keeps_no_more_than_its_rule(mask, value: str) -> None:  # type: ignore[no-untyped-def]
    kept = [c for c in mask(value) if c not in "*-@."]
    assert len(kept) <= KEEPS[mask]


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(DIGITS, min_size=n, max_size=n)


mobile = st.builds(lambda rest: "1" + rest, _digits(10))


def _format_phone(number: str, style: int) -> str:
    return [
        number,
        f"+86 {number[:3]} {number[3:7]} {number[7:]}",
        f"{number[:3]}-{number[3:7]}-{number[7:]}",
        f"0086{number}",
        f"(+86) {number}",
    ][style]


@given(mobile, _digits(4), st.integers(0, 4))
def test_phone_hides_the_middle_whatever_it_is(number: str, other_middle: str, style: int) -> None:
    masked = mask_phone(_format_phone(number, style))
    assert masked == number[:3] + "****" + number[7:]
    changed = number[:3] + other_middle + number[7:]
    assert mask_phone(_format_phone(changed, style)) == masked


id_number = st.builds(lambda body, check: body + check, _digits(17), st.sampled_from(DIGITS + "X"))


@given(id_number, _digits(16))
def test_id_number_hides_all_but_first_and_last(number: str, other_middle: str) -> None:
    masked = mask_id_number(number)
    assert masked == number[0] + "*" * 16 + number[-1]
    assert mask_id_number(number[0] + other_middle + number[-1]) == masked


@given(st.text(min_size=1, max_size=1).filter(lambda c: not c.isspace()), st.text(min_size=1, max_size=20),
       st.text(min_size=1, max_size=20))
def test_name_keeps_only_the_first_character(first: str, rest: str, other_rest: str) -> None:
    name, other = first + rest, first + other_rest
    masked = mask_name(name)
    if masked != FULL_MASK and mask_name(other) != FULL_MASK:
        assert mask_name(other) == masked
        assert len(masked) == 2 and masked.endswith("*")


local_part = st.text(string.ascii_letters + string.digits + "._+", min_size=2, max_size=30)


@given(local_part, local_part, st.sampled_from(["example.com", "qq.com", "mail.example.cn"]))
def test_email_hides_the_local_part_after_its_first_character(local: str, other: str, domain: str) -> None:
    other = local[0] + other[1:]
    assert mask_email(f"{local}@{domain}") == mask_email(f"{other}@{domain}") == f"{local[0]}***@{domain}"


REGIONS = ["广东省深圳市南山区", "北京市朝阳区", "上海市浦东新区", "四川省成都市武侯区", "浙江省杭州市西湖区",
           "内蒙古自治区呼和浩特市新城区", "河北省保定市涞水县", "江苏省苏州市昆山市"]


@given(st.sampled_from(REGIONS), st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_address_keeps_the_region_and_nothing_after(region: str, street: str, other: str) -> None:
    masked = mask_address(region + street)
    if masked != FULL_MASK:  # a street starting with a space or a digit... is not hidden behind a region
        assert masked == region + FULL_MASK
    other_masked = mask_address(region + other)
    if FULL_MASK not in (masked, other_masked):
        assert masked == other_masked


@given(st.integers(1900, 2099), st.integers(1, 12), st.integers(1, 31), st.integers(1, 12), st.integers(1, 31),
       st.sampled_from(["{y}-{m:02d}-{d:02d}", "{y}/{m}/{d}", "{y}{m:02d}{d:02d}", "{y}年{m}月{d}日"]))
def test_birthday_keeps_the_year_only(year: int, month: int, day: int, other_month: int, other_day: int,
                                      style: str) -> None:
    masked = mask_birthday(style.format(y=year, m=month, d=day))
    assert masked == f"{year}-**-**"
    assert mask_birthday(style.format(y=year, m=other_month, d=other_day)) == masked
