"""Numbers as text, the same way in every view: tables, the report, figure labels, the app, the CLI.

A reading that was not taken (None or NaN) shows as ``missing`` ("n/a" unless a view says
better, such as "n/a (no GPU)"). A metric's decimals come from its registry entry
(:data:`whisperkit.experiments.metrics.METRICS`), never from the view.

>>> number(1234.5678, 1), number(None, 2), number(float("nan"), 0, missing="-")
('1,234.6', 'n/a', '-')
>>> metric_text("rtfx", 23.456), metric_text("peak_rss_mb", 812.4), percent(0.0512), times(1.876)
('23.46', '812', '5.1 %', '1.88x')
"""

from __future__ import annotations

import numbers

from whisperkit.checks import is_missing
from whisperkit.experiments.metrics import metric

MISSING = "n/a"


def number(value: object, digits: int, missing: str = MISSING) -> str:
    """``value`` with ``digits`` decimals and thousands separators; ``missing`` when not measured.

    Anything that is not a number (text, True/False) is shown as it is."""
    if is_missing(value):
        return missing
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    return f"{float(value):,.{digits}f}"


def metric_text(key: str, value: object, missing: str = MISSING) -> str:
    """A metric's value with its registry decimals (see :func:`number`)."""
    return number(value, metric(key).digits, missing)


def percent(fraction: object, digits: int = 1, missing: str = MISSING) -> str:
    """A fraction (0.05) as a percentage (``"5.0 %"``), e.g. a word error rate."""
    if is_missing(fraction) or isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        return missing
    return f"{100 * float(fraction):.{digits}f} %"


def times(ratio: object, digits: int = 2, missing: str = MISSING) -> str:
    """A ratio such as a speedup: ``"1.88x"``."""
    return missing if is_missing(ratio) else f"{number(ratio, digits)}x"


def setting(value: object) -> str:
    """A setting's value as text: None as ``none``, lists and tuples comma-separated."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


def axis_format(digits: int) -> str:
    """A d3 number format for plotly hover and tick labels (``",.1f"``)."""
    return f",.{digits}f"

