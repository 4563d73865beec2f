"""Small checks every layer uses: is a value a whole number, was a reading taken, and is a
setting within its documented range.

Every numeric setting whisperkit takes (batch size, beam size, threads, workers, intervals, ...)
is checked at the boundary with :func:`check_whole` or :func:`check_number`, so each gives the
same kind of one-line :class:`~whisperkit.errors.ConfigError`, naming the setting, the valid
range and the value given.

>>> is_whole(8, minimum=1), is_whole(True), is_whole(2.0), is_whole(0, minimum=1)
(True, False, False, False)
>>> is_missing(None), is_missing(float("nan")), is_missing(0.0)
(True, True, False)
>>> check_whole(4, "beam_size", 1, 16)
4
>>> check_whole(True, "beam_size", 1, 16)
Traceback (most recent call last):
...
whisperkit.errors.ConfigError: beam_size must be a whole number from 1 to 16, got True
"""

from __future__ import annotations

import math
import numbers

from whisperkit.errors import ConfigError


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


def check_whole(value: object, name: str, minimum: int, maximum: int | None = None, *, why: str = "") -> int:
    """``value`` as an int if it is a whole number in [minimum, maximum]; else ConfigError.

    ``why``, when given, follows the range in the message (what the limit protects).
    """
    if not is_whole(value, minimum) or (maximum is not None and int(value) > maximum):  # type: ignore[call-overload]
        raise ConfigError(f"{name} must be a whole number {_range(minimum, maximum)}{_why(why)}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_number(
    value: object, name: str, minimum: float, maximum: float | None = None, *, above: bool = False, why: str = ""
) -> float:
    """``value`` as a float if it is a finite number in [minimum, maximum]; else ConfigError.

    ``above=True`` excludes ``minimum`` itself (a number above it).
    """
    ok = False
    number = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        ok = (
            math.isfinite(number)
            and (number > minimum if above else number >= minimum)
            and (maximum is None or number <= maximum)
        )
    if not ok:
        low = f"above {minimum:g}" if above else f"at least {minimum:g}"
        span = f"{low} and at most {maximum:g}" if maximum is not None else low
        raise ConfigError(f"{name} must be a number {span}{_why(why)}, got {value!r}")
    return number


def _range(minimum: int, maximum: int | None) -> str:
    return f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"


def _why(why: str) -> str:
    return f" ({why})" if why else ""
