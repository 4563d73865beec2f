"""Plotly figures of runs: utilization timelines, before/after summaries, batch-size sweeps.

Every function returns a ``plotly.graph_objects.Figure`` and never shows it; a notebook displays
the figure it gets, :func:`whisperkit.views.report.report` writes it into an HTML file.

>>> from whisperkit.views import plots
>>> plots.timeline(comparison)          # doctest: +SKIP   CPU (and GPU) over time, per run
>>> plots.summary(comparison)           # doctest: +SKIP   RTFx, CPU %, GPU %, memory as bars
>>> plots.sweep(sweep_result)           # doctest: +SKIP   RTFx and memory against batch size

Colours stay the same everywhere: the first run ("before") is red, the second ("after") teal.
Phases are shaded: ``load`` (the model), ``prepare`` (audio decoding, VAD and log-mel features;
CPU only) and ``decode`` (the model's windows or batches). Without a visible GPU no empty GPU
panel is drawn; a note says why instead.
"""

from __future__ import annotations

import math
import textwrap

from whisperkit.errors import WhisperkitError
from whisperkit.measure.columns import gpu_column, gpu_indices

TEMPLATE = "plotly_white"
RUN_COLORS = ("#c0392b", "#16808d", "#e69f00", "#6a3d9a", "#4d4d4d", "#b15928")  # before, after, ...
PHASE_COLORS = {"load": "#9e9e9e", "prepare": "#f39c12", "decode": "#27ae60", "retry": "#c0392b"}
OOM_COLOR = "#c0392b"
HOST_COLOR = "#4d4d4d"  # sweep: CPU and process memory
GPU_COLOR = "#e69f00"  # sweep: GPU utilization and memory
PANELS = ("cpu", "gpu", "memory")
DEFAULT_PANELS = ("cpu", "gpu")
ROW_HEIGHT_PX = 230
NO_GPU_NOTE = "No GPU visible{where}: {reason}. {on_gpu}"
ON_GPU_TIMELINE = "On a GPU machine a GPU panel under each CPU panel shows NVML utilization and memory used."
NOTE_WIDTH_CHARS = 120  # plotly does not wrap annotation text; we wrap it ourselves


def timeline(obj, *, metrics=None):
    """Utilization over time for each run, stacked, on one shared time axis (seconds).

    ``obj`` is a Run, a Comparison (before above after), a Sweep or a list of Runs.
    ``metrics`` picks the panels per run from ``"cpu"`` (system and process CPU, 0-100 % of all
    cores), ``"gpu"`` (NVML utilization %, memory used MiB on the right axis) and ``"memory"``
    (process resident memory, MiB); default ``("cpu", "gpu")``. A run without GPU columns gets
    no GPU panel; a note under the figure gives the reason.
    """
    from plotly.subplots import make_subplots

    runs = runs_of(obj)
    panels = _panel_names(metrics)
    rows = [(run, panel) for run in runs for panel in panels if _has_panel(run, panel)]
    height = ROW_HEIGHT_PX * max(len(rows), 1) + 190
    if rows:
        fig = make_subplots(
            rows=len(rows),
            cols=1,
            shared_xaxes=True,
            vertical_spacing=min(70 / height, 0.9 / max(len(rows) - 1, 1)),
            subplot_titles=[_panel_title(run, panel) for run, panel in rows],
            specs=[[{"secondary_y": panel == "gpu"}] for _, panel in rows],
        )
    else:
        import plotly.graph_objects as go

        fig = go.Figure()
    first_row = {}
    for row, (run, panel) in enumerate(rows, start=1):
        first_row.setdefault(id(run), row)
        _PANEL_DRAWERS[panel](fig, run, row, _run_look(runs, run))
        _draw_phases(fig, run, row, labelled=first_row[id(run)] == row)
    if rows:
        fig.update_xaxes(title_text="time since the run started (s)", row=len(rows), col=1)
    note = _no_gpu_note(runs, ON_GPU_TIMELINE) if "gpu" in panels else None
    if note:
        _add_note(fig, note, name="no-gpu-note")
    fig.update_layout(
        template=TEMPLATE,
        title=_timeline_title(obj, runs),
        height=height,
        hovermode="x unified",
        margin=dict(t=110, b=130 if note else 70),
        legend=dict(groupclick="toggleitem"),
    )
    return fig


