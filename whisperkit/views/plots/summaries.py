"""Before and after (or any runs) as grouped bars: throughput, CPU, GPU and peak memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from whisperkit.checks import is_missing
from whisperkit.experiments.metrics import metric
from whisperkit.views import format as fmt
from whisperkit.views.plots.common import TEMPLATE, add_note, as_number, no_gpu_note, run_look, runs_of, speedup_title

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from whisperkit.experiments.results import Run
    from whisperkit.views.plots.common import Runs

# view layout only: which metrics share a panel, and the panel's axis title; each bar's label,
# unit, decimals and whether it needs a GPU come from the metrics registry
SUMMARY_PANELS = (
    ("throughput", "RTFx (audio s per wall s)", ("rtfx",)),
    ("CPU", "mean CPU % of all cores", ("mean_cpu_percent", "mean_process_cpu_percent")),
    ("GPU", "mean GPU utilization %", ("mean_gpu_util_percent",)),
    ("peak memory", "peak MiB", ("peak_rss_mb", "peak_gpu_mem_mb")),
)


def summary(obj: Runs) -> Figure:
    """Grouped bars, one colour per run: RTFx, mean CPU % (system and process), mean GPU
    utilization % (only with a GPU; otherwise a note) and peak memory (RSS and GPU, MiB).

    ``obj`` is a Comparison, a Run, a Sweep or a list of Runs. Each bar trace carries its run's
    label in ``meta["run"]`` and the metric keys in ``meta["metrics"]``.
    """
    from plotly.subplots import make_subplots

    runs = runs_of(obj)
    has_gpu = any(not is_missing(run.metrics.get("mean_gpu_util_percent")) for run in runs)
    panels = [(title, axis, [metric(key) for key in keys if has_gpu or not metric(key).gpu_only])
              for title, axis, keys in SUMMARY_PANELS]
    panels = [panel for panel in panels if panel[2]]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for title, _, _ in panels],
                        horizontal_spacing=0.08)
    for col, (_, axis, shown) in enumerate(panels, start=1):
        for run in runs:
            look = run_look(runs, run)
            values = [run.metrics.get(m.key) for m in shown]
            fig.add_bar(
                x=[m.label for m in shown],
                y=[as_number(v) for v in values],
                name=run.label,
                legendgroup=look["group"],
                showlegend=col == 1,
                marker_color=look["color"],
                text=[fmt.metric_text(m.key, v) for m, v in zip(shown, values)],
                hovertext=[f"{fmt.metric_text(m.key, v)} {m.unit}".rstrip() for m, v in zip(shown, values)],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"%{{x}}: %{{hovertext}}<extra>{run.label}</extra>",
                meta={"run": run.label, "metrics": [m.key for m in shown]},
                row=1,
                col=col,
            )
        fig.update_yaxes(title_text=axis, rangemode="tozero", row=1, col=col)
        if all(m.unit == "%" for m in shown):
            fig.update_yaxes(range=[0, 110], row=1, col=col)
    note = None if has_gpu else no_gpu_note(runs, "On a GPU machine this figure also shows mean NVML GPU utilization and peak GPU memory.")
    if note:
        add_note(fig, note, name="no-gpu-note")
    fig.update_layout(
        template=TEMPLATE,
        title=_summary_title(obj, runs),
        barmode="group",
        height=460,
        margin=dict(t=150, b=130 if note else 60),
        legend=dict(orientation="h", yanchor="bottom", y=1.12, x=0),
    )
    return fig


def _summary_title(obj: Runs, runs: list[Run]) -> str:
    from whisperkit.experiments.results import Comparison

    if isinstance(obj, Comparison):
        return speedup_title("Before and after", obj)
    return f"Summary of {len(runs)} run{'s' if len(runs) != 1 else ''}<br><sup>over the transcription " \
           "(prepare and decode), model load excluded; peak RSS includes the load</sup>"
