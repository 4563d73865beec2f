"""The tables every view shows, as rows of text: the values built once (metrics, comparisons and
sweeps in :mod:`whisperkit.experiments.tables`, a corpus run's stages in
:mod:`whisperkit.core.corpus.tables`), written here with their decimals and thousands separators.

The report writes these rows as HTML, the app as a compact HTML table; the ``.table()`` and
``stage_table()`` DataFrames hold the same values, so every view shows the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from whisperkit.core.corpus import tables as corpus_tables
from whisperkit.core.corpus.tables import STAGE_COLUMNS, Column
from whisperkit.experiments.metrics import Metric, metric
from whisperkit.experiments.tables import (
    NO_GPU,
    RTFX_MAX,
    RTFX_MIN,
    SWEEP_METRICS,
    metric_value,
    metric_values,
    sweep_header,
    sweep_values,
)
from whisperkit.views import format as fmt
from whisperkit.views.format import MISSING, metric_text

if TYPE_CHECKING:
    import pandas as pd

    from whisperkit.core.corpus.result import CorpusResult
    from whisperkit.experiments.results import Run, Sweep

__all__ = ["NO_GPU", "SWEEP_METRICS", "STAGE_HEADER", "metric_rows", "metric_cell", "sweep_header",
           "sweep_rows", "frame", "stage_rows", "channel_wer_rows"]


def metric_rows(runs: Sequence[Run], *, long: bool = False) -> list[list[str]]:
    """One row per metric a table of ``runs`` shows: its label (``long``: its description), then
    one cell per run."""
    return [[m.description if long else m.label, *(_cell(m.key, value) for value in values)]
            for m, values in metric_values(runs)]


def metric_cell(run: Run, m: Metric) -> str:
    """A run's value of ``m`` as text; where it was not measured, the reason in a few words."""
    return _cell(m.key, metric_value(run, m))


def sweep_rows(sw: Sweep) -> list[list[str]]:
    """The rows of :func:`~whisperkit.experiments.tables.sweep_values` as text, under
    :func:`sweep_header` ``(sw)``."""
    keys = {metric(key).label: key for key in SWEEP_METRICS} | {RTFX_MIN: "rtfx", RTFX_MAX: "rtfx"}
    return [[_cell(keys[label], value) if label in keys else str(value) for label, value in row.items()]
            for row in sweep_values(sw)]


def frame(header: Sequence[str], rows: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Rows as a pandas DataFrame indexed by their first cell (for notebooks and the app)."""
    import pandas as pd

    return pd.DataFrame([list(row[1:]) for row in rows], index=[row[0] for row in rows], columns=list(header[1:]))


STAGE_HEADER = [column.label for column in STAGE_COLUMNS]


def stage_rows(corpus: CorpusResult) -> list[list[str]]:
    """One row per stage of a corpus run, under :data:`STAGE_HEADER`: the rows of
    :meth:`CorpusResult.stage_table` as text."""
    return _text_rows(corpus_tables.stage_rows(corpus.stages, corpus.wall_seconds), STAGE_COLUMNS)


def _text_rows(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[list[str]]:
    return [[str(row[c.key]) if c.digits is None else fmt.number(row[c.key], c.digits) for c in columns] for row in rows]


def _cell(key: str, value: object) -> str:
    """A table value as text: a number with the metric ``key``'s decimals; a reason as it is."""
    return value if isinstance(value, str) else metric_text(key, value, missing=MISSING)


def channel_wer_rows(runs: Sequence[Run]) -> list[list[str]]:
    """Per-channel WER of runs split by channel (``Run.wer_by_channel``): one row per channel
    that has a reference in some run, its name, then one cell per run; no such channel: no rows."""
    channels = list(dict.fromkeys(channel for run in runs for channel in run.wer_by_channel))
    return [[channel, *(metric_text("wer_vs_reference", run.wer_by_channel[channel])
                        if channel in run.wer_by_channel else "n/a (no reference)" for run in runs)]
            for channel in channels]
