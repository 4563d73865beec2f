"""The tables every view shows, as rows of text: each metric from the registry, formatted once.

The report writes these rows as HTML, the app as a compact HTML table; labels, units, decimals
and GPU-only come from :data:`whisperkit.experiments.metrics.METRICS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from whisperkit.checks import is_missing
from whisperkit.experiments.metrics import Metric, metric, shown_metrics
from whisperkit.experiments.results import NO_GPU, SWEEP_METRICS, missing_text
from whisperkit.experiments.verdicts import Spread
from whisperkit.views import format as fmt
from whisperkit.views.format import MISSING, metric_text

if TYPE_CHECKING:
    import pandas as pd

    from whisperkit.core.corpus.result import CorpusResult
    from whisperkit.experiments.results import Run, Sweep

__all__ = ["NO_GPU", "SWEEP_METRICS", "metric_rows", "metric_cell", "sweep_header", "sweep_rows", "frame", "stage_rows"]


def metric_rows(runs: Sequence[Run], *, long: bool = False) -> list[list[str]]:
    """One row per registered metric (corpus-only ones only for corpus runs): its label
    (``long``: its description), then one cell per run."""
    return [[m.description if long else m.label, *(metric_cell(run, m) for run in runs)] for m in shown_metrics(runs)]


def metric_cell(run: Run, m: Metric) -> str:
    """A run's value of ``m`` as text; where it was not measured, the reason in a few words."""
    value = run.metrics.get(m.key)
    return missing_text(run, m) if is_missing(value) else metric_text(m.key, value)


def sweep_header(sw: Sweep | None = None) -> list[str]:
    """The header of :func:`sweep_rows` (of ``sw``: with its RTFx range where it has repeats)."""
    rtfx = [metric("rtfx").label, *(["RTFx min-max"] if sw is not None and _repeated(sw) else [])]
    return ["batch size", *rtfx, *(metric(key).label for key in SWEEP_METRICS[1:]), "out of memory"]


def sweep_rows(sw: Sweep) -> list[list[str]]:
    """One row per batch size, smallest first: the batch size, each metric (the median run's; with
    repeats, the RTFx range after the median), ``yes``/``no`` out of memory."""
    has_gpu = any(p.peak_gpu_mem_mb is not None for p in sw.points)
    repeated = _repeated(sw)
    rows = []
    for point in sorted(sw.points, key=lambda p: p.batch_size):
        cells = [metric_text(key, getattr(point, key), missing=MISSING if has_gpu or not metric(key).gpu_only else NO_GPU)
                 for key in SWEEP_METRICS]
        if repeated:
            spread = Spread.of(sw.repeat_rtfx.get(point.batch_size, []))
            cells.insert(1, MISSING if spread.count == 0 else
                         f"{metric_text('rtfx', spread.low)}-{metric_text('rtfx', spread.high)} ({spread.count} runs)")
        rows.append([str(point.batch_size), *cells, "yes" if point.oom else "no"])
    return rows


def _repeated(sw: Sweep) -> bool:
    return any(len(values) > 1 for values in sw.repeat_rtfx.values())


def frame(header: Sequence[str], rows: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Rows as a pandas DataFrame indexed by their first cell (for notebooks and the app)."""
    import pandas as pd

    return pd.DataFrame([list(row[1:]) for row in rows], index=[row[0] for row in rows], columns=list(header[1:]))


STAGE_HEADER = ["stage", "threads", "items", "busy s", "wait s", "busy % of the run"]


def stage_rows(corpus: CorpusResult) -> list[list[str]]:
    """One row per stage of a corpus run (a CorpusResult): threads, items, busy and wait seconds,
    busy percent of the run (over 100 for a pool of threads working at once)."""
    wall = corpus.wall_seconds
    return [[name, str(stats.threads), str(stats.items), fmt.number(stats.busy_seconds, 2),
             fmt.number(stats.wait_seconds, 2), fmt.number(100.0 * stats.busy_seconds / wall, 0) if wall else MISSING]
            for name, stats in corpus.stages.items()]


def channel_wer_rows(runs: Sequence[Run]) -> list[list[str]]:
    """Per-channel WER of runs split by channel (``Run.wer_by_channel``): one row per channel
    that has a reference in some run, its name, then one cell per run; no such channel: no rows."""
    channels = list(dict.fromkeys(channel for run in runs for channel in run.wer_by_channel))
    return [[channel, *(metric_text("wer_vs_reference", run.wer_by_channel[channel])
                        if channel in run.wer_by_channel else "n/a (no reference)" for run in runs)]
            for channel in channels]
