"""Range checks for settings: one place that says what a valid number is, and one error for the rest.

Every numeric setting whisperkit takes (batch size, beam size, threads, workers, intervals, ...)
is checked at the boundary with these helpers, so that each gives the same kind of one-line
:class:`~whisperkit.errors.ConfigError`, naming the setting, the valid range and the value given.

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


def is_whole(value) -> bool:
    """True for an int (numpy ints included), False for bool, float and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_whole(value, name: str, minimum: int, maximum: int | None = None, *, why: str = "") -> int:
    """``value`` as an int if it is a whole number in [minimum, maximum]; else ConfigError.

    ``why``, when given, follows the range in the message (what the limit protects).
    """
    if not is_whole(value) or value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be a whole number {_range(minimum, maximum)}{_why(why)}, got {value!r}")
    return int(value)


def check_number(
    value, name: str, minimum: float, maximum: float | None = None, *, above: bool = False, why: str = ""
) -> float:
    """``value`` as a float if it is a finite number in [minimum, maximum]; else ConfigError.

    ``above=True`` excludes ``minimum`` itself (a number above it).
    """
    ok = False
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
    return float(value)


def _range(minimum: int, maximum: int | None) -> str:
    return f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"


def _why(why: str) -> str:
    return f" ({why})" if why else ""
