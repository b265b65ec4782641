"""Kubernetes quantities: values (``Value()`` rounds up), canonical strings, formats, and refusals."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kray._ray.quantity import Quantity, QuantityError, QuantityFormat, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("raw", "value", "canonical", "fmt"),
    [
        ("500m", 1, "500m", QuantityFormat.DECIMAL_SI),
        ("1", 1, "1", QuantityFormat.DECIMAL_SI),
        (4, 4, "4", QuantityFormat.DECIMAL_SI),
        (0.5, 1, "500m", QuantityFormat.DECIMAL_SI),
        ("1.5", 2, "1500m", QuantityFormat.DECIMAL_SI),
        ("1000m", 1, "1", QuantityFormat.DECIMAL_SI),
        ("10000", 10000, "10k", QuantityFormat.DECIMAL_SI),
        ("2Gi", 2 * 2**30, "2Gi", QuantityFormat.BINARY_SI),
        ("5Gi", 5368709120, "5Gi", QuantityFormat.BINARY_SI),
        ("0.5Gi", 2**29, "512Mi", QuantityFormat.BINARY_SI),
        ("1536Mi", 1536 * 2**20, "1536Mi", QuantityFormat.BINARY_SI),
        ("2048Mi", 2 * 2**30, "2Gi", QuantityFormat.BINARY_SI),
        ("1Ki", 1024, "1Ki", QuantityFormat.BINARY_SI),
        ("1e3", 1000, "1e3", QuantityFormat.DECIMAL_EXPONENT),
        ("1E3", 1000, "1e3", QuantityFormat.DECIMAL_EXPONENT),
        ("12e3", 12000, "12e3", QuantityFormat.DECIMAL_EXPONENT),
        ("1.5e-3", 1, "1500e-6", QuantityFormat.DECIMAL_EXPONENT),
        ("1E", 10**18, "1E", QuantityFormat.DECIMAL_SI),
        ("100M", 10**8, "100M", QuantityFormat.DECIMAL_SI),
        ("-2Gi", -(2 * 2**30), "-2Gi", QuantityFormat.BINARY_SI),
        ("-500m", -1, "-500m", QuantityFormat.DECIMAL_SI),
        ("0", 0, "0", QuantityFormat.DECIMAL_SI),
        ("0Gi", 0, "0", QuantityFormat.BINARY_SI),
        (".5", 1, "500m", QuantityFormat.DECIMAL_SI),
        ("1.", 1, "1", QuantityFormat.DECIMAL_SI),
        ("+3", 3, "3", QuantityFormat.DECIMAL_SI),
        (" 2 ", 2, "2", QuantityFormat.DECIMAL_SI),
    ],
)
def test_parse(raw: str | int | float, value: int, canonical: str, fmt: QuantityFormat) -> None:
    quantity = parse_quantity(raw)
    assert quantity.value() == value
    assert format_quantity(quantity) == canonical == str(quantity)
    assert quantity.format is fmt


def test_values_below_a_nano_round_up_to_one_nano() -> None:
    assert parse_quantity("0.0000000001").amount == Fraction(1, 10**9)
    assert str(parse_quantity("1.0000000001")) == "1000000001n"


def test_binary_values_below_one_become_decimal() -> None:
    assert parse_quantity("0.5Ki").format is QuantityFormat.BINARY_SI
    assert parse_quantity("0.0001Ki").format is QuantityFormat.DECIMAL_SI


def test_small_binary_values_print_as_decimal() -> None:
    assert str(parse_quantity("0.5Ki")) == "512"


def test_milli_value_and_float() -> None:
    quantity = parse_quantity("1500m")
    assert quantity.milli_value() == 1500
    assert quantity.as_float() == 1.5
    assert not quantity.is_zero()


@pytest.mark.parametrize(
    "raw", ["", "abc", "1.2.3", "1Kb", "1 Gi", "1e", "1e1.5", "--1", "Gi", "1ii", True, float("nan")]
)
def test_refuses(raw: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(raw)  # type: ignore[arg-type]


_SUFFIXES = ["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti", "e3", "e-3", "n", "u"]


@given(
    whole=st.integers(min_value=0, max_value=10**6),
    fraction=st.one_of(st.just(""), st.from_regex(r"[0-9]{1,4}", fullmatch=True)),
    suffix=st.sampled_from(_SUFFIXES),
    negative=st.booleans(),
)
def test_canonical_form_round_trips(whole: int, fraction: str, suffix: str, negative: bool) -> None:
    text = ("-" if negative else "") + str(whole) + (f".{fraction}" if fraction else "") + suffix
    quantity = parse_quantity(text)
    canonical = format_quantity(quantity)
    again = parse_quantity(canonical)
    assert again.amount == quantity.amount
    assert format_quantity(again) == canonical


@given(st.fractions(min_value=-(10**12), max_value=10**12, max_denominator=10**9))
def test_value_rounds_away_from_zero(amount: Fraction) -> None:
    nano = Fraction(1, 10**9)
    amount = (amount // nano) * nano
    value = Quantity(amount=amount).value()
    assert abs(value) >= abs(amount)
    assert abs(value) - abs(amount) < 1