def summary(obj):
    """Grouped bars, one colour per run: RTFx, mean CPU % (system and process), mean GPU
    utilization % (only with a GPU; otherwise a note) and peak memory (RSS and GPU, MiB).

    ``obj`` is a Comparison, a Run, a Sweep or a list of Runs. Each bar trace carries its run's
    label in ``meta["run"]`` and the metric keys in ``meta["metrics"]``.
    """
    from plotly.subplots import make_subplots

    runs = runs_of(obj)
    has_gpu = any(run.metrics.get("mean_gpu_util_percent") is not None for run in runs)
    groups = [group for group in _SUMMARY_GROUPS if has_gpu or not group["gpu_only"]]
    fig = make_subplots(rows=1, cols=len(groups), subplot_titles=[g["title"] for g in groups],
                        horizontal_spacing=0.08)
    for col, group in enumerate(groups, start=1):
        bars = [(name, key) for name, key in group["bars"] if has_gpu or key != "peak_gpu_mem_mb"]
        for run in runs:
            look = _run_look(runs, run)
            values = [_number(run.metrics.get(key)) for _, key in bars]
            fig.add_bar(
                x=[name for name, _ in bars],
                y=values,
                name=run.label,
                legendgroup=look["group"],
                showlegend=col == 1,
                marker_color=look["color"],
                text=[_format(v, group["digits"]) for v in values],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"%{{x}}: %{{y:.{group['digits']}f}} {group['unit']}<extra>{run.label}</extra>",
                meta={"run": run.label, "metrics": [key for _, key in bars]},
                row=1,
                col=col,
            )
        fig.update_yaxes(title_text=group["axis"], rangemode="tozero", row=1, col=col)
        if group["axis"].endswith("%"):
            fig.update_yaxes(range=[0, 110], row=1, col=col)
    note = None if has_gpu else _no_gpu_note(runs, "On a GPU machine this figure also shows mean NVML GPU utilization and peak GPU memory.")
    if note:
        _add_note(fig, note, name="no-gpu-note")
    fig.update_layout(
        template=TEMPLATE,
        title=_summary_title(obj, runs),
        barmode="group",
        height=460,
        margin=dict(t=150, b=130 if note else 60),
        legend=dict(orientation="h", yanchor="bottom", y=1.12, x=0),
    )
    return fig


def sweep(sw):
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
    rtfx = [_number(p.rtfx) for p in points]
    _sweep_line(fig, sizes, rtfx, "RTFx", "", 1, RUN_COLORS[1], digits=1)
    _sweep_line(fig, sizes, [_number(p.peak_rss_mb) for p in points], "process RSS", "MiB", 2, HOST_COLOR)
    if has_gpu:
        _sweep_line(fig, sizes, [_number(p.peak_gpu_mem_mb) for p in points], "GPU memory used", "MiB", 2, GPU_COLOR)
    _sweep_line(fig, sizes, [_number(p.mean_cpu_percent) for p in points], "system CPU", "%", 3, HOST_COLOR)
    if has_gpu:
        _sweep_line(fig, sizes, [_number(p.mean_gpu_util_percent) for p in points], "GPU utilization", "%", 3, GPU_COLOR)
    _mark_oom(fig, [p for p in points if p.oom])
    best = sw.best
    if best is not None:
        _mark_best(fig, best, rtfx[sizes.index(best)])
    fig.update_xaxes(type="log", tickmode="array", tickvals=sizes, ticktext=[str(s) for s in sizes])
    fig.update_xaxes(title_text="batch size (log scale)", row=3, col=1)
    fig.update_yaxes(title_text="RTFx (audio s per wall s)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="peak MiB", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="mean %", range=[0, 105], row=3, col=1)
    notes = [] if has_gpu or not sw.runs else [_no_gpu_note(sw.runs, "On a GPU machine this figure also shows peak GPU memory and mean NVML GPU utilization.")]
    if not points:
        notes.append("The sweep has no measured batch sizes.")
    if notes:
        _add_note(fig, " ".join(notes), name="no-gpu-note" if not has_gpu and sw.runs else "note")
    fig.update_layout(
        template=TEMPLATE,
        title=_sweep_title(sw),
        height=820,
        hovermode="x unified",
        margin=dict(t=100, b=130 if notes else 70),
    )
    return fig


def runs_of(obj) -> list:
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
        f"expected a Run, a Comparison, a Sweep or a non-empty list of Runs, got {_describe(obj)}"
    )


