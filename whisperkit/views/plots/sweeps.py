"""A batch-size sweep: throughput, peak memory and utilization against batch size."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from whisperkit.checks import is_missing
from whisperkit.experiments.metrics import Metric, metric
from whisperkit.views import format as fmt
from whisperkit.views.plots.common import GPU_COLOR, HOST_COLOR, OOM_COLOR, RUN_COLORS, TEMPLATE, add_note, as_number, no_gpu_note

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from whisperkit.experiments.results import Sweep, SweepPoint

# a sweep's lines: (metric key, panel row, colour)
SWEEP_LINES = (("rtfx", 1, RUN_COLORS[1]), ("peak_rss_mb", 2, HOST_COLOR), ("peak_gpu_mem_mb", 2, GPU_COLOR),
               ("mean_cpu_percent", 3, HOST_COLOR), ("mean_gpu_util_percent", 3, GPU_COLOR))


def sweep(sw: Sweep) -> Figure:
    """Throughput (RTFx) and peak memory (RSS, and GPU when present; MiB) against batch size.

    The x axis is logarithmic with a tick at every measured batch size. The best batch size
    (fastest that fitted) is a star and a dotted line; batch sizes that ran out of memory are
    red crosses (at their RTFx after retrying smaller, or at 0 when nothing fitted).
    A third panel shows mean CPU % and GPU utilization % per batch size.
    """
    from plotly.subplots import make_subplots

    points = sorted(sw.points, key=lambda p: p.batch_size)
    sizes = [p.batch_size for p in points]
    has_gpu = any(p.peak_gpu_mem_mb is not None for p in points)
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=["throughput", "peak memory", "mean utilization"],
    )
    rtfx = [as_number(p.rtfx) for p in points]
    for key, row, color in SWEEP_LINES:
        if has_gpu or not metric(key).gpu_only:
            _sweep_line(fig, sizes, [as_number(getattr(p, key)) for p in points], metric(key), row, color)
    _mark_oom(fig, [p for p in points if p.oom])
    _rtfx_range(fig, sw, sizes)
    best = sw.best
    if best is not None:
        _mark_best(fig, best, rtfx[sizes.index(best)], alone=sw.tied == [best])
    fig.update_xaxes(type="log", tickmode="array", tickvals=sizes, ticktext=[str(s) for s in sizes])
    fig.update_xaxes(title_text="batch size (log scale)", row=3, col=1)
    fig.update_yaxes(title_text="RTFx (audio s per wall s)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="peak MiB", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="mean %", range=[0, 105], row=3, col=1)
    gpu_note = None if has_gpu or not sw.runs else no_gpu_note(
        sw.runs, "On a GPU machine this figure also shows peak GPU memory and mean NVML GPU utilization.")
    notes = [gpu_note] if gpu_note else []
    if not points:
        notes.append("The sweep has no measured batch sizes.")
    if notes:
        add_note(fig, " ".join(notes), name="no-gpu-note" if not has_gpu and sw.runs else "note")
    fig.update_layout(
        template=TEMPLATE,
        title=_sweep_title(sw),
        height=820,
        hovermode="x unified",
        margin=dict(t=120, b=130 if notes else 70),
    )
    return fig


def _sweep_line(fig: Figure, sizes: list[int], values: list[float], m: Metric, row: int, color: str) -> None:
    """One metric of a sweep against batch size; ``meta["series"]`` is the metric's key."""
    fig.add_scatter(
        x=sizes, y=values, mode="lines+markers", name=m.label, line=dict(color=color, width=2),
        hovertemplate=f"{m.label}: %{{y:{fmt.axis_format(m.digits)}}} {m.unit}".rstrip() + "<extra></extra>",
        meta={"series": m.key}, row=row, col=1,
    )


def _mark_best(fig: Figure, best: int, rtfx: float, *, alone: bool) -> None:
    """A star at the sweep's best batch size: the fastest where the runs separate it, else the
    smallest batch size they cannot tell from the fastest (said so)."""
    name = "best batch size" if alone else "smallest batch size as fast within noise"
    fig.add_scatter(
        x=[best], y=[rtfx], mode="markers", name=name,
        marker=dict(symbol="star", size=18, color="#f1c40f", line=dict(color="#333", width=1)),
        hovertemplate=f"{name} {best}: RTFx %{{y:{fmt.axis_format(metric('rtfx').digits)}}}<extra></extra>", meta={"series": "best"},
        row=1, col=1,
    )
    fig.add_vline(x=best, line=dict(color="#b7950b", dash="dot", width=1), name="best", row="all", col=1)
    text = f"best: batch size {best}" if alone else f"batch size {best}: no slower within noise"
    fig.add_annotation(x=math.log10(best), y=rtfx, xref="x", yref="y", text=text,
                       showarrow=True, arrowhead=2, ax=0, ay=-36, name="best")


def _rtfx_range(fig: Figure, sw: Sweep, sizes: list[int]) -> None:
    """Error bars from the lowest to the highest RTFx of each batch size's repeats (where repeated)."""
    if not any(len(values) > 1 for values in sw.repeat_rtfx.values()):
        return
    trace = next(t for t in fig.data if (t.meta or {}).get("series") == "rtfx")
    ys = list(trace.y)
    spreads = [sw.repeat_rtfx.get(size) or [y] for size, y in zip(sizes, ys)]
    trace.error_y = dict(type="data", symmetric=False, array=[max(v) - y for v, y in zip(spreads, ys)],
                         arrayminus=[y - min(v) for v, y in zip(spreads, ys)], thickness=1.2, width=5)
    trace.name = f"{trace.name} (median; bars: lowest to highest of the repeats)"


def _mark_oom(fig: Figure, points: list[SweepPoint]) -> None:
    if not points:
        return
    ys = [0.0 if is_missing(p.rtfx) else float(p.rtfx) for p in points]
    words = ["out of memory even at batch size 1" if is_missing(p.rtfx) else "out of memory, retried smaller"
             for p in points]
    fig.add_scatter(
        x=[p.batch_size for p in points], y=ys, mode="markers", name="out of memory",
        marker=dict(symbol="x", size=14, color=OOM_COLOR), text=words, cliponaxis=False,
        hovertemplate="batch size %{x}: %{text}<extra></extra>", meta={"series": "oom"}, row=1, col=1,
    )


def _sweep_title(sw: Sweep) -> str:
    import textwrap

    headline = sw.verdict if sw.points else "nothing measured"
    lines = "<br>".join(textwrap.wrap(headline[:1].upper() + headline[1:], 110))
    why = f"<br>stopped: {sw.stopped_because}" if sw.stopped_because else ""
    return f"Batch-size sweep<br><sup>{lines}{why}</sup>"
