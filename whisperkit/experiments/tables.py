"""The values of the experiments' tables, built once: a run's metrics, a comparison's two sides,
a sweep's batch sizes.

Each value is a number rounded to its metric's digits (:data:`whisperkit.experiments.metrics.METRICS`;
a whole number where it has none) or, where it was not measured, the reason in a few words
(:func:`missing_text`: ``n/a (no GPU)``, never a bare None). ``Run.table()``, ``Comparison.table()``
and ``Sweep.table()`` are these values as pandas DataFrames; :mod:`whisperkit.views.tables`
writes the same values as text for the report, the app and the CLI. The corpus stage and
worker tables are built in :mod:`whisperkit.core.corpus.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from whisperkit.checks import is_missing
from whisperkit.experiments.metrics import Metric, RunRecord, metric, rounded, shown_metrics
from whisperkit.experiments.verdicts import Spread, Sweep

NO_GPU = "n/a (no GPU)"  # a GPU metric of a run that had no GPU, in every table
NOT_MEASURED = "n/a"
# the columns of a sweep's tables after the batch size (SweepPoint fields named as metrics)
SWEEP_METRICS = ("rtfx", "wall_seconds", "peak_rss_mb", "peak_gpu_mem_mb", "mean_cpu_percent", "mean_gpu_util_percent")
BATCH_SIZE, RTFX_MIN, RTFX_MAX, OUT_OF_MEMORY = "batch size", "RTFx min", "RTFx max", "out of memory"


def missing_text(run_: RunRecord, m: Metric) -> str:
    """Why ``run_`` has no value of ``m``, in a few words (``n/a (no GPU)``, ``n/a (no reference)``, ...)."""
    if m.gpu_only:
        return NO_GPU
    if m.key == "wer_vs_reference":
        return "n/a (no reference)"
    if m.corpus_only:
        return "n/a (not corpus mode)"
    if m.key == "batch_size" and run_.config.mode == "sequential":
        return "none (sequential)"
    return NOT_MEASURED


def shown_value(key: str, value: object) -> object:
    """``value`` rounded to the metric ``key``'s digits; a whole number where it has none (``812``, not ``812.0``)."""
    shown = rounded(key, value)
    return int(shown) if metric(key).digits == 0 and isinstance(shown, float) and math.isfinite(shown) else shown


def metric_value(run_: RunRecord, m: Metric) -> object:
    """``run_``'s value of ``m`` as every table shows it: rounded, or why it is missing."""
    value = run_.metrics.get(m.key)
    return missing_text(run_, m) if is_missing(value) else shown_value(m.key, value)


def metric_values(runs: Sequence[RunRecord]) -> list[tuple[Metric, list[object]]]:
    """Each metric a table of ``runs`` shows (corpus-only ones only with a corpus run), with
    each run's :func:`metric_value`."""
    return [(m, [metric_value(run_, m) for run_ in runs]) for m in shown_metrics(runs)]


def table_values(run_: RunRecord) -> dict[str, object]:
    """A run's configuration and metrics under the registry's labels: the column of ``Run.table()``."""
    return {"configuration": run_.label, **{m.label: values[0] for m, values in metric_values([run_])}}


def repeat_walls(runs: Sequence[Any]) -> str:
    """The wall seconds of each repeat, with the metric's digits: ``"1.02, 0.98"``."""
    return ", ".join(f"{r.transcript.wall_seconds:.{metric('wall_seconds').digits}f}" for r in runs)


def sweep_values(sw: Sweep) -> list[dict[str, object]]:
    """One row per batch size, smallest first, under the registry's labels: the batch size, each
    of :data:`SWEEP_METRICS` (the median run's; with repeats, the lowest and highest RTFx after
    the median), and ``yes``/``no`` out of memory. A GPU reading of a sweep without a GPU reads
    ``n/a (no GPU)``."""
    has_gpu = any(p.peak_gpu_mem_mb is not None for p in sw.points)
    repeated = any(len(values) > 1 for values in sw.repeat_rtfx.values())
    rows = []
    for point in sorted(sw.points, key=lambda p: p.batch_size):
        row: dict[str, object] = {BATCH_SIZE: point.batch_size}
        for key in SWEEP_METRICS:
            value = getattr(point, key)
            missing = NO_GPU if metric(key).gpu_only and not has_gpu else NOT_MEASURED
            row[metric(key).label] = missing if is_missing(value) else shown_value(key, value)
            if key == "rtfx" and repeated:
                spread = Spread.of(sw.repeat_rtfx.get(point.batch_size, []))
                row[RTFX_MIN] = NOT_MEASURED if spread.count == 0 else shown_value(key, spread.low)
                row[RTFX_MAX] = NOT_MEASURED if spread.count == 0 else shown_value(key, spread.high)
        row[OUT_OF_MEMORY] = "yes" if point.oom else "no"
        rows.append(row)
    return rows


def sweep_header(sw: Sweep | None = None) -> list[str]:
    """The columns of :func:`sweep_values` (of ``sw``: with the RTFx range where it has repeats)."""
    repeated = sw is not None and any(len(values) > 1 for values in sw.repeat_rtfx.values())
    return [BATCH_SIZE, metric("rtfx").label, *([RTFX_MIN, RTFX_MAX] if repeated else []),
            *(metric(key).label for key in SWEEP_METRICS[1:]), OUT_OF_MEMORY]