def phases(run) -> list[tuple[str, float, float]]:
    """``(label, start_s, end_s)`` per phase: each mark starts one, the next mark or the last
    sample ends it (``load``, ``prepare``, ``decode``; after an out-of-memory ``retry`` the
    pipeline starts again)."""
    marks = run.marks
    if marks is None or len(marks) == 0:
        return []
    ordered = marks.sort_values("time_s", kind="stable")
    starts = [float(t) for t in ordered["time_s"]]
    labels = [str(label) for label in ordered["label"]]
    end_s = _end_seconds(run, starts[-1])
    ends = starts[1:] + [end_s]
    return [(label, start, max(end, start)) for label, start, end in zip(labels, starts, ends)]


# ---- timeline panels ---------------------------------------------------------------------


def _cpu_panel(fig, run, row, look) -> None:
    frame = run.timeline
    traces = (("cpu_percent", "system CPU", "dot"), ("process_cpu_percent", "this process CPU", "solid"))
    for column, name, dash in traces:
        if column in frame:
            _line(fig, run, frame, column, name, "%", row, look, dash)
    fig.update_yaxes(title_text="CPU % of all cores", range=[0, 105], row=row, col=1)


def _gpu_panel(fig, run, row, look) -> None:
    frame = run.timeline
    dashes = ("solid", "dash", "dashdot", "longdash")
    memory_top_mb = 0.0
    for number, index in enumerate(gpu_indices(frame)):
        dash = dashes[number % len(dashes)]
        _line(fig, run, frame, gpu_column(index, "util_percent"), f"GPU {index} utilization", "%", row, look, dash)
        memory = gpu_column(index, "mem_used_mb")
        if memory in frame:
            _line(fig, run, frame, memory, f"GPU {index} memory used", "MiB", row, look, "dot", secondary_y=True,
                  opacity=0.7)
            total = gpu_column(index, "mem_total_mb")
            column = frame[total] if total in frame else frame[memory]
            if not column.isna().all():
                memory_top_mb = max(memory_top_mb, float(column.max()))
    fig.update_yaxes(title_text="GPU utilization %", range=[0, 105], row=row, col=1, secondary_y=False)
    fig.update_yaxes(title_text="GPU memory MiB", row=row, col=1, secondary_y=True, showgrid=False, tickformat=",d",
                     range=[0, memory_top_mb * 1.05] if memory_top_mb > 0 else None)


def _memory_panel(fig, run, row, look) -> None:
    _line(fig, run, run.timeline, "process_rss_mb", "process RSS", "MiB", row, look, "solid")
    fig.update_yaxes(title_text="resident memory MiB", rangemode="tozero", row=row, col=1)


_PANEL_DRAWERS = {"cpu": _cpu_panel, "gpu": _gpu_panel, "memory": _memory_panel}


def _line(fig, run, frame, column, name, unit, row, look, dash, *, secondary_y=False, opacity=1.0) -> None:
    """One timeline column as a line; ``meta`` names the run and the column.

    Each run is one legend group; a column gets one legend entry even when it is drawn in
    several panels."""
    digits = 0 if unit == "MiB" else 1
    fig.add_scatter(
        x=frame["time_s"].to_numpy(),
        y=frame[column].to_numpy(dtype=float),
        mode="lines",
        name=name,
        legendgroup=look["group"],
        legendgrouptitle_text=run.label,
        showlegend=not any(t.legendgroup == look["group"] and t.name == name and t.showlegend for t in fig.data),
        line=dict(color=look["color"], dash=dash, width=2),
        opacity=opacity,
        hovertemplate=f"{name}: %{{y:.{digits}f}} {unit}<extra></extra>",
        meta={"run": run.label, "column": column},
        row=row,
        col=1,
        secondary_y=secondary_y,
    )


def _draw_phases(fig, run, row, *, labelled: bool) -> None:
    """Shade each phase in one panel; ``labelled`` panels also name the phases."""
    for number, (label, start_s, end_s) in enumerate(phases(run)):
        color = PHASE_COLORS.get(label, "#7f7f7f")
        fig.add_vrect(x0=start_s, x1=end_s, fillcolor=color, opacity=0.10, line_width=0, layer="below",
                      name=label, row=row, col=1)
        fig.add_vline(x=start_s, line=dict(color=color, width=1, dash="dot"), name=f"{label} start",
                      row=row, col=1)
        if labelled:
            short, detail = _phase_words(run, label)
            fig.add_annotation(
                x=start_s, y=1 - 0.13 * (number % 4), xref=_axis_ref(fig, row, "x"),
                yref=f"{_axis_ref(fig, row, 'y')} domain", text=short, hovertext=detail,
                showarrow=False, xanchor="left", yanchor="top", font=dict(size=11, color=color),
                bgcolor="rgba(255,255,255,0.75)", name=f"phase: {label}",
            )


