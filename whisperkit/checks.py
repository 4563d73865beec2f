"""Two small checks every layer uses: is a value a whole number, and was a reading taken.

>>> is_whole(8, minimum=1), is_whole(True), is_whole(2.0), is_whole(0, minimum=1)
(True, False, False, False)
>>> is_missing(None), is_missing(float("nan")), is_missing(0.0)
(True, True, False)
"""

from __future__ import annotations

import math
import numbers


def is_whole(value: object, minimum: int | None = None) -> bool:
    """True for an ``int`` (not a ``bool``, not a float such as ``2.0``) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return minimum is None or int(value) >= minimum


def is_missing(value: object) -> bool:
    """True for a reading that was not taken: ``None`` or NaN (a float, or a numpy float)."""
    if value is None:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)
