"""Utilization over time: one panel per run and kind (CPU, GPU, GPU SMs, memory), phases shaded.

Phases: ``load`` (the model), ``prepare`` (audio decoding, VAD and log-mel features; and language
detection on the model for a multilingual model with no language given) and ``decode`` (the
model's windows or batches). Without a visible GPU no empty GPU panel is
drawn; a note says why instead. The GPU SMs panel (GPM: SM activity, occupancy, tensor-core
activity and DRAM bandwidth beside NVML's utilization) is drawn for runs on Hopper and newer GPUs;
where the sampler said why GPM was not read, a note repeats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from whisperkit.errors import WhisperkitError
from whisperkit.measure.columns import GPM_METRICS, gpu_column, gpu_indices
from whisperkit.views import format as fmt
from whisperkit.views.plots.common import PHASE_COLORS, TEMPLATE, add_note, no_gpu_note, run_look, runs_of, speedup_title

if TYPE_CHECKING:
    import pandas as pd
    from plotly.graph_objects import Figure

    from whisperkit.experiments.results import Run
    from whisperkit.views.plots.common import Runs

PANELS = ("cpu", "gpu", "memory", "gpm")

DEFAULT_PANELS = ("cpu", "gpu", "gpm")

#: GPM column suffix -> its trace name and dash in the GPU SMs panel
GPM_TRACES = dict(zip(GPM_METRICS, (("SM activity", "solid"), ("SM occupancy", "dash"),
                                    ("tensor-core activity", "dashdot"), ("DRAM bandwidth", "longdash"))))

ROW_HEIGHT_PX = 230

ON_GPU_TIMELINE = "On a GPU machine a GPU panel under each CPU panel shows NVML utilization and memory used."


def timeline(obj: Runs, *, metrics: str | Sequence[str] | None = None) -> Figure:
    """Utilization over time for each run, stacked, on one shared time axis (seconds).

    ``obj`` is a Run, a Comparison (before above after), a Sweep or a list of Runs.
    ``metrics`` picks the panels per run from ``"cpu"`` (system and process CPU, 0-100 % of all
    cores), ``"gpu"`` (NVML utilization %, memory used MiB on the right axis), ``"gpm"`` (the
    GPU's SMs from GPM, percent: SM activity, occupancy, tensor-core activity, DRAM bandwidth,
    beside NVML's utilization; Hopper and newer) and ``"memory"`` (process resident memory, MiB);
    default ``("cpu", "gpu", "gpm")``. A run without GPU (or GPM) readings gets no such panel; a
    note under the figure gives the reason.
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
    first_row: dict[int, int] = {}
    for row, (run, panel) in enumerate(rows, start=1):
        first_row.setdefault(id(run), row)
        _PANEL_DRAWERS[panel](fig, run, row, run_look(runs, run))
        _draw_phases(fig, run, row, labelled=first_row[id(run)] == row)
    if rows:
        fig.update_xaxes(title_text="time since the run started (s)", row=len(rows), col=1)
    note = no_gpu_note(runs, ON_GPU_TIMELINE) if "gpu" in panels else None
    gpm_note = _no_gpm_note(runs) if "gpm" in panels else None
    if note or gpm_note:  # one note under the figure (two would overlap)
        add_note(fig, " ".join(filter(None, (note, gpm_note))), name="no-gpu-note" if note else "no-gpm-note")
    note = note or gpm_note
    fig.update_layout(
        template=TEMPLATE,
        title=_timeline_title(obj, runs),
        height=height,
        hovermode="x unified",
        margin=dict(t=110, b=130 if note else 70),
        legend=dict(groupclick="toggleitem"),
    )
    return fig


def phases(run: Run) -> list[tuple[str, float, float]]:
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


def _cpu_panel(fig: Figure, run: Run, row: int, look: dict[str, str]) -> None:
    frame = run.timeline
    traces = (("cpu_percent", "system CPU", "dot"), ("process_cpu_percent", "this process CPU", "solid"))
    for column, name, dash in traces:
        if column in frame:
            _line(fig, run, frame, column, name, "%", row, look, dash)
    fig.update_yaxes(title_text="CPU % of all cores", range=[0, 105], row=row, col=1)


def _gpu_panel(fig: Figure, run: Run, row: int, look: dict[str, str]) -> None:
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


def _gpm_panel(fig: Figure, run: Run, row: int, look: dict[str, str]) -> None:
    """GPM's view of each GPU that has it, with NVML's utilization for contrast (a dotted line)."""
    frame = run.timeline
    for index in _gpm_gpus(frame):
        _line(fig, run, frame, gpu_column(index, "util_percent"), f"GPU {index} utilization (NVML)", "%", row, look,
              "dot", opacity=0.5)
        for suffix, (name, dash) in GPM_TRACES.items():
            if gpu_column(index, suffix) in frame:
                _line(fig, run, frame, gpu_column(index, suffix), f"GPU {index} {name}", "%", row, look, dash)
    fig.update_yaxes(title_text="GPU SMs % (GPM)", range=[0, 105], row=row, col=1)


def _gpm_gpus(frame: pd.DataFrame) -> list[int]:
    """The GPUs of ``frame`` with at least one GPM reading."""
    return [index for index in gpu_indices(frame)
            if any(gpu_column(index, s) in frame and frame[gpu_column(index, s)].notna().any() for s in GPM_METRICS)]


def _no_gpm_note(runs: list[Run]) -> str | None:
    """Why runs with GPU readings have no GPM ones, where their sampler said (None otherwise)."""
    reasons: dict[str, None] = {}
    for run in runs:
        if not _has_panel(run, "gpu") or _has_panel(run, "gpm"):
            continue
        said = run.utilization.column_reasons
        for index in gpu_indices(run.timeline):
            reason = said.get(gpu_column(index, GPM_METRICS[0]))
            if reason:
                reasons[f"GPU {index}: {reason.rstrip('. ')}"] = None
    if not reasons:
        return None
    return ("GPU SMs not measured (GPM: SM activity, occupancy, tensor-core activity, DRAM bandwidth): "
            + "; ".join(reasons) + ". NVML's utilization only says that some kernel ran.")


def _memory_panel(fig: Figure, run: Run, row: int, look: dict[str, str]) -> None:
    _line(fig, run, run.timeline, "process_rss_mb", "process RSS", "MiB", row, look, "solid")
    fig.update_yaxes(title_text="resident memory MiB", rangemode="tozero", row=row, col=1)


_PANEL_DRAWERS = {"cpu": _cpu_panel, "gpu": _gpu_panel, "memory": _memory_panel, "gpm": _gpm_panel}


def _line(fig: Figure, run: Run, frame: pd.DataFrame, column: str, name: str, unit: str, row: int,
          look: dict[str, str], dash: str, *, secondary_y: bool = False, opacity: float = 1.0) -> None:
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


def _draw_phases(fig: Figure, run: Run, row: int, *, labelled: bool) -> None:
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


def _phase_words(run: Run, label: str) -> tuple[str, str]:
    """A short label and a hover explanation for a phase."""
    options = run.config.options or {}
    batched = run.config.mode == "batched"
    vad = options.get("vad_filter", batched)
    if label == "load":
        return "load", "load: the model is read and placed on its device"
    if label == "prepare" and run.config.mode == "corpus":
        return "prepare (CPU)", "prepare: the first files are read, voice-detected and turned into features"
    if label == "first batch":
        return "pipeline", ("from the model's first batch on, the CPU stages read ahead while the model decodes "
                            "(the stage timeline shows which worked when)")
    if label == "prepare":
        work = "audio decoding, VAD and log-mel features" if vad else "audio decoding and log-mel features"
        if run.config.language is None and not str(run.transcript.config.get("model") or "").endswith(".en"):
            return "prepare", f"prepare: {work}, and language detection on the model"
        return "prepare (CPU)", f"prepare: {work}, CPU only (an English-only model detects no language)"
    if label == "decode":
        batch = run.transcript.config.get("batch_size")
        how = f"batches of up to {batch} chunks" if batched else "one 30 s window at a time"
        return "decode", f"decode: the model runs, {how}"
    if label == "retry":
        return "retry", "retry: out of memory, batch size halved and the pipeline started again"
    return label, label


def _axis_ref(fig: Figure, row: int, letter: str) -> str:
    """``x``/``x2``/... (or ``y``...) of a row's primary axis, as shapes and annotations name it."""
    subplot = fig.get_subplot(row, 1)
    axis = subplot.xaxis if letter == "x" else subplot.yaxis
    return axis.plotly_name.replace("axis", "")


def _has_panel(run: Run, panel: str) -> bool:
    frame = run.timeline
    if frame is None or len(frame) == 0:
        return False
    if panel == "gpu":
        return bool(gpu_indices(frame))
    if panel == "gpm":
        return bool(_gpm_gpus(frame))
    if panel == "memory":
        return "process_rss_mb" in frame
    return True


def _panel_names(metrics: str | Sequence[str] | None) -> tuple[str, ...]:
    if metrics is None:
        return DEFAULT_PANELS
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [name for name in names if name not in PANELS]
    if unknown or not names:
        raise WhisperkitError(f"unknown timeline panels {unknown or names!r}; expected some of: {', '.join(PANELS)}")
    return names


def _panel_title(run: Run, panel: str) -> str:
    words = {"cpu": "CPU", "gpu": "GPU (NVML)", "memory": "memory", "gpm": "GPU SMs (GPM)"}[panel]
    return f"<b>{run.label}</b> · {words}"


def _end_seconds(run: Run, last_mark_s: float) -> float:
    frame = run.timeline
    if frame is not None and len(frame) and "time_s" in frame:
        return max(float(frame["time_s"].max()), last_mark_s)
    return last_mark_s + float(run.transcript.wall_seconds or 0.0)


def _timeline_title(obj: Runs, runs: list[Run]) -> str:
    from whisperkit.experiments.results import Comparison

    if isinstance(obj, Comparison):
        return speedup_title("Utilization over time", obj)
    parts = [f"{run.label}: RTFx {fmt.metric_text('rtfx', run.metrics.get('rtfx'))}" for run in runs[:4]]
    more = f" (+{len(runs) - 4} more)" if len(runs) > 4 else ""
    return "Utilization over time<br><sup>" + "; ".join(parts) + more + "</sup>"