def _phase_words(run, label: str) -> tuple[str, str]:
    """A short label and a hover explanation for a phase."""
    options = run.config.options or {}
    batched = run.config.mode == "batched"
    vad = options.get("vad_filter", batched)
    if label == "load":
        return "load", "load: the model is read and placed on its device"
    if label == "prepare":
        work = "audio decoding, VAD and log-mel features" if vad else "audio decoding and log-mel features"
        return "prepare (CPU)", f"prepare: {work}, CPU only"
    if label == "decode":
        batch = run.transcript.config.get("batch_size")
        how = f"batches of up to {batch} chunks" if batched else "one 30 s window at a time"
        return "decode", f"decode: the model runs, {how}"
    if label == "retry":
        return "retry", "retry: out of memory, batch size halved and the pipeline started again"
    return label, label


def _axis_ref(fig, row: int, letter: str) -> str:
    """``x``/``x2``/... (or ``y``...) of a row's primary axis, as shapes and annotations name it."""
    subplot = fig.get_subplot(row, 1)
    axis = subplot.xaxis if letter == "x" else subplot.yaxis
    return axis.plotly_name.replace("axis", "")


def _has_panel(run, panel: str) -> bool:
    frame = run.timeline
    if frame is None or len(frame) == 0:
        return False
    if panel == "gpu":
        return bool(gpu_indices(frame))
    if panel == "memory":
        return "process_rss_mb" in frame
    return True


def _panel_names(metrics) -> tuple[str, ...]:
    if metrics is None:
        return DEFAULT_PANELS
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [name for name in names if name not in PANELS]
    if unknown or not names:
        raise WhisperkitError(f"unknown timeline panels {unknown or names!r}; expected some of: {', '.join(PANELS)}")
    return names


def _panel_title(run, panel: str) -> str:
    words = {"cpu": "CPU", "gpu": "GPU (NVML)", "memory": "memory"}[panel]
    return f"<b>{run.label}</b> · {words}"


def _end_seconds(run, last_mark_s: float) -> float:
    frame = run.timeline
    if frame is not None and len(frame) and "time_s" in frame:
        return max(float(frame["time_s"].max()), last_mark_s)
    return last_mark_s + float(run.transcript.wall_seconds or 0.0)


def _timeline_title(obj, runs) -> str:
    from whisperkit.experiments.results import Comparison

    if isinstance(obj, Comparison):
        return _speedup_title("Utilization over time", obj)
    parts = [f"{run.label}: RTFx {_format(run.metrics.get('rtfx'), 1)}" for run in runs[:4]]
    more = f" (+{len(runs) - 4} more)" if len(runs) > 4 else ""
    return "Utilization over time<br><sup>" + "; ".join(parts) + more + "</sup>"


# ---- summary -----------------------------------------------------------------------------

_SUMMARY_GROUPS = (
    {"title": "throughput", "axis": "RTFx (audio s per wall s)", "unit": "x", "digits": 1, "gpu_only": False,
     "bars": (("RTFx", "rtfx"),)},
    {"title": "CPU", "axis": "mean CPU % of all cores", "unit": "%", "digits": 0, "gpu_only": False,
     "bars": (("system", "mean_cpu_percent"), ("this process", "mean_process_cpu_percent"))},
    {"title": "GPU", "axis": "mean GPU utilization %", "unit": "%", "digits": 0, "gpu_only": True,
     "bars": (("busiest GPU", "mean_gpu_util_percent"),)},
    {"title": "peak memory", "axis": "peak MiB", "unit": "MiB", "digits": 0, "gpu_only": False,
     "bars": (("process RSS", "peak_rss_mb"), ("GPU memory", "peak_gpu_mem_mb"))},
)


def _summary_title(obj, runs) -> str:
    from whisperkit.experiments.results import Comparison

    if isinstance(obj, Comparison):
        return _speedup_title("Before and after", obj)
    return f"Summary of {len(runs)} run{'s' if len(runs) != 1 else ''}<br><sup>over the transcription " \
           "(prepare and decode), model load excluded; peak RSS includes the load</sup>"


def _speedup_title(what: str, comparison) -> str:
    before = comparison.before.metrics.get("wall_seconds")
    after = comparison.after.metrics.get("wall_seconds")
    return (f"{what}: {comparison.verdict}<br><sup>wall {_format(before, 2)} s before, {_format(after, 2)} s after "
            f"(transcription only, median of {len(comparison.before_runs)} run(s) per side)</sup>")


