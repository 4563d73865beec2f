"""What every figure shares: colours, the runs inside a result, notes, titles.

Colours stay the same everywhere: the first run ("before") is red, the second ("after") teal.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from whisperkit.errors import WhisperkitError
from whisperkit.measure.columns import gpu_indices
from whisperkit.views import format as fmt

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from whisperkit.experiments.results import Comparison, Run, Sweep

    #: What a figure can show: a Run, a Comparison (before, after), a Sweep or a list of Runs.
    Runs = Run | Comparison | Sweep | Sequence[Run]

TEMPLATE = "plotly_white"
RUN_COLORS = ("#c0392b", "#16808d", "#e69f00", "#6a3d9a", "#4d4d4d", "#b15928")  # before, after, ...
PHASE_COLORS = {"load": "#9e9e9e", "prepare": "#f39c12", "decode": "#27ae60", "retry": "#c0392b"}
OOM_COLOR = "#c0392b"
HOST_COLOR = "#4d4d4d"  # sweep: CPU and process memory
GPU_COLOR = "#e69f00"  # sweep: GPU utilization and memory
NO_GPU_NOTE = "No GPU visible{where}: {reason}. {on_gpu}"
# plotly does not wrap annotation text; we wrap it ourselves, narrow enough (about 600 px at 12 px)
# to fit a notebook's output area beside the plot's left margin
NOTE_WIDTH_CHARS = 90


def runs_of(obj: object) -> list[Run]:
    """The runs inside ``obj``: a Run, a Comparison (before, after), a Sweep or a list of Runs."""
    from whisperkit.experiments.results import Comparison, Run, Sweep

    if isinstance(obj, Run):
        return [obj]
    if isinstance(obj, Comparison):
        return [obj.before, obj.after]
    if isinstance(obj, Sweep):
        return list(obj.runs)
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(item, Run) for item in obj):
        return list(obj)
    raise WhisperkitError(
        f"expected a Run, a Comparison, a Sweep or a non-empty list of Runs, got {describe(obj)}"
    )


def speedup_title(what: str, comparison: Comparison) -> str:
    """A figure title with the comparison's verdict and both wall times."""
    before = comparison.before.metrics.get("wall_seconds")
    after = comparison.after.metrics.get("wall_seconds")
    return (f"{what}: {comparison.verdict}<br><sup>wall {fmt.metric_text('wall_seconds', before)} s before, {fmt.metric_text('wall_seconds', after)} s after "
            f"(transcription only, median of {len(comparison.before_runs)} run(s) per side)</sup>")


def no_gpu_note(runs: Sequence[Run], on_gpu: str) -> str | None:
    """The sentences saying why GPU data is missing, or None when every run has GPU data."""
    missing = [run for run in runs if not gpu_indices(run.timeline)]
    if not missing:
        return None
    reasons = dict.fromkeys(_gpu_reason(run) for run in missing)
    where = "" if len(missing) == len(runs) else " in " + ", ".join(run.label for run in missing)
    return NO_GPU_NOTE.format(where=where, reason="; ".join(reasons), on_gpu=on_gpu)


def _gpu_reason(run: Run) -> str:
    reason = run.gpu_unavailable_reason or (run.environment or {}).get("gpu_unavailable_reason")
    return (reason or "the run recorded no GPU readings").rstrip(". ")


def add_note(fig: Figure, text: str, *, name: str) -> None:
    """A grey note under the plot, wrapped to the figure's width."""
    wrapped = "<br>".join(textwrap.wrap(text, NOTE_WIDTH_CHARS))
    fig.add_annotation(
        text=wrapped, xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="top", yshift=-60,
        showarrow=False, align="left", font=dict(size=12, color="#555"), bgcolor="#f6f6f6",
        bordercolor="#ddd", borderpad=6, name=name,
    )


def run_look(runs: Sequence[Run], run: Run) -> dict[str, str]:
    """A run's colour (by position: before, after, ...) and legend group (unique per run)."""
    index = next(i for i, candidate in enumerate(runs) if candidate is run)
    return {"color": RUN_COLORS[index % len(RUN_COLORS)], "group": f"run {index}"}


def as_number(value: float | None) -> float:
    """A metric as a float; None (not measured) becomes NaN, which plotly leaves out."""
    return math.nan if value is None else float(value)  # NaN stays NaN


def describe(obj: object) -> str:
    """What ``obj`` is, for an error message: ``a list of int, str``."""
    if isinstance(obj, (list, tuple)):
        return f"an empty {type(obj).__name__}" if not obj else f"a {type(obj).__name__} of " + \
            ", ".join(sorted({type(item).__name__ for item in obj}))
    return type(obj).__name__
