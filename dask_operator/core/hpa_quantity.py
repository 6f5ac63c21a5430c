"""Kubernetes quantities (``"100m"``, ``"1.5"``, ``"500Mi"``, ``2``) as the HPA reads them.

The HPA controller compares metric values and targets in *milli-units*, as
64-bit integers: ``Quantity.MilliValue()``, which rounds up when the quantity
is finer than a milli-unit. ``milli`` does the same, exactly (no float on the
way): ``milli("100m") == 100``, ``milli(2) == 2000``, ``milli("1Ki") ==
1_024_000``, ``milli("0.0001") == 1``.

Accepted: an int or float (not a bool), or a string of a decimal number with
an optional suffix: a binary one (Ki Mi Gi Ti Pi Ei), a decimal one (n u m k
M G T P E) or a decimal exponent (``1e3``, ``2E-2``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?\d+))?$"
)


# Kubernetes' own quantities go no further than 10**18 (E); this bounds the work of parsing.
MAX_EXPONENT = 100


class InvalidQuantity(ValueError):
    """Not a Kubernetes quantity."""


def parse_quantity(value: Any) -> Fraction:
    """The exact value of a quantity; InvalidQuantity when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidQuantity(f"must be a number or a quantity string such as '100m', got {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidQuantity(f"must be a finite number, got {value!r}")
        return Fraction(repr(value))
    match = _QUANTITY.match(value.strip())
    if not match:
        raise InvalidQuantity(f"must be a quantity such as '100m', '2', '1.5k' or '500Mi', got {value!r}")
    number = Fraction(match["number"])
    if match["exponent"] is not None:
        exponent = int(match["exponent"])
        if abs(exponent) > MAX_EXPONENT:  # 10**1e9 would take the process hours and gigabytes
            raise InvalidQuantity(f"must have an exponent within +-{MAX_EXPONENT}, got {value!r}")
        return number * Fraction(10) ** exponent
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * Fraction(10) ** _DECIMAL[suffix]


def milli(value: Any) -> int:
    """The quantity in milli-units, rounded up like ``Quantity.MilliValue()``."""
    return math.ceil(parse_quantity(value) * 1000)


def format_milli(value: int | None) -> str:
    """A milli-unit integer as the shortest quantity string: ``1500`` -> ``"1500m"``, ``2000`` -> ``"2"``."""
    if value is None:
        return "<unknown>"
    if value % 1000 == 0:
        return str(value // 1000)
    return f"{value}m"