# ---- sweep -------------------------------------------------------------------------------


def _sweep_line(fig, sizes, values, name, unit, row, color, digits: int = 0) -> None:
    fig.add_scatter(
        x=sizes, y=values, mode="lines+markers", name=name, line=dict(color=color, width=2),
        hovertemplate=f"{name}: %{{y:.{digits}f}} {unit}<extra></extra>".replace("  <", " <"),
        meta={"series": name}, row=row, col=1,
    )


def _mark_best(fig, best: int, rtfx: float) -> None:
    fig.add_scatter(
        x=[best], y=[rtfx], mode="markers", name="best batch size",
        marker=dict(symbol="star", size=18, color="#f1c40f", line=dict(color="#333", width=1)),
        hovertemplate=f"best batch size {best}: RTFx %{{y:.1f}}<extra></extra>", meta={"series": "best"},
        row=1, col=1,
    )
    fig.add_vline(x=best, line=dict(color="#b7950b", dash="dot", width=1), name="best", row="all", col=1)
    fig.add_annotation(x=math.log10(best), y=rtfx, xref="x", yref="y", text=f"best: batch size {best}",
                       showarrow=True, arrowhead=2, ax=0, ay=-36, name="best")


def _mark_oom(fig, points) -> None:
    if not points:
        return
    ys = [_number(p.rtfx) if _number(p.rtfx) == _number(p.rtfx) else 0.0 for p in points]
    words = ["out of memory, retried smaller" if p.rtfx == p.rtfx else "out of memory even at batch size 1"
             for p in points]
    fig.add_scatter(
        x=[p.batch_size for p in points], y=ys, mode="markers", name="out of memory",
        marker=dict(symbol="x", size=14, color=OOM_COLOR), text=words, cliponaxis=False,
        hovertemplate="batch size %{x}: %{text}<extra></extra>", meta={"series": "oom"}, row=1, col=1,
    )


def _sweep_title(sw) -> str:
    best = sw.best
    if best is None:
        headline = "no batch size fitted" if sw.points else "nothing measured"
    else:
        point = next(p for p in sw.points if p.batch_size == best)
        headline = f"best batch size {best} (RTFx {point.rtfx:.1f})"
    why = f"<br><sup>stopped: {sw.stopped_because}</sup>" if sw.stopped_because else ""
    return f"Batch-size sweep: {headline}{why}"


# ---- shared helpers ----------------------------------------------------------------------


def _no_gpu_note(runs, on_gpu: str) -> str | None:
    """The sentences saying why GPU data is missing, or None when every run has GPU data."""
    missing = [run for run in runs if not gpu_indices(run.timeline)]
    if not missing:
        return None
    reasons = dict.fromkeys(_gpu_reason(run) for run in missing)
    where = "" if len(missing) == len(runs) else " in " + ", ".join(run.label for run in missing)
    return NO_GPU_NOTE.format(where=where, reason="; ".join(reasons), on_gpu=on_gpu)


def _gpu_reason(run) -> str:
    reason = run.gpu_unavailable_reason or (run.environment or {}).get("gpu_unavailable_reason")
    return (reason or "the run recorded no GPU readings").rstrip(". ")


def _add_note(fig, text: str, *, name: str) -> None:
    """A grey note under the plot, wrapped to the figure's width."""
    wrapped = "<br>".join(textwrap.wrap(text, NOTE_WIDTH_CHARS))
    fig.add_annotation(
        text=wrapped, xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="top", yshift=-60,
        showarrow=False, align="left", font=dict(size=12, color="#555"), bgcolor="#f6f6f6",
        bordercolor="#ddd", borderpad=6, name=name,
    )


def _run_look(runs, run) -> dict:
    """A run's colour (by position: before, after, ...) and legend group (unique per run)."""
    index = next(i for i, candidate in enumerate(runs) if candidate is run)
    return {"color": RUN_COLORS[index % len(RUN_COLORS)], "group": f"run {index}"}


def _number(value) -> float:
    """A metric as a float; None (not measured) becomes NaN, which plotly leaves out."""
    return math.nan if value is None else float(value)


def _format(value, digits: int) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}"


def _describe(obj) -> str:
    if isinstance(obj, (list, tuple)):
        return f"an empty {type(obj).__name__}" if not obj else f"a {type(obj).__name__} of " + \
            ", ".join(sorted({type(item).__name__ for item in obj}))
    return type(obj).__name__
