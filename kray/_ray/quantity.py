"""Kubernetes resource quantities (``"500m"``, ``"2Gi"``, ``"1e3"``, ``4``), parsed exactly as apimachinery does.

KubeRay derives ``ray start`` flags from container resources with Go's ``resource.Quantity``:
``num-cpus`` is ``Value()`` (rounded *up*, so ``"500m"`` gives 1), ``memory`` is the byte count, the
``/dev/shm`` size limit is the quantity re-printed in canonical form (``"0.5Gi"`` becomes ``"512Mi"``).
Getting any of these wrong changes the pods we create, so values are kept as exact fractions, never floats.

Rules mirrored from apimachinery: the suffix picks the format (none or ``n u m k M G T P E`` → DecimalSI,
``Ki … Ei`` → BinarySI, ``e<int>`` → DecimalExponent); values are rounded up (away from zero) to a
multiple of 10⁻⁹; a BinarySI value below 1 becomes DecimalSI. The canonical string strips trailing
zeros into the exponent and lowers it to a multiple of 3 (decimal) or of 1024 (binary, integers ≥ 1024 only).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

__all__ = ["Quantity", "QuantityError", "QuantityFormat", "format_quantity", "parse_quantity"]


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


class QuantityFormat(StrEnum):
    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exp: suffix for suffix, exp in _DECIMAL.items()}
_BINARY_SUFFIX = {0: "", **{bits // 10: suffix for suffix, bits in _BINARY.items()}}
_SYNTAX = re.compile(r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(.*)", re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)")
_NANO = Fraction(1, 10**9)


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact quantity: ``amount`` is a multiple of 10⁻⁹; ``format`` decides how it prints."""

    amount: Fraction
    format: QuantityFormat = QuantityFormat.DECIMAL_SI

    def value(self) -> int:
        """The integer value rounded up, away from zero (Go ``Quantity.Value()``)."""
        return _round_away(self.amount)

    def milli_value(self) -> int:
        """Thousandths, rounded away from zero (Go ``Quantity.MilliValue()``)."""
        return _round_away(self.amount * 1000)

    def is_zero(self) -> bool:
        return self.amount == 0

    def as_float(self) -> float:
        """The nearest float (Go ``AsApproximateFloat64``)."""
        return float(self.amount)

    def __str__(self) -> str:
        return format_quantity(self)


def parse_quantity(raw: str | int | float) -> Quantity:
    """Parse a quantity as it appears in a manifest (JSON numbers are accepted, as the API server does).

    Raises :class:`QuantityError` for anything apimachinery's ``ParseQuantity`` would refuse.
    """
    if isinstance(raw, bool):
        raise QuantityError(f"quantities must be strings or numbers, not {raw!r}")
    if isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise QuantityError(f"quantities must be finite, not {raw!r}")
        text = format(Decimal(repr(raw)), "f")
    else:
        text = raw.strip()
    match = _SYNTAX.fullmatch(text)
    if match is None:
        raise QuantityError(f"quantities must match the regular expression of Kubernetes quantities: {raw!r}")
    sign, number, suffix = match.groups()
    whole, _, fraction = number.partition(".")
    amount = Fraction(int((whole + fraction) or "0"), 10 ** len(fraction))
    if suffix in _BINARY:
        fmt, amount = QuantityFormat.BINARY_SI, amount * 2 ** _BINARY[suffix]
    elif suffix in _DECIMAL:
        fmt, amount = QuantityFormat.DECIMAL_SI, amount * Fraction(10) ** _DECIMAL[suffix]
    elif (exponent := _EXPONENT.fullmatch(suffix)) is not None:
        fmt, amount = QuantityFormat.DECIMAL_EXPONENT, amount * Fraction(10) ** int(exponent.group(1))
    else:
        raise QuantityError(f"unable to parse quantity's suffix: {raw!r}")
    amount = _round_away(amount / _NANO) * _NANO  # "if you want some resources, you get some"
    if fmt is QuantityFormat.BINARY_SI and 0 < amount < 1:
        fmt = QuantityFormat.DECIMAL_SI
    return Quantity(amount=-amount if sign == "-" else amount, format=fmt)


def format_quantity(quantity: Quantity) -> str:
    """The canonical string of a quantity (Go ``Quantity.String()``)."""
    amount, fmt = quantity.amount, quantity.format
    if amount == 0:
        return "0"
    if fmt is QuantityFormat.BINARY_SI and (abs(amount) < 1024 or amount.denominator != 1):
        fmt = QuantityFormat.DECIMAL_SI  # small or fractional binary values print as decimal, losing nothing
    if fmt is QuantityFormat.BINARY_SI:
        mantissa, power = amount.numerator, 0
        while mantissa % 1024 == 0 and power < max(_BINARY_SUFFIX):
            mantissa, power = mantissa // 1024, power + 1
        return f"{mantissa}{_BINARY_SUFFIX[power]}"
    mantissa, exponent = int(amount / _NANO), -9
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    while exponent % 3:
        mantissa, exponent = mantissa * 10, exponent - 1
    if fmt is QuantityFormat.DECIMAL_SI and exponent in _DECIMAL_SUFFIX:
        return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
    # DecimalExponent, or a DecimalSI value beyond the largest suffix (where Go would drop the exponent).
    return f"{mantissa}e{exponent}" if exponent else str(mantissa)


def _round_away(value: Fraction) -> int:
    return math.ceil(value) if value >= 0 else math.floor(value)
