"""Per-worker views of a corpus run on Ray: one timeline per model actor, side by side.

>>> result = wk.transcribe_corpus("clips/", engine="ray")     # doctest: +SKIP
>>> wk.plots.worker_timelines(result)                         # doctest: +SKIP   a plotly Figure
>>> result.worker_table()                                     # doctest: +SKIP   a pandas DataFrame

Each row of the figure is one model actor (one life of it: an actor that died and was restarted
gets a row per life): its GPU's utilization where it has one, its own process's CPU (percent of
one core, so one busy thread reads 100 %), and shaded bands for the batches it decoded. The
x axis is the run's clock, the same for every worker, so where the bands thin out the workers
waited for the CPU stages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError
from whisperkit.measure.columns import gpu_column
from whisperkit.views.plots.common import TEMPLATE

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from whisperkit.core.corpus.result import CorpusResult

BATCH_COLOR = "rgba(99, 110, 250, 0.18)"
LOAD_COLOR = "rgba(150, 150, 150, 0.18)"


def worker_timelines(result: CorpusResult, *, height_per_worker: int = 170) -> Figure:
    """A plotly Figure: one row per model worker of ``result`` (a CorpusResult from engine "ray")."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    workers = list(getattr(result, "worker_timelines", None) or [])
    if not workers:
        raise ConfigError("this result has no per-worker timelines: they come from transcribe_corpus(..., engine='ray')")
    fig = make_subplots(rows=len(workers), cols=1, shared_xaxes=True, vertical_spacing=min(0.08, 0.3 / len(workers)),
                        subplot_titles=[_title(worker) for worker in workers])
    for row, worker in enumerate(workers, start=1):
        frame = worker.timeline.copy()
        top = 100.0
        for column, name, color in _lines(worker, frame):
            fig.add_trace(go.Scatter(x=frame["time_s"], y=frame[column], name=name, mode="lines",
                                     line={"color": color, "width": 1.5}, legendgroup=name,
                                     showlegend=row == 1), row=row, col=1)
            top = max(top, float(frame[column].max(skipna=True) or 0.0))  # a process of several threads: over 100 %
        _bands(fig, worker, row)
        fig.update_yaxes(title_text="%", range=[0, top * 1.05], row=row, col=1)
    fig.update_xaxes(title_text="seconds since the run started", row=len(workers), col=1)
    fig.update_layout(template=TEMPLATE, height=120 + height_per_worker * len(workers), margin={"t": 80},
                      title=_figure_title(result, workers), legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"})
    return fig


def _lines(worker, frame) -> list[tuple[str, str, str]]:
    """(column, legend name, color) of the lines drawn for ``worker``; the CPU one scaled to one core."""
    lines = []
    for gpu in worker.gpus:
        if gpu_column(gpu, "util_percent") in frame:
            lines.append((gpu_column(gpu, "util_percent"), "GPU utilization (its GPU)", "#EF553B"))
    if "process_cpu_percent" in frame:
        cores = sum(1 for column in frame.columns if column.startswith("cpu") and column.endswith("_percent")
                    and column != "cpu_percent")
        frame["process_cpu_cores_percent"] = frame["process_cpu_percent"] * max(1, cores)
        lines.append(("process_cpu_cores_percent", "its process's CPU (100 % = one core)", "#636EFA"))
    return lines


def _bands(fig, worker, row: int) -> None:
    """Shade the model batches (and the model load before the first one) on ``row``."""
    if worker.load_seconds:
        fig.add_vrect(x0=worker.loaded_at_s - worker.load_seconds, x1=worker.loaded_at_s,
                      fillcolor=LOAD_COLOR, line_width=0, row=row, col=1)
    for span in worker.spans:
        fig.add_vrect(x0=span.start_s, x1=span.end_s, fillcolor=BATCH_COLOR, line_width=0, row=row, col=1)


def _title(worker) -> str:
    busy = worker.busy_seconds
    return (f"{worker.label}: {worker.batches} batches, {worker.windows} windows, "
            f"busy {busy:.1f} s, waited {worker.wait_seconds:.1f} s")


def _figure_title(result, workers) -> str:
    info = getattr(result, "engine_info", {}) or {}
    nodes = info.get("nodes", "?")
    return (f"{len(workers)} model worker(s) on {nodes} node(s): shaded = decoding a batch, grey = loading the model; "
            f"{result.rtfx:.1f}x real time")
